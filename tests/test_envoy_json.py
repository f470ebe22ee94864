"""Envoy JSON lines: Arrow's block parse, bad lines located and dead-lettered when it fails, hostile lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tlsdetect.readers.json_depth import MAX_DEPTH
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


def _nested(n: int) -> str:
    """An Envoy record nested ``n`` deep (its object, then arrays)."""
    return '{"downstream_remote_address": "10.9.9.9:1", "x": ' + "[" * (n - 1) + "]" * (n - 1) + "}"


@pytest.mark.parametrize("command", ["fingerprint", "score"])
def test_deeply_nested_line_is_a_dead_letter_not_a_crash(tmp_path: Path, command: str) -> None:
    """Arrow's JSON reader SIGSEGVs on a line nested ~20,000 deep (and takes minutes from ~5,000): the
    CLI runs in a subprocess so that a crash fails this test instead of killing the test run."""
    middle = write(tmp_path, [record(connection_id=1), _nested(20_000), record(connection_id=2)], "middle.log")
    first = write(tmp_path, [_nested(20_000), record(connection_id=3)], "first.log")
    dead = tmp_path / "dead.jsonl"
    res = subprocess.run([sys.executable, "-m", "tlsdetect", command, str(middle), str(first), "--dead-letter",
                          str(dead), "-f", "csv", "--output", str(tmp_path / "out.csv")],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 3
    got = [(Path(r["file"]).name, r["line"], r["reason"].split(":")[0]) for r in map(json.loads, dead.open())]
    assert got == [("middle.log", 2, "JSON nested too deep"), ("first.log", 1, "JSON nested too deep")]


def test_deep_line_keeps_later_line_numbers(tmp_path: Path) -> None:
    lines = [record(connection_id=1), _nested(MAX_DEPTH + 1), record(connection_id=2),
             record(downstream_remote_address="nope"), _nested(MAX_DEPTH), "[1]"]  # fmt: skip
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert list(df["client_ip"]) == ["10.1.2.3", "10.1.2.3", "10.9.9.9"]  # depth MAX_DEPTH is read
    assert (dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (6, 3, 3)
    got = [(r["line"], r["reason"].split(":")[0]) for r in map(json.loads, (tmp_path / "dead.jsonl").open())]
    assert sorted(got) == [(2, "JSON nested too deep"), (4, "bad address"), (6, "not a JSON object")]


def test_lines_without_connection_fields_are_dead_letters(tmp_path: Path) -> None:
    lines = [record(connection_id=1), '{"a": [1, 2, 3]}', '{"zz": null}', "{}",
             '{"downstream_remote_address": "-", "requested_server_name": "", "ja3": null, "method": "GET"}',
             record(connection_id=2)]  # fmt: skip
    for fast in (True, False):  # Arrow's block parse, and the line-by-line path a broken line sends it to
        body = lines if fast else [*lines, "{broken"]
        dead = DeadLetter()
        df = read_envoy([write(tmp_path, body, f"{fast}.log")], dead_letter=dead)
        assert list(df["conn_id"]) == ["1", "2"]
        assert dead.stats.reasons["no connection fields"] == 4
        assert dead.stats.bad_lines == 4 + (not fast)


def test_text_line_of_dashes_is_a_dead_letter(tmp_path: Path) -> None:
    fmt = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %TLS_JA3_FINGERPRINT%\n"
    lines = ["[2026-11-26T17:08:00.484Z] 10.1.2.3:4000 a.test abc", "[2026-11-26T17:08:00.484Z] - - -"]
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead, text_format=fmt)
    assert list(df["client_ip"]) == ["10.1.2.3"]
    assert dead.stats.reasons["no connection fields"] == 1
