"""Envoy JSON lines: Arrow's block parse, and bad lines located and dead-lettered when it fails."""

from __future__ import annotations

import json
from pathlib import Path

from tlsdetect.readers.logs import DeadLetter

from .test_envoy import read_envoy, record, write


def test_dead_letter_counting_json(tmp_path: Path) -> None:
    lines = [
        record(),
        '{"downstream_remote_address": "10.0.0.1:1", broken',
        "",
        "[1, 2]",
        record(downstream_remote_address="not-an-address"),
        record(downstream_local_address="10.0.0.1:70000"),
        record(start_time="yesterday"),
        record(ja4={"nested": 1}),
        record(connection_id=8, method=None, response_code=0),
    ]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert len(df) == 2
    assert list(df["conn_id"]) == ["7", "8"]
    assert (dead.stats.files, dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (1, 8, 2, 6)
    records = map(json.loads, (tmp_path / "dead.jsonl").read_text().splitlines())
    got = [(r["line"], r["reason"].split(":")[0]) for r in records]
    assert got == [
        (2, "broken JSON"),
        (4, "not a JSON object"),
        (8, "unexpected value type"),
        (5, "bad address"),
        (6, "bad address"),
        (7, "bad timestamp"),
    ]


def test_bad_rows_in_fast_path_are_located(tmp_path: Path) -> None:
    lines = [record(connection_id=i) for i in range(50)]
    lines[10] = record(connection_id=10, downstream_remote_address="999.1.1.1:3")
    lines.insert(20, "   ")
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert len(df) == 49
    assert dead.stats.lines == 50
    (rec,) = map(json.loads, (tmp_path / "dead.jsonl").read_text().splitlines())
    assert rec["line"] == 11
    assert "999.1.1.1" in rec["text"]
