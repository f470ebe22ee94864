"""Scoring: each signal fires for what it was planted for, with evidence; clean traffic stays ok."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import SIGNALS
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.mesh import MeshCA
from tlsdetect.detect.scoring import SCORE_COLUMNS, VERDICTS, score, summarize

from .conftest import SHARED
from .detect_data import captured, later, population, stack_of, with_hello_of, with_issuer

MESH_DN = "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"

def _mesh_ski() -> str:
    """The sample intermediate's key id as the clean captures show it (scripts/make_captures.py makes a new PKI)."""
    df = captured()
    akids = df.loc[df["server_issuer"].astype("string") == MESH_DN, "server_issuer_akid"].dropna().unique()
    assert len(akids) == 1, akids
    return str(akids[0])


MESH_SKI = _mesh_ski()


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=12)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline(mesh_ca="learn").fit(train)  # the tests of mesh signals use the mesh CA it learns


@pytest.fixture(scope="module")
def test_rows(train: pd.DataFrame) -> pd.DataFrame:
    return later(train)


def codes(row: pd.Series) -> set[str]:
    return {r["code"] for r in row["reasons"]}


def test_clean_held_out_traffic_is_ok(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    out = score(test_rows, fitted)
    assert set(SCORE_COLUMNS) <= set(out.columns)
    assert (out["verdict"] == "ok").all(), out.loc[out["verdict"] != "ok", ["client_id", "reasons"]]
    assert (out["score"] == 0).all()
    assert out["compared"].str.startswith("client baseline").all()


def test_every_flagged_row_has_reasons_with_evidence(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = with_issuer(test_rows, [0, 1], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    flagged = out[out["verdict"] != "ok"]
    assert len(flagged) == 2
    for reasons in flagged["reasons"]:
        assert reasons
        for r in reasons:
            assert set(r) == {"code", "detail", "expected", "observed"}
            assert r["code"] in SIGNALS
            assert r["detail"]
            assert "<NA>" not in r["detail"]
            assert "dtype" not in r["detail"]


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


def test_known_interception_product_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    kb = load_knowledge()
    ja3 = kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja3"].iloc[0]
    df = test_rows.copy()
    values = df["ja3"].to_numpy(dtype=object, copy=True)
    values[7] = ja3["value"]
    df["ja3"] = pd.array(values, dtype="string")
    out = score(df, fitted)
    assert "known_interception_fingerprint" in codes(out.iloc[7])
    assert out.iloc[7]["known_product"] == ja3["product"]
    assert out.iloc[7]["verdict"] == "intercepted"


def _client_rows(df: pd.DataFrame, stack: str, version: str) -> np.ndarray:
    mask = (stack_of(df) == stack) & (df["ja4"].str.slice(1, 3) == version)
    return np.flatnonzero(mask.to_numpy())


def test_new_fingerprint_for_a_stable_client(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "curl", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "java", "13")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    row = out.iloc[rows[0]]
    assert "new_fingerprint_for_client" in codes(row)
    assert row["verdict"] in ("suspicious", "intercepted")
    reason = next(r for r in row["reasons"] if r["code"] == "new_fingerprint_for_client")
    assert reason["observed"] == donor["ja4"]
    assert test_rows.iloc[rows[0]]["ja4"] in reason["expected"]
    assert "1 other baseline client" in reason["detail"]


def test_unknown_client_is_compared_with_population_only(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = test_rows.copy()
    df["client_ip"] = pd.array(["192.0.2.9"] * len(df), dtype="string")
    out = score(df, fitted)
    assert out["compared"].str.contains("not in the baseline").all()
    assert "new_fingerprint_for_client" not in {c for rs in out["reasons"] for c in (r["code"] for r in rs)}


def test_tls_downgrade(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "node", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "node", "12")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    assert "tls_downgrade" in codes(out.iloc[rows[0]])


def test_user_agent_mismatch_and_chromium_without_grease(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    def with_ua(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        ua = np.where(stack_of(df) == "python", "python-requests/2.32", "curl/8.5.0")
        out["user_agent"] = pd.array(ua, dtype="string")
        return out

    b = Baseline(model=False).fit(with_ua(train))
    df = with_ua(test_rows)
    rows = _client_rows(df, "python", "13")[:1]
    df.loc[rows[0], "user_agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
    out = score(df, b)
    got = codes(out.iloc[rows[0]])
    assert {"ua_fingerprint_mismatch", "browser_without_grease"} <= got
    assert out.iloc[rows[0]]["verdict"] == "intercepted"
    assert (out.drop(index=rows)["verdict"] == "ok").all()


def test_convergence_of_many_clients_on_one_new_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    donor = new_hello()
    first_hour = test_rows["ts"] < test_rows["ts"].min() + pd.Timedelta(minutes=59)
    rows = np.flatnonzero(first_hour.to_numpy())[:4]
    out = score(with_hello_of(test_rows, rows, donor), fitted, convergence_min_clients=3)
    for r in rows:
        assert "fingerprint_convergence" in codes(out.iloc[r])
    alone = score(with_hello_of(test_rows, rows[:2], donor), fitted, convergence_min_clients=3)
    assert not any("fingerprint_convergence" in codes(alone.iloc[r]) for r in rows[:2])


def new_hello() -> pd.Series:
    """A hello no baseline client sent: Java's TLS 1.3 hello with only its first four ciphers."""
    from tlsdetect.fingerprint import add_fingerprints

    java = captured()[(stack_of(captured()) == "java") & captured()["ja4"].str.startswith("t13")].head(1).copy()
    java["ch_ciphers"] = pd.Series([tuple(java["ch_ciphers"].iloc[0][:4])], index=java.index, dtype=object)
    return add_fingerprints(java).iloc[0]


def test_model_flags_a_hello_unlike_the_population(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    from .conftest import INTERCEPTION, require_shared

    require_shared("pcaps/interception/SOURCES.md")
    from tlsdetect.readers.inputs import Inputs

    b = Baseline().fit(train)
    odd = Inputs([str(INTERCEPTION)]).read_all()
    out = score(pd.concat([test_rows, odd], ignore_index=True), b)
    flagged = out["reasons"].map(lambda rs: "model_outlier" in {r["code"] for r in rs}).to_numpy()
    assert flagged[len(test_rows):].all()
    assert not flagged[: len(test_rows)].any()
    reason = next(r for r in out.iloc[-1]["reasons"] if r["code"] == "model_outlier")
    assert float(reason["observed"]) > b.novelty_threshold  # evidence is text, numbers too


def test_model_sees_a_value_the_population_never_offered(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline().fit(train)
    assert b.model_ is not None
    row = test_rows.iloc[[0]].copy()
    from tlsdetect.detect.features import hello_codes

    _, base = hello_codes(row)
    same, _ = b.model_.distances(base)
    assert same[0] == 0.0
    changed = base.copy()
    changed.at[0, "ch_ciphers"] = (*base.at[0, "ch_ciphers"], 0x1301, 0xFFF0, 0xFFF1)
    dist, _ = b.model_.distances(changed)
    assert 0 < dist[0] < 0.35


def test_interception_captures_are_caught(fitted: Baseline) -> None:
    from .conftest import INTERCEPTION, require_shared

    require_shared("pcaps/interception/SOURCES.md")
    from tlsdetect.readers.inputs import Inputs

    out = score(Inputs([str(INTERCEPTION)]).read_all(), fitted)
    assert len(out) >= 5
    assert (out["verdict"] == "intercepted").all()
    assert out["known_product"].notna().all()


def test_summary(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    out = score(with_issuer(test_rows, [0, 1, 2], "CN=mitmproxy,O=mitmproxy"), fitted)
    s = summarize(out)
    assert s["verdicts"] == {"ok": len(out) - 3, "suspicious": 0, "intercepted": 3}
    assert s["top_reasons"]["interception_ca"] == 3
    assert sum(s["top_flagged_clients"].values()) == 3


def test_no_baseline_scores_with_knowledge_only(test_rows: pd.DataFrame) -> None:
    out = score(with_issuer(test_rows, [0], "CN=mitmproxy,O=mitmproxy"), None)
    assert out.iloc[0]["verdict"] == "intercepted"
    assert out["compared"].str.contains("no baseline").all()


_OPTIONAL = ["user_agent", "server_issuer", "peer_issuer", "ja3n", "ja4", "ja3", "ch_ciphers", "ts", "sni"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mix_of_missing_columns_and_values_scores(data: st.DataObject, fitted: Baseline,
                                                      test_rows: pd.DataFrame) -> None:
    """Sources differ in what they carry: scoring never crashes and keeps its contract."""
    n = data.draw(st.integers(0, 30))
    df = test_rows.sample(n=n, random_state=data.draw(st.integers(0, 1000)), replace=True).reset_index(drop=True)
    for col in data.draw(st.lists(st.sampled_from(_OPTIONAL), unique=True)):
        if data.draw(st.booleans()):
            df = df.drop(columns=col)
        else:
            df[col] = pd.Series([None] * len(df), dtype=df[col].dtype if df[col].dtype != object else object)
    out = score(df, fitted)
    assert len(out) == n
    assert set(out["verdict"]) <= set(VERDICTS)
    assert all(v == "ok" or bool(r) for v, r in zip(out["verdict"], out["reasons"], strict=True))
    assert ((out["score"] >= 0) & (out["score"] <= 100)).all()


def test_rows_without_a_time_are_not_placed_in_a_convergence_window(fitted: Baseline,
                                                                    test_rows: pd.DataFrame) -> None:
    import warnings

    df = with_hello_of(test_rows, np.arange(6), new_hello())
    df["ts"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = score(df, fitted)
    assert not any("fingerprint_convergence" in codes(out.iloc[r]) for r in range(6))
    assert all("new_fingerprint_for_client" in codes(out.iloc[r]) for r in range(6))


def test_scoring_leaves_the_input_table_alone(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    before = test_rows.copy()
    score(test_rows, fitted)
    pd.testing.assert_frame_equal(test_rows, before)


def _with_weak_cipher(df: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    """Rows ``rows`` also offer RC4-SHA (0x0005), a cipher no baseline hello offered (fingerprints recomputed)."""
    from tlsdetect.fingerprint import add_fingerprints

    out = df.copy()
    values = out["ch_ciphers"].to_numpy(dtype=object, copy=True)
    for r in rows:
        values[r] = (5, *values[r])
    out["ch_ciphers"] = pd.Series(values, index=out.index, dtype=object)
    return add_fingerprints(out)


def test_reason_fields_are_text_or_null_numbers_included(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    """issue 14 item 1: ``expected``/``observed`` mixed numbers and text (Parquet failed); now one type: str or None."""
    df = with_issuer(_with_weak_cipher(test_rows, [0, 1]), [2], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    reasons = [r for rs in out["reasons"] for r in rs]
    assert {"weak_ciphers", "interception_ca"} <= {r["code"] for r in reasons}
    for r in reasons:
        assert list(r) == ["code", "detail", "expected", "observed"]
        assert isinstance(r["code"], str)
        assert isinstance(r["detail"], str)
        assert all(r[f] is None or isinstance(r[f], str) for f in ("expected", "observed")), r
    weak = [r for r in out.iloc[0]["reasons"] if r["code"] == "weak_ciphers"]
    assert weak
    assert weak[0]["observed"] == "1"  # a count, written once as decimal text


def test_flagged_reasons_round_trip_through_parquet(fitted: Baseline, test_rows: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    """issue 14 item 1: Parquet of flagged rows (numbers and text in the evidence) reads back as written."""
    import pyarrow.parquet as pq

    import tlsdetect.sinks.files as sinks
    from tlsdetect import schema

    df = with_issuer(_with_weak_cipher(test_rows, [0, 1]), [2], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    assert (out["verdict"] != "ok").sum() >= 3
    path = tmp_path / "scored.parquet"
    sinks.write(out[["ts", "verdict", "reasons"]], "parquet", path=str(path))
    table = pq.read_table(path)
    assert table.schema.field("reasons").type == schema.REASONS_ARROW
    back = table.column("reasons").to_pylist()
    assert back == [list(rs) for rs in out["reasons"]]


# --- issue 14 item 2: a mesh CA given as a PEM file, on sources with and without chains --------------------
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
