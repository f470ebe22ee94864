"""The Envoy key map: operator-derived JSON keys, custom mappings and their priority."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.readers.envoy import default_mapping
from tlsdetect.readers.logs import DeadLetter

from .test_envoy import read_envoy, write


def test_custom_mapping(tmp_path: Path) -> None:
    line = json.dumps({"when": "2026-01-02T03:04:05.5+01:00", "src": "192.0.2.9:1234", "fp4": "t13d_x_y",
                       "ja4": "ignored-default", "who": "CN=svc", "dst": "192.0.2.1:8443", "cid": 3})  # fmt: skip
    mapping = {"when": "ts", "src": "client_address", "dst": "server_address", "fp4": "ja4", "who": "peer_subject",
               "cid": "conn_id"}  # fmt: skip
    df = read_envoy([write(tmp_path, [line])], mapping=mapping)
    row = df.iloc[0]
    assert row["ja4"] == "t13d_x_y"  # a custom key wins over a default key of the same column
    assert (row["client_ip"], row["client_port"], row["server_port"]) == ("192.0.2.9", 1234, 8443)
    assert row["client_id"] == "CN=svc"
    assert row["conn_id"] == "3"
    assert row["ts"] == pd.Timestamp("2026-01-02T02:04:05.5Z")
    with pytest.raises(ValueError, match="mapping target"):
        read_envoy([write(tmp_path, [line])], mapping={"x": "nonsense"})


def test_default_mapping_names() -> None:
    m = default_mapping()
    assert m["downstream_remote_address"] == m["DOWNSTREAM_REMOTE_ADDRESS"] == "client_address"
    assert m["%TLS_JA3_FINGERPRINT%"] == m["ja3"] == "ja3"
    assert m["user_agent"] == "user_agent"
    assert m["connection_id"] == "conn_id"
    assert m["upstream_peer_issuer"] == "server_issuer"


def test_port_columns_from_custom_mapping(tmp_path: Path) -> None:
    lines = [json.dumps({"ip": "192.0.2.1", "port": p, "ja4": "t13d_a_b"}) for p in (443, "8443", 70000, "5.5", "x")]
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], mapping={"ip": "client_ip", "port": "client_port"}, dead_letter=dead)
    assert list(df["client_port"]) == [443, 8443]
    assert dead.stats.reasons["bad port"] == 3
