"""Report-only pin checks (tlsdetect.pins.check) on real captures through mitmproxy and on made chains."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import CAPTURES_MANIFEST, PROJECT_PCAPS
from tests.test_spki import captured_ders, openssl_pin
from tlsdetect import schema
from tlsdetect.pins.chains import chain_facts
from tlsdetect.pins.check import STATUSES, chain_matches, check
from tlsdetect.pins.policy import read_policies
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tls_stream import chain_json
from tlsdetect.wire.tls import parse_der_certificate

needs_tools = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("tshark") is None,
                                 reason="openssl and tshark needed")
TODAY = dt.date(2026, 12, 7)


def manifest(name: str) -> list[dict[str, object]]:
    conns: list[dict[str, object]] = json.loads(CAPTURES_MANIFEST.read_text())["captures"][name]["connections"]
    return conns


@pytest.fixture(scope="module")
def sample_pins() -> dict[str, str]:
    """The sample CA chain's pins as openssl computes them from the certificates tshark extracts."""
    out = {}
    for der in captured_ders(PROJECT_PCAPS / "tls12_stacks.pcap"):
        cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        out[str(cn)] = openssl_pin(der)
    return out


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory, sample_pins: dict[str, str]) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("pins") / "sample.pins"
    path.write_text("tlsdetect-pins 1\ndomain sample.tlsdetect.test subdomains expires 2027-06-30\n"
                    f"pin ca {sample_pins['tlsdetect Sample Intermediate CA']}\n"
                    f"pin leaf {sample_pins['sample.tlsdetect.test']}\n")
    return read_policies([path])


@needs_tools
def test_every_intercepted_connection_is_named(policy: pd.DataFrame) -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "intercepted.pcapng")
    report = check(policy, df, today=TODAY)
    conns = report.connections
    by_port = {int(p): s for p, s in zip(df["client_port"].iloc[conns["row"]], conns["status"], strict=True)}
    truth = manifest("intercepted.pcapng")
    forged = [c for c in truth if c["scenario"] == "mitmproxy-client-leg"]
    upstream = [c for c in truth if c["scenario"] == "mitmproxy-upstream-leg"]
    assert len(forged) == 6
    assert all(by_port[int(str(c["client_port"]))] == "violation" for c in forged)
    assert all(by_port[int(str(c["client_port"]))] == "hidden" for c in upstream)  # TLS 1.3: not assumed clean
    hidden = conns[conns["status"] == "hidden"]
    assert set(hidden["reason"]) == {"tls13_encrypted"}
    violations = conns[conns["status"] == "violation"]
    assert set(violations["issuer"]) == {"O=mitmproxy,CN=mitmproxy"}
    assert violations["observed"].str.startswith("leaf:").all()
    assert report.violations == 6
    assert report.domains.set_index("domain").loc["sample.tlsdetect.test", "violation"] == 6


@needs_tools
@pytest.mark.parametrize("name", ["tls12_stacks.pcap", "edge_cases.pcapng"])
def test_clean_traffic_has_no_violation(policy: pd.DataFrame, name: str) -> None:
    df, _ = read_pcap(PROJECT_PCAPS / name)
    report = check(policy, df, today=TODAY)
    assert report.violations == 0
    assert (report.connections["status"] == "match").sum() >= 1
    pins = report.pins.set_index("kind")
    assert pins.loc["ca", "matched"] == (report.connections["status"] == "match").sum()


@needs_tools
def test_tls13_traffic_is_hidden_not_clean(policy: pd.DataFrame) -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "tls13_stacks.pcapng")
    report = check(policy, df, today=TODAY)
    assert len(report.connections) == len(manifest("tls13_stacks.pcapng"))
    assert set(report.connections["status"]) == {"hidden"}
    assert int(report.pins["matched"].sum()) == 0


