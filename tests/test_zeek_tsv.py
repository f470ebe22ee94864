"""Zeek TSV: escapes in vectors, concatenated header blocks, damaged lines dead-lettered with their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.readers.logs import DeadLetter, LogFormatError

from .test_zeek import SSL_FIELDS, ZEEK, _row, _tsv_value, needs_samples, read, read_zeek, ssl_tsv


@needs_samples
def test_vector_escape_sample() -> None:
    df, letters = read(ZEEK / "zeek_cert-request-info_vector-escape_ssl.log")
    assert len(df) == 1
    assert letters.stats.bad_lines == 0
    row = df.iloc[0]
    assert row["client_ip"] == "fd42:496a:d659:bb85::1"
    assert row["server_port"] == 3000
    assert row["tls_version"] == "TLSv1.2"
    assert pd.isna(row["sni"])


@needs_samples
def test_dead_letters_for_corrupted_copy(tmp_path: Path) -> None:
    lines = (ZEEK / "foxio_ja4_ssl.log").read_text().splitlines(keepends=True)
    lines[8] = lines[8].replace("\t", "\t\t", 1)  # wrong field count (first data line is line 9)
    lines[9] = lines[9].replace("1675707152.011673", "16757x7152.0")  # bad number
    lines[10] = lines[10].replace("\t443\t", "\tport\t", 1)  # bad port
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines))
    out = tmp_path / "dead.jsonl"
    with DeadLetter(out) as letters:
        df = read_zeek([bad], dead_letter=letters)
    assert len(df) == 17
    assert letters.stats.bad_lines == 3
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == [9, 10, 11]
    reasons = {r["line"]: r["reason"] for r in records}
    assert reasons[9].startswith("wrong field count")
    assert reasons[10] == "bad number: ts"
    assert reasons[11] == "bad number: id.resp_p"
    assert letters.stats.lines == 20


def test_concatenated_header_blocks(tmp_path: Path) -> None:
    one = ssl_tsv([[_tsv_value(v) for v in _row(0).values()]])
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "server_name"]
    two = ssl_tsv([["1700000001.0", "C9", "10.0.0.9", "1234", "10.0.0.8", "8443", "TLSv11", "other.example"]],
                  fields, ["time", "string", "addr", "port", "addr", "port", "string", "string"])
    path = tmp_path / "cat.log"
    path.write_text(one + two)
    df, letters = read(path)
    assert list(df["conn_id"]) == ["C0", "C9"]
    assert list(df["tls_version"]) == ["TLSv1.3", "TLSv1.1"]
    assert df.iloc[1]["server_port"] == 8443
    assert letters.stats.bad_lines == 0


def test_duplicated_field_name_is_a_format_error(tmp_path: Path) -> None:
    row = [_tsv_value(v) for v in _row(0).values()]
    for name, data in (("small.log", ssl_tsv([row], [*SSL_FIELDS[:-1], "uid"])),  # in memory
                       ("big.log", ssl_tsv([row] * 70_000, [*SSL_FIELDS[:-1], "uid"]))):  # read from disk
        path = tmp_path / name
        path.write_text(data)
        assert (path.stat().st_size > 16 << 20) == (name == "big.log")
        with pytest.raises(LogFormatError, match="#fields names uid more than once"):
            read(path)


def test_line_of_unset_fields_is_a_dead_letter(tmp_path: Path) -> None:
    rows = [[_tsv_value(v) for v in _row(i).values()] for i in range(2)]
    path = tmp_path / "ssl.log"
    path.write_text(ssl_tsv([rows[0], ["-"] * len(SSL_FIELDS), rows[1]]))
    letters = DeadLetter(tmp_path / "dead.jsonl")
    df = read_zeek([path], dead_letter=letters)
    letters.close()
    assert list(df["conn_id"]) == ["C0", "C1"]
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["line"], d["reason"].split(":")[0]) for d in dead] == [(9, "no connection fields")]
