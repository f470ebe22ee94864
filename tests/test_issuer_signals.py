"""Issuer signals: interception CAs, the mesh CA, its look-alikes, public and unknown CAs in the mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.issuer_signals import sni_issuer_signal
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.mesh import MeshCA
from tlsdetect.detect.scoring import score
from tlsdetect.detect.server_profiles import server_names

from .conftest import SHARED
from .detect_data import captured, codes, with_issuer

MESH_DN = "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"


def _mesh_ski() -> str:
    """The sample intermediate's key id as the clean captures show it (scripts/make_captures.py makes a new PKI)."""
    df = captured()
    akids = df.loc[df["server_issuer"].astype("string") == MESH_DN, "server_issuer_akid"].dropna().unique()
    assert len(akids) == 1, akids
    return str(akids[0])


MESH_SKI = _mesh_ski()


pytest_plugins = ["tests.detect_fixtures"]  # train, fitted, test_rows


def test_interception_ca(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = with_issuer(test_rows, [3], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    row = out.iloc[3]
    assert row["verdict"] == "intercepted"
    assert "interception_ca" in codes(row)
    assert row["issuer_class"] == "interception"
    detail = next(r["detail"] for r in row["reasons"] if r["code"] == "interception_ca")
    assert "mitmproxy" in detail
    assert "source" in detail


def test_blocklisted_certificate(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    kb = load_knowledge()
    sha = kb.interception_keys.loc[kb.interception_keys["kind"] == "cert", "sha256"].iloc[0]
    df = test_rows.copy()
    values = df["server_cert_sha256"].to_numpy(dtype=object, copy=True)
    values[5] = sha
    df["server_cert_sha256"] = pd.array(values, dtype="string")
    out = score(df, fitted)
    assert "interception_ca" in codes(out.iloc[5])
    assert out.iloc[5]["verdict"] == "intercepted"


def test_public_ca_inside_the_mesh(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    isrg = "CN=ISRG Root X1,O=Internet Security Research Group,C=US"
    df = with_issuer(test_rows, [2], isrg)
    out = score(df, fitted)
    assert "public_ca_in_mesh" in codes(out.iloc[2])
    assert out.iloc[2]["verdict"] == "intercepted"
    assert out.iloc[2]["issuer_class"] == "public-in-mesh"


def test_public_ca_without_a_mesh_is_not_an_alarm(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline(mesh_ca=[], model=False).fit(train)
    df = with_issuer(test_rows, [2], "CN=ISRG Root X1,O=Internet Security Research Group,C=US")
    out = score(df, b)
    assert out.iloc[2]["issuer_class"] == "public"
    assert codes(out.iloc[2]) == {"issuer_changed_for_sni"}  # no mesh alarm; the server name's issuer changed
    assert out.iloc[2]["verdict"] == "suspicious"
    reason = out.iloc[2]["reasons"][0]
    assert reason["observed"].startswith("CN=ISRG Root X1")
    assert reason["expected"] == "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"


def test_lookalike_of_the_mesh_ca(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    tls12 = np.flatnonzero(test_rows["server_issuer"].notna().to_numpy())[:2]
    df = with_issuer(test_rows, tls12, MESH_DN, akid="00" * 20)
    out = score(df, fitted)
    for r in tls12:
        assert "mesh_ca_lookalike" in codes(out.iloc[r])
        assert out.iloc[r]["verdict"] == "intercepted"
        assert out.iloc[r]["issuer_class"] == "mesh-lookalike"
    same_key = score(with_issuer(test_rows, tls12, MESH_DN, akid=MESH_SKI), fitted)
    assert (same_key.iloc[tls12]["verdict"] == "ok").all()


def test_given_mesh_ca_flags_an_unknown_private_issuer(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline(mesh_ca=[MeshCA(MESH_DN, MESH_SKI)], model=False).fit(train)
    df = with_issuer(test_rows, [4], "CN=Corp Inspection CA,O=Corp")
    out = score(df, b)
    assert codes(out.iloc[4]) == {"unknown_issuer_in_mesh", "issuer_changed_for_sni"}
    assert out.iloc[4]["score"] == pytest.approx(100 * (1 - (1 - 0.45) * (1 - 0.50)), abs=0.1)
    assert out.iloc[4]["verdict"] == "intercepted"


ENVOY_SAMPLE = SHARED / "samples" / "envoy" / "envoy_access.sample.jsonl"


ENVOY_CA_DN = "CN=Example Corp Internal Root CA,OU=Corporate Security,O=Example Corp,C=US"


def _name(dn: str) -> Any:
    from cryptography import x509

    return x509.Name.from_rfc4514_string(dn)


def _ca(dn: str) -> tuple[Any, Any]:
    """A real self-signed CA certificate (and its key) with ``dn`` as subject, as RFC 4514 prints it."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(dn)).issuer_name(_name(dn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf_pem(ca: tuple[Any, Any], cn: str) -> str:
    """A leaf signed by ``ca`` (its AKID is the CA's SKI), URL-encoded as Envoy logs %DOWNSTREAM_PEER_CERT%."""
    import datetime as dt
    from urllib.parse import quote

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(_name(f"CN={cn}")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return quote(cert.public_bytes(serialization.Encoding.PEM).decode(), safe="")


def _pem_mesh(tmp_path: Path, ca: tuple[Any, Any]) -> list[MeshCA]:
    from cryptography.hazmat.primitives import serialization

    from tlsdetect.detect.mesh import parse_mesh_ca

    path = tmp_path / "internal-ca.crt"
    path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    mesh = parse_mesh_ca(str(path))
    assert isinstance(mesh, list)
    assert mesh[0].ski
    assert mesh[0].sha256
    return mesh


@pytest.mark.skipif(not ENVOY_SAMPLE.is_file(), reason=f"Envoy sample not found at {ENVOY_SAMPLE}")
def test_pem_mesh_ca_scores_an_envoy_log_without_chains(tmp_path: Path) -> None:
    """Issue 14 item 2: a PEM mesh CA, then an Envoy log (no chain, no AKID: DNs only) crashed in
    ``_chain_lookalike`` (IndexError); the rows are now compared by DN and come out as the mesh's."""
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy import read_envoy

    mesh = _pem_mesh(tmp_path, _ca(ENVOY_CA_DN))
    envoy = enrich(read_envoy([ENVOY_SAMPLE]))
    assert envoy["server_chain"].isna().all()
    b = Baseline(mesh_ca=mesh, model=False).fit(envoy)
    out = score(envoy, b)
    assert (out["verdict"] == "ok").all(), out["reasons"].tolist()
    assert set(out["issuer_class"].dropna()) == {"mesh"}
    # what serve's warm-up scores: one row, no chain, an issuer the mesh never saw
    one = score(pd.DataFrame({"client_ip": ["192.0.2.1"], "server_issuer": ["CN=warm-up"],
                              "server_chain": pd.Series([None], dtype="category")}), b)
    assert codes(one.iloc[0]) == {"unknown_issuer_in_mesh"}
    assert len(score(envoy.iloc[:0], b)) == 0  # an empty table
    other = envoy.assign(peer_issuer="CN=Other CA,O=elsewhere", peer_issuer_key="cn=Other CA,o=elsewhere")
    assert "unknown_issuer_in_mesh" in codes(score(other, b).iloc[0])


def test_pem_mesh_ca_compares_by_issuing_key_where_the_log_has_it(tmp_path: Path) -> None:
    """Issue 14 item 2: Envoy lines with the PEM leaf carry its AKID; the mesh CA's key (its SKI) decides:
    a leaf of the mesh CA is the mesh's, a leaf of a CA with the mesh CA's DN and another key is a look-alike."""
    import json

    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy import read_envoy

    mesh_ca = _ca("CN=Mesh Root CA,O=corp")
    impostor = _ca("CN=Mesh Root CA,O=corp")  # same DN, its own key
    mesh = _pem_mesh(tmp_path, mesh_ca)

    def line(i: int, ca: tuple[Any, Any]) -> str:
        return json.dumps({"start_time": f"2026-11-26T17:08:{i:02d}.000Z", "connection_id": i,
                           "downstream_remote_address": f"10.1.2.{i}:40000", "downstream_local_address": "10.0.0.1:443",
                           "requested_server_name": "api.mesh.test", "downstream_tls_version": "TLSv1.3",
                           "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4",
                           "downstream_peer_cert": _leaf_pem(ca, f"w{i}.mesh.test")})

    log = tmp_path / "access.log"
    log.write_text("\n".join(line(i, mesh_ca) for i in range(1, 6)) + "\n")
    b = Baseline(mesh_ca=mesh, model=False).fit(enrich(read_envoy([log])))
    log.write_text(line(6, mesh_ca) + "\n" + line(7, impostor) + "\n")
    df = enrich(read_envoy([log]))
    assert df["peer_issuer_akid"].notna().all()
    assert df["peer_issuer"].nunique() == 1
    out = score(df, b)
    assert out.loc[0, "issuer_class"] == "mesh"
    assert "mesh_ca_lookalike" not in codes(out.iloc[0])
    assert out.loc[1, "issuer_class"] == "mesh-lookalike"
    assert "mesh_ca_lookalike" in codes(out.iloc[1])
    assert out.loc[1, "verdict"] == "intercepted"


def test_pem_mesh_ca_in_a_chain_is_compared_by_key(tmp_path: Path) -> None:
    """Issue 14 item 2: in a chain (pcap TLS <= 1.2) a CA certificate named like the mesh CA is the mesh CA
    when it has its key (a re-issued mesh CA has another SHA-256, same SKI), a look-alike when its key differs."""
    import json

    from cryptography.hazmat.primitives import hashes

    ca = _ca("CN=Mesh Root CA,O=corp")
    mesh = _pem_mesh(tmp_path, ca)
    ski, sha = mesh[0].ski, ca[0].fingerprint(hashes.SHA256()).hex()

    def chain(ca_ski: str, ca_sha: str) -> str:
        return json.dumps([{"subject": "CN=w.mesh.test", "issuer": "CN=Mesh Root CA,O=corp", "sha256": "11" * 32},
                           {"subject": "CN=Mesh Root CA,O=corp", "issuer": "CN=Mesh Root CA,O=corp",
                            "sha256": ca_sha, "ski": ca_ski}])

    df = pd.DataFrame({"client_ip": ["10.0.0.1"] * 4, "server_issuer": ["CN=Mesh Root CA,O=corp"] * 4,
                       "server_chain": [chain(ski, sha), chain(ski, "22" * 32), chain("33" * 20, "44" * 32), None]})
    df = add_issuer_keys(df)
    b = Baseline(mesh_ca=mesh, model=False).fit(df.iloc[:1])
    out = score(df, b)
    assert out["issuer_class"].tolist() == ["mesh", "mesh", "mesh-lookalike", "mesh"]
    assert codes(out.iloc[2]) == {"mesh_ca_lookalike"}
    assert out.loc[2, "reasons"][0]["expected"].startswith(f"mesh CA key id {ski}")


def test_issuer_change_for_sni_is_the_same_with_shared_names_and_ignores_case(fitted: Baseline,
                                                                              test_rows: pd.DataFrame) -> None:
    """``score`` hashes the server names once for two signals; given or computed, the evidence is the same,
    and a name in other case is the server the baseline learned."""
    r = int(np.flatnonzero(test_rows["server_issuer"].notna().to_numpy() & test_rows["sni"].notna().to_numpy())[0])
    df = with_issuer(test_rows, [r], "CN=Corp Inspection CA,O=Corp").reset_index(drop=True)
    df["sni"] = df["sni"].str.upper()
    runs = []
    for names in (None, server_names(df)):
        ev = Evidence(len(df))
        sni_issuer_signal(df, fitted, ev, names)
        runs.append(pd.concat(ev.parts, ignore_index=True))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    fired = runs[0].set_index("row").loc[r]
    assert fired["code"] == "issuer_changed_for_sni"
    assert str(df.loc[r, "sni"]).lower() in fired["detail"]
    assert str(df.loc[r, "sni"]) not in fired["detail"]  # shown as learned: lowercase