# --- made chains: the kinds' rules, expiry, exemptions, leaf-only logs --------------------------------------
def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey) -> bytes:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
            .sign(signer, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def made() -> dict[str, bytes]:
    root, inter, leaf, new_leaf = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    return {"root": _cert("Root", root, "Root", root), "inter": _cert("Inter", inter, "Root", root),
            "leaf": _cert("app.test", leaf, "Inter", inter), "new_leaf": _cert("app.test", new_leaf, "Inter", inter)}


def _pin(der: bytes) -> str:
    pin = parse_der_certificate(der).spki
    assert pin is not None
    return pin


def _rows(chains: list[list[bytes] | None], sni: str = "app.test", **extra: object) -> pd.DataFrame:
    infos = [tuple(parse_der_certificate(d) for d in c) if c else None for c in chains]
    df = pd.DataFrame({"sni": [sni] * len(chains),
                       "server_chain": [chain_json(i) if i else None for i in infos],
                       "server_spki_sha256": [i[0].spki if i else None for i in infos],
                       "tls_version": ["TLSv1.2"] * len(chains), **{k: [v] * len(chains) for k, v in extra.items()}})
    return schema.conform(df)


def _policy(rows: list[tuple[str, bool, str | None, str | None, dt.date | None, str]]) -> pd.DataFrame:
    cols = ["domain", "include_subdomains", "pin", "kind", "expiry", "format"]
    df = pd.DataFrame(rows, columns=cols)
    df["backup"], df["source"], df["line"] = None, "made", 1
    return df


def test_kinds_match_only_their_positions(made: dict[str, bytes]) -> None:
    facts = chain_facts(_rows([[made["leaf"], made["inter"], made["root"]]]))
    chain = facts.chains[0]
    inter = _pin(made["inter"])
    pins = pd.DataFrame({"pin": [inter, inter, inter, _pin(made["leaf"]),
                                 parse_der_certificate(made["leaf"]).sha256],
                         "kind": ["leaf", "ca", "any", "ca", "cert"]})
    assert chain_matches(pins, chain) == [(inter, "ca", 1), (inter, "any", 1),
                                          (parse_der_certificate(made["leaf"]).sha256, "cert", 0)]


def test_rotation_breaks_clients_without_the_backup(made: dict[str, bytes]) -> None:
    """A leaf-only pin set breaks on the new key; with the new key's pin as backup it does not."""
    after = _rows([[made["new_leaf"], made["inter"]]])
    alone = _policy([("app.test", False, _pin(made["leaf"]), "leaf", None, "tlsdetect")])
    with_backup = _policy([("app.test", False, _pin(made["leaf"]), "leaf", None, "tlsdetect"),
                           ("app.test", False, _pin(made["new_leaf"]), "leaf", None, "tlsdetect")])
    assert check(alone, after, today=TODAY).violations == 1
    report = check(with_backup, after, today=TODAY)
    assert report.violations == 0
    assert report.pins["matched"].tolist() == [0, 1]


def test_expired_and_exempt_rules_reject_nothing(made: dict[str, bytes]) -> None:
    stranger = _rows([[made["new_leaf"]]], sni="cdn.app.test")
    pol = _policy([("app.test", True, _pin(made["leaf"]), "leaf", dt.date(2026, 1, 1), "tlsdetect")])
    assert check(pol, stranger, today=TODAY).connections["status"].tolist() == ["expired"]
    assert check(pol, stranger, today=dt.date(2025, 12, 1)).connections["status"].tolist() == ["violation"]
    exempt = pd.concat([pol.assign(expiry=None), _policy([("cdn.app.test", False, None, None, None, "tlsdetect")])])
    assert check(exempt, stranger, today=TODAY).connections["status"].tolist() == ["unpinned"]
    other = _rows([[made["leaf"]]], sni="elsewhere.test")
    assert len(check(pol, other, today=TODAY).connections) == 0  # no rule governs it: not reported


def test_okhttp_unites_matching_patterns(made: dict[str, bytes]) -> None:
    pol = _policy([("app.test", True, _pin(made["leaf"]), "any", None, "okhttp"),
                   ("api.app.test", False, _pin(made["inter"]), "any", None, "okhttp")])
    rows = _rows([[made["leaf"]]], sni="api.app.test")
    assert check(pol, rows, today=TODAY).connections["status"].tolist() == ["match"]  # the broader pattern's pin
    android = pol.assign(format="android")
    assert check(android, rows, today=TODAY).connections["status"].tolist() == ["violation"]  # most specific wins


def test_hidden_rows_say_why(made: dict[str, bytes]) -> None:
    pol = _policy([("app.test", False, _pin(made["inter"]), "ca", None, "tlsdetect")])
    resumed = _rows([None], resumed=True)
    assert check(pol, resumed, today=TODAY).connections["reason"].tolist() == ["resumed"]
    logged = _rows([[made["new_leaf"]]]).assign(server_chain=None)  # a log with the leaf's PEM only
    logged = schema.conform(logged)
    got = check(pol, logged, today=TODAY).connections
    assert got[["status", "reason"]].values.tolist() == [["hidden", "leaf_only"]]
    leaf_pol = _policy([("app.test", False, _pin(made["new_leaf"]), "leaf", None, "tlsdetect")])
    assert check(leaf_pol, logged, today=TODAY).connections["status"].tolist() == ["match"]


def test_statuses_are_counted_per_domain(made: dict[str, bytes]) -> None:
    pol = _policy([("app.test", True, _pin(made["inter"]), "ca", None, "tlsdetect")])
    rows = schema.concat([_rows([[made["leaf"], made["inter"]]] * 3), _rows([[made["new_leaf"]]], sni="x.app.test"),
                          _rows([None], tls_version="TLSv1.3")])
    counts = check(pol, rows, today=TODAY).domains.set_index("domain")
    assert counts.loc[["app.test"], list(STATUSES)].to_numpy().tolist() == [[1, 1, 3, 0, 0]]


def test_no_policy_rows_and_no_connections(made: dict[str, bytes], tmp_path: Path) -> None:
    pol = _policy([("app.test", False, _pin(made["inter"]), "ca", None, "tlsdetect")])
    empty = check(pol, schema.empty(), today=TODAY)
    assert len(empty.connections) == 0
    assert empty.violations == 0


def test_each_file_is_one_client(made: dict[str, bytes]) -> None:
    """Two apps' pin sets for one name: one row per file; the app pinning another key would reject it."""
    rows = _rows([[made["leaf"], made["inter"]]])
    app_a = _policy([("app.test", False, _pin(made["inter"]), "ca", None, "android")]).assign(source="a.xml")
    app_b = _policy([("app.test", True, _pin(made["new_leaf"]), "leaf", None, "ios")]).assign(source="b.plist")
    got = check(pd.concat([app_a, app_b], ignore_index=True), rows, today=TODAY).connections
    assert got[["row", "source", "status"]].values.tolist() == [[0, "a.xml", "match"], [0, "b.plist", "violation"]]
