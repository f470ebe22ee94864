"""Zeek JSON lines: ISO 8601 timestamps, broken lines and records without their key dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tlsdetect.readers.json_depth import MAX_DEPTH
from tlsdetect.readers.logs import DeadLetter

from .test_zeek import ZEEK, _row, needs_samples, read, read_zeek


@needs_samples
def test_dead_letters_for_broken_json(tmp_path: Path) -> None:
    lines = (ZEEK / "zat_json_ssl.log").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:40] + "\n"
    lines[5] = lines[5].replace('"id.resp_p":443', '"id.resp_p":"https"')
    bad = tmp_path / "bad.json"
    bad.write_text("".join(lines))
    letters = DeadLetter()
    df = read_zeek([bad], dead_letter=letters)
    assert len(df) == 48
    assert letters.stats.bad_lines == 2
    assert set(letters.stats.reasons) == {"bad json", "bad number"}


def test_json_iso8601_timestamps(tmp_path: Path) -> None:
    row = _row(0) | {"ts": "2023-11-14T22:13:20.250000Z"}
    path = tmp_path / "iso.json"
    path.write_text(json.dumps(row) + "\n")
    df, letters = read(path)
    assert df.iloc[0]["ts"] == pd.Timestamp("2023-11-14 22:13:20.25", tz="UTC")
    assert letters.stats.bad_lines == 0


def test_json_object_without_uid_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_row(0)) + "\n{}\n[1, 2]\n")
    df, letters = read(path)
    assert len(df) == 1
    assert letters.stats.bad_lines == 2


def _deep(n: int) -> str:
    return '{"uid": "Cdeep", "x": ' + "[" * n + "]" * n + "}"


def test_deeply_nested_line_is_one_dead_letter(tmp_path: Path) -> None:
    """A 2-6 KB line nested past Python's recursion limit raised RecursionError and lost the whole file."""
    path = tmp_path / "s.json"
    path.write_text("\n".join([_deep(3_000), json.dumps(_row(0)), _deep(1_000), json.dumps(_row(1)),
                               _deep(MAX_DEPTH), ""]))  # fmt: skip
    df, letters = read(path)
    assert list(df["conn_id"]) == ["C0", "C1"]
    assert letters.stats.reasons["JSON nested too deep"] == 3
    assert letters.stats.lines == 5


def test_records_without_connection_fields_are_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    empty = dict.fromkeys(_row(0))
    path.write_text("\n".join([json.dumps(_row(0)), '{"uid": null}', json.dumps(empty), json.dumps(_row(1))]) + "\n")
    df, letters = read(path)
    assert list(df["conn_id"]) == ["C0", "C1"]
    assert letters.stats.reasons["no connection fields"] == 2
    assert letters.stats.bad_lines == 2
