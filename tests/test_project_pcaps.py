"""The project's own captures (``pcaps/``): ground truth from the manifest and from tshark."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tlsdetect.readers.pcap import read_pcap

from .conftest import PROJECT_PCAPS, needs_tshark

MANIFEST = json.loads((PROJECT_PCAPS / "MANIFEST.json").read_text())
CAPTURES = sorted(MANIFEST["captures"])
VERSION = {"TLSv1.3": "TLSv1.3", "TLSv1.2": "TLSv1.2"}


def _connections(name: str) -> list[dict[str, Any]]:
    return MANIFEST["captures"][name]["connections"]  # type: ignore[no-any-return]


def test_captures_are_small() -> None:
    total = sum((PROJECT_PCAPS / name).stat().st_size for name in CAPTURES)
    assert total < 1_000_000


@pytest.mark.parametrize("name", CAPTURES)
def test_every_recorded_connection_is_found(name: str) -> None:
    df, stats = read_pcap(PROJECT_PCAPS / name)
    assert not stats.warnings
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    for conn in _connections(name):
        row = rows[conn["client_port"]]
        assert row["server_port"] == conn["server_port"]
        assert row["sni"] == conn["sni"]
        assert row["tls_version"] == VERSION[conn["tls_version_negotiated"]]
        expected_alpn = conn["alpn_offered"][0] if conn["alpn_offered"] else None
        assert row["alpn"] == expected_alpn
    assert len(df) == len(_connections(name))


def test_split_hello_connect_preamble_and_mtls() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "edge_cases.pcapng")
    by_scenario = {c["scenario"]: c for c in _connections("edge_cases.pcapng")}
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    pki = MANIFEST["pki"]
    mtls = rows[next(c for s, c in by_scenario.items() if "mtls" in s)["client_port"]]
    assert mtls["peer_subject"] == pki["client_leaf"]["subject"]
    assert mtls["peer_cert_sha256"] == pki["client_leaf"]["sha256"]
    assert mtls["server_cert_sha256"] == pki["server_leaf"]["sha256"]
    assert mtls["server_issuer"] == pki["intermediate_ca"]["subject"]
    for scenario, conn in by_scenario.items():
        assert rows[conn["client_port"]]["ja4"] is not None, scenario


@needs_tshark
@pytest.mark.parametrize("name", CAPTURES)
def test_ja3_equals_tshark(name: str) -> None:
    """tshark 4.0's own JA3/JA3S is the oracle (DESIGN.md), run live on our captures."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(PROJECT_PCAPS / name), "-Y", "tls.handshake.type==1 || tls.handshake.type==2",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tls.handshake.ja3", "-e",
         "tls.handshake.ja3s"],
        capture_output=True, text=True, check=True,
    ).stdout
    df, _ = read_pcap(PROJECT_PCAPS / name)
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    checked = 0
    for line in out.splitlines():
        sport, dport, ja3, ja3s = line.split("\t")
        if ja3:
            assert rows[int(sport)]["ja3"] == ja3
            checked += 1
        if ja3s:
            assert rows[int(dport)]["ja3s"] == ja3s
            checked += 1
    assert checked == 2 * len(_connections(name))


def _certificate_in_capture(name: str, sha256: str) -> bytes:
    """The DER certificate with this SHA-256, found in the capture's raw bytes (a chain sent on
    loopback sits in one segment), so the expected values do not come from tlsdetect's parser."""
    import hashlib
    import re

    data = (PROJECT_PCAPS / name).read_bytes()
    for m in re.finditer(rb"\x30\x82(..)\x30\x82", data, re.DOTALL):
        der = data[m.start() : m.start() + 4 + int.from_bytes(m.group(1), "big")]
        if hashlib.sha256(der).hexdigest() == sha256:
            return der
    raise AssertionError(f"{sha256} not in {name}")


@pytest.mark.parametrize("fast_lane", [True, False])
def test_issuer_akid_is_the_intermediate_ca_key(fast_lane: bool) -> None:
    """TLS 1.2 leaves (server and mTLS client) name the key of the intermediate CA that signed them."""
    from cryptography import x509

    pki = MANIFEST["pki"]
    der = _certificate_in_capture("tls12_stacks.pcap", pki["intermediate_ca"]["sha256"])
    inter = x509.load_der_x509_certificate(der)
    ski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    df, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap", fast_lane=fast_lane)
    tls12 = df[df["tls_version"] == "TLSv1.2"]
    assert len(tls12) > 0
    assert tls12["server_cert_sha256"].eq(pki["server_leaf"]["sha256"]).all()
    assert tls12["server_issuer_akid"].eq(ski).all()
    assert df.loc[df["tls_version"] == "TLSv1.3", "server_issuer_akid"].isna().all()  # certificates encrypted
    assert str(df["server_issuer_akid"].dtype) == "category"
    chain = json.loads(tls12["server_chain"].iloc[0])
    assert [c["sha256"] for c in chain] == [pki["server_leaf"]["sha256"], pki["intermediate_ca"]["sha256"]]
    assert chain[1]["ski"] == chain[0]["akid"] == ski

    edge, _ = read_pcap(PROJECT_PCAPS / "edge_cases.pcapng", fast_lane=fast_lane)
    mtls = edge[edge["peer_cert_sha256"] == pki["client_leaf"]["sha256"]]
    assert len(mtls) == 1
    assert mtls["peer_issuer_akid"].iloc[0] == ski
    assert edge.loc[edge["peer_cert_sha256"].isna(), "peer_issuer_akid"].isna().all()
