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


def test_downstream_cipher_is_its_iana_number(tmp_path: Path) -> None:
    """issue 16: ``%DOWNSTREAM_TLS_CIPHER%`` (OpenSSL name) -> ``sh_cipher``; TLS 1.3 -> ``sh_selected_version``.

    A name that is no known suite (or not a name at all) is missing, and the row is kept.
    """
    ciphers = ["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
               "BOGUS-SUITE", "-", "ECDHE-RSA-AES128-GCM-SHA256"]
    versions = ["TLSv1.2", "TLSv1.3", "TLSv1.2", "TLSv1.2", "TLSv1.3", "TLSv1"]
    lines = [record(connection_id=i, downstream_tls_cipher=c, downstream_tls_version=v)
             for i, (c, v) in enumerate(zip(ciphers, versions, strict=True))]
    lines.append(record(connection_id=99, downstream_tls_cipher=7))  # a number where a name belongs
    df = read_envoy([write(tmp_path, lines)])
    validate(df)
    assert df["sh_cipher"].tolist() == [0xC02F, 0x1302, 0xCCA9, pd.NA, pd.NA, 0xC02F, 0x0007]
    assert df["sh_selected_version"].tolist() == [pd.NA, 0x0304, pd.NA, pd.NA, 0x0304, pd.NA, 0x0304]
    assert "tls_cipher" not in df.columns
    assert df["resumed"].isna().all()  # not logged
    assert df["sh_version"].isna().all()
    collapsed = read_envoy([write(tmp_path, lines)], collapse=True)
    assert collapsed["sh_cipher"].dtype == "Int32"


@needs_sample
def test_sample_carries_the_downstream_cipher() -> None:
    df = read_envoy([SAMPLE])
    assert set(df["sh_cipher"]) == {0x1301, 0x1302}  # the sample's two TLS 1.3 suites, every line
