"""Envoy raw columns typed: operator-derived keys, IPv6 addresses split into ip and port."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .test_envoy import read_envoy, write


def test_operator_derived_keys_and_ipv6(tmp_path: Path) -> None:
    line = json.dumps(
        {
            "START_TIME": "2026-01-02T03:04:05Z",
            "DOWNSTREAM_REMOTE_ADDRESS": "[2001:db8::1]:5555",
            "downstreamLocalAddress": "[::1]:443",
            "%TLS_JA4_FINGERPRINT%": "t13d1516h2_8daaf6152771_02713d6af862",
            "DOWNSTREAM_PEER_URI_SAN": "https://x.test,spiffe://corp.test/ns/a/sa/b",
            "DOWNSTREAM_PEER_SUBJECT": "CN=b",
            "DOWNSTREAM_PEER_FINGERPRINT_256": "AB:CD",
            "DOWNSTREAM_TLS_VERSION": "TLSv1",
        }
    )
    df = read_envoy([write(tmp_path, [line])])
    row = df.iloc[0]
    assert (row["client_ip"], row["client_port"]) == ("2001:db8::1", 5555)
    assert (row["server_ip"], row["server_port"]) == ("::1", 443)
    assert row["client_id"] == "spiffe://corp.test/ns/a/sa/b"
    assert row["peer_cert_sha256"] == "abcd"
    assert row["tls_version"] == "TLSv1.0"
    assert row["fingerprint_origin"] == "envoy"
    assert pd.isna(row["ja3"])
    assert row["envoy_line"] == "listener"
