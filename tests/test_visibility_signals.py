"""``incomplete_handshake`` and ``hello_fragmented``: a row the reader could not see is never a quiet
``ok``, and a hello cut into many records is evidence of its own; on synthetic tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.evidence import SIGNALS, Evidence
from tlsdetect.detect.visibility_signals import FRAGMENTED_AT, REASON_DETAIL, visibility_signals


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


def test_weights_make_could_not_see_suspicious_by_itself() -> None:
    from tlsdetect.detect.scoring import SUSPICIOUS_AT

    for code in ("incomplete_handshake", "hello_fragmented"):
        assert SIGNALS[code].weight >= SUSPICIOUS_AT
        assert not SIGNALS[code].supporting
