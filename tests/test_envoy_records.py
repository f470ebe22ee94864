"""Pushed records in columns: cells put in order, padded, text as a JSON line's cells read."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.envoy import parse_envoy_lines
from tlsdetect.readers.envoy.read import parse_envoy_records
from tlsdetect.readers.envoy.records import Records, record_text, scalar_text


def test_put_pads_and_last_value_wins() -> None:
    rec = Records()
    rec.put(0, "sni", "a")
    rec.put(2, "sni", "c")
    rec.put(1, "ja4", "x")
    rec.put(1, "ja4", "y")
    rec.rows = 4
    table = rec.table()
    assert table.num_rows == 4
    assert table.column("sni").to_pylist() == ["a", None, "c", None]
    assert table.column("ja4").to_pylist() == [None, "y", None, None]
    assert rec.dicts() == [{"sni": "a"}, {"ja4": "y"}, {"sni": "c"}, {}]
    assert json.loads(record_text(table, 1)) == {"ja4": "y"}


def test_cells_put_win_over_a_whole_column() -> None:
    import pyarrow as pa

    rec = Records(2)
    rec.arrays["START_TIME"] = pa.array(["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"])
    rec.put(1, "START_TIME", "2026-12-07T00:00:00.000Z")
    assert rec.table().column("START_TIME").to_pylist() == ["2026-01-01T00:00:00.000Z", "2026-12-07T00:00:00.000Z"]


def test_empty_records() -> None:
    assert Records().table().num_rows == 0
    assert Records(3).table().num_rows == 3


def test_scalar_text_reads_as_json_cells() -> None:
    assert scalar_text(True) == "true"
    assert scalar_text(443) == "443"
    assert scalar_text(2.0) == "2"
    assert scalar_text(2.5) == "2.5"
    assert scalar_text(None) is None
    assert scalar_text({"a": [1]}) == '{"a":[1]}'


_KEYS = st.sampled_from(["downstream_remote_address", "DOWNSTREAM_LOCAL_ADDRESS", "ja4", "ja3", "sni",
                         "requested_server_name", "start_time", "unrelated", "connection_id"])  # fmt: skip
_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(["10.0.0.1:443", "[::1]:80", "-", "",
                                                            "2026-12-07T10:00:00.000Z", "999999:1"]))  # fmt: skip


@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=12))
def test_records_read_as_their_json_lines(records: list[dict[str, str]]) -> None:
    """Whatever the cells, the columns give the rows (and the dead letters) of the same records as JSON lines."""
    from tlsdetect.readers.logs import DeadLetter

    rec = Records(len(records))
    for i, r in enumerate(records):
        for k, v in r.items():
            rec.put(i, k, v)
    dead_cols, dead_lines = DeadLetter(), DeadLetter()
    rows = parse_envoy_records(rec.table(), source=Path("x"), dead_letter=dead_cols)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    lines = parse_envoy_lines(data, source=Path("x"), dead_letter=dead_lines)
    assert len(rows) == len(lines)
    assert sorted(dead_cols.stats.reasons.items()) == sorted(dead_lines.stats.reasons.items())
    for col in ("client_ip", "client_port", "server_ip", "ja4", "sni", "ts"):
        assert rows[col].astype(str).tolist() == lines[col].astype(str).tolist(), col
