"""``incomplete_handshake`` and ``hello_fragmented``: a row the reader could not see is never a quiet
``ok``, and a hello cut into many records is evidence of its own; on synthetic tables and through the
whole pcap engine and scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.evidence import SIGNALS, Evidence
from tlsdetect.detect.scoring import SUSPICIOUS_AT, score
from tlsdetect.detect.visibility_signals import FRAGMENTED_AT, REASON_DETAIL, visibility_signals
from tlsdetect.readers.pcap.engine import read_pcap

from .craft import (
    client_hello_body,
    handshake_message,
    server_hello_body_tls13,
    stream_segments,
    tcp_conversation,
    tls_records,
)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"ts": "2026-01-01T00:00:00Z", "client_ip": "10.0.0.1", "client_port": 40000, "server_ip": "10.9.9.9",
            "server_port": 443, "source": "test"}
    df = pd.DataFrame([{**base, **r, "conn_id": f"c{i}"} for i, r in enumerate(rows)])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return schema.conform(df)


def _reasons(ev: Evidence) -> list[dict[str, str]]:
    return [{r["code"]: r["observed"] for r in rs} for rs in ev.reasons()]


def test_each_reason_code_fires_with_its_sentence() -> None:
    codes = list(REASON_DETAIL)
    df = _table([{"incomplete": c} for c in codes] + [{"incomplete": None, "ja4": "t13d0305h2_x_y"}])
    ev = Evidence(len(df))
    visibility_signals(df, ev)
    got = _reasons(ev)
    assert got[:-1] == [{"incomplete_handshake": c} for c in codes]
    assert got[-1] == {}
    details = [rs[0]["detail"] for rs in ev.reasons()[:-1]]
    assert details == [REASON_DETAIL[c] for c in codes]


def test_fragmented_from_the_threshold_on() -> None:
    df = _table([{"ch_records": n} for n in (None, 1, 3, FRAGMENTED_AT - 1, FRAGMENTED_AT, 400)])
    ev = Evidence(len(df))
    visibility_signals(df, ev)
    assert _reasons(ev) == [{}, {}, {}, {}, {"hello_fragmented": str(FRAGMENTED_AT)}, {"hello_fragmented": "400"}]


def test_a_table_without_the_columns_scores_as_before() -> None:
    df = _table([{"ja4": "t13d0305h2_x_y"}]).drop(columns=["incomplete", "ch_records"])
    ev = Evidence(len(df))
    visibility_signals(df, ev)
    assert _reasons(ev) == [{}]


def test_an_incomplete_row_alone_is_suspicious_not_ok() -> None:
    assert SIGNALS["incomplete_handshake"].weight >= SUSPICIOUS_AT
    scored = score(_table([{"incomplete": "hello_cut"}, {"incomplete": None}]), None)
    assert scored["verdict"].tolist()[0] == "suspicious"
    assert [r["code"] for r in scored["reasons"][0]] == ["incomplete_handshake"]
    assert list(scored["reasons"][1]) == []


def _capture(tmp_path: Path, client: list[bytes]) -> Path:
    server = tls_records(handshake_message(2, server_hello_body_tls13()), 1 << 14)
    segs = stream_segments(client, 10**6, from_client=True) + stream_segments(server, 1400, from_client=False)
    path = tmp_path / "c.pcap"
    path.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), segs))
    return path


def test_a_hello_in_one_byte_records_is_read_and_flagged(tmp_path: Path) -> None:
    """The evasion of issue 18 row 2, end to end: 1,613 records, each in its own segment."""
    hello = handshake_message(1, client_hello_body(padding=1500))
    path = _capture(tmp_path, tls_records(hello, 1))
    df, _ = read_pcap(path)
    row = df.iloc[0]
    assert row["sni"] == "example.com"
    assert isinstance(row["ja4"], str)
    assert row["ch_records"] == len(hello)
    assert pd.isna(row["incomplete"])
    scored = score(df, None)
    assert scored["verdict"].tolist() == ["suspicious"]
    assert [r["code"] for r in scored["reasons"][0]] == ["hello_fragmented"]


def test_a_hello_past_the_depth_is_incomplete_and_suspicious(tmp_path: Path) -> None:
    hello = handshake_message(1, client_hello_body(padding=60_000))
    path = _capture(tmp_path, tls_records(hello, 1))  # 60k records: 6 bytes each, past 256 KiB
    df, _ = read_pcap(path)
    assert df["incomplete"].tolist() == ["depth_exceeded"]
    assert df["ja4"].isna().all()
    assert score(df, None)["verdict"].tolist() == ["suspicious"]


def test_weights_make_could_not_see_suspicious_by_itself() -> None:
    for code in ("incomplete_handshake", "hello_fragmented"):
        assert SIGNALS[code].weight >= SUSPICIOUS_AT
        assert not SIGNALS[code].supporting
