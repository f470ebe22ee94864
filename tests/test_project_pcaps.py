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
