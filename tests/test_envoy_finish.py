"""Envoy rows finished: client_id fallbacks and collapse to one row per connection."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlsdetect.schema import validate

from .test_envoy import ISSUER, SAMPLE, needs_sample, read_envoy, record, write


@needs_sample
def test_sample_collapse_one_row_per_connection() -> None:
    df = read_envoy([SAMPLE], collapse=True)
    validate(df)
    assert len(df) == 5
    assert list(df["conn_id"]) == ["9", "13", "16", "20", "32"]
    row = df.iloc[0]
    # earliest ts is the listener line's; the user agent and upstream issuer come from the HTTP line
    assert row["ts"] == pd.Timestamp("2026-11-26T17:08:00.453Z")
    assert row["user_agent"] == "node/20.20.2"
    assert row["server_issuer"] == ISSUER
    assert row["envoy_line"] == "http"
    assert row["http_requests"] == 1


def test_client_id_falls_back_to_ip(tmp_path: Path) -> None:
    df = read_envoy([write(tmp_path, [record()])])
    assert df.iloc[0]["client_id"] == "10.1.2.3"


def test_collapse_keeps_connections_apart(tmp_path: Path) -> None:
    lines = [
        record(connection_id=1, method=None, response_code=0, start_time="2026-01-01T00:00:00Z"),
        record(connection_id=1, start_time="2026-01-01T00:00:01Z", user_agent="ua/1"),
        record(connection_id=1, start_time="2026-01-01T00:00:02Z", user_agent="ua/1"),
        # same id after an Envoy restart, another client port: another connection
        record(connection_id=1, downstream_remote_address="10.1.2.3:40001", start_time="2026-01-01T01:00:00Z"),
        record(connection_id=None, method=None, response_code=0, start_time="2026-01-01T02:00:00Z"),
    ]
    df = read_envoy([write(tmp_path, lines)], collapse=True)
    validate(df)
    assert list(df["http_requests"]) == [2, 1, 0]
    assert list(df["client_port"]) == [40000, 40001, 40000]
    assert df.iloc[0]["user_agent"] == "ua/1"
    assert df.iloc[0]["ts"] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert list(df["envoy_line"]) == ["http", "http", "listener"]
