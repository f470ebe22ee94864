"""The Zeek reader's fast paths give exactly what its general paths give.

* big plain TSV files are parsed by Arrow from disk while a scan checks their bytes (``zeek.tsv_disk``);
  anything it does not handle (carriage returns, a second header block, gzip, unreadable lines, a
  failed typed parse) falls back to the in-memory path, which must not count anything twice;
* large string columns are gathered with ``bytes.join`` instead of Arrow's dictionary decode
  (``schema.strings_from_codes``, also behind ``schema.as_text``);
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect import schema
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.readers.zeek import read, read_zeek, tsv_disk
from tlsdetect.readers.zeek.fields import Part

from .test_zeek import _row, _tsv_value, _x509_pair, ssl_tsv


def _rows(n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        r = [_tsv_value(v) for v in _row(i % 3).values()]
        r[1] = f"C{i}"
        if i % 7 == 1:
            r[8] = f"caf\\xc3\\xa9 \\\\ tab\\x09{i}"  # escapes in server_name
        if i % 11 == 2:
            r[10] = "-"  # unset vector
        if i % 13 == 3:
            r[10] = "(empty)"
        if i % 17 == 4:
            r[9] = "-"
        rows.append(r)
    return rows


def _read(paths: list[Path], dead: Path) -> tuple[pd.DataFrame, list[dict[str, object]], object]:
    dead.unlink(missing_ok=True)
    with DeadLetter(dead) as letters:
        df = read_zeek(paths, dead_letter=letters)
    return df, [json.loads(x) for x in dead.read_text().splitlines()], letters.stats


def _both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, paths: list[Path], chunk: int) -> bool:
    """Read with the general path, then with every file eligible for the streamed one: same results.
    Returns whether the streamed path took the ssl file."""
    general = _read(paths, tmp_path / "dead1.jsonl")
    monkeypatch.setattr(tsv_disk, "_STREAM_BYTES", 0)
    monkeypatch.setattr(tsv_disk, "_SCAN_CHUNK", chunk)
    taken: list[Path] = []
    real = tsv_disk.read_tsv_streamed

    def spy(path: Path, letters: DeadLetter) -> list[Part] | None:
        parts = real(path, letters)
        if parts is not None:
            taken.append(path)
        return parts

    monkeypatch.setattr(read, "read_tsv_streamed", spy)
    streamed = _read(paths, tmp_path / "dead2.jsonl")
    monkeypatch.undo()
    pd.testing.assert_frame_equal(streamed[0], general[0], check_exact=True)
    assert streamed[1] == general[1]
    assert streamed[2] == general[2]
    return paths[0] in taken


@pytest.mark.parametrize("chunk", [1 << 23, 64, 7])
@pytest.mark.parametrize("ending", ["close", "no_close", "no_newline"])
def test_streamed_equals_general(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunk: int, ending: str) -> None:
    text = ssl_tsv(_rows(300))
    if ending != "close":
        text = text[: text.rindex("#close")]
    if ending == "no_newline":
        text = text.rstrip("\n")
    ssl = tmp_path / "ssl.log"
    ssl.write_text(text)
    x509, _ = _x509_pair(tmp_path)
    assert _both(monkeypatch, tmp_path, [ssl, x509], chunk)


def test_streamed_with_comments_and_bad_numbers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = _rows(40)
    rows[5][0] = "12345678901.5"  # parses, but out of range: dead letter with its line
    rows[6][3] = str(2**62 + 5)  # parses as int64, too big: dead letter
    rows[7][8] = "#separator-like sni"  # '#' inside a line is data
    lines = ssl_tsv(rows).splitlines(keepends=True)
    lines.insert(20, "#a comment line\n")
    ssl = tmp_path / "ssl.log"
    ssl.write_text("".join(lines))
    assert _both(monkeypatch, tmp_path, [ssl], 16)
    df, records, _ = _read([ssl], tmp_path / "dead.jsonl")
    assert len(df) == 38
    assert [(r["line"], r["reason"]) for r in records] == [(13, "bad number: ts"), (14, "bad number: id.orig_p")]


@pytest.mark.parametrize("case", ["crlf", "lone_cr", "second_block", "wrong_count", "masked_ts", "gzip", "quotes"])
def test_streamed_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str) -> None:
    rows = _rows(30)
    text = ssl_tsv(rows)
    if case == "crlf":
        text = text.replace("\n", "\r\n")
    elif case == "lone_cr":  # Arrow would end a line there, Zeek's reading does not
        text = text.replace("\tC4\t", "\tC\r4\t")
    elif case == "second_block":
        text += ssl_tsv(_rows(3))
    elif case == "wrong_count":
        text = text.replace("\tC4\t", "\tC4\t\t")
    elif case == "masked_ts":
        text = text.replace("1700000001.25", "XXXXXXXXXX.XXXXXX")
    elif case == "quotes":
        text = text.replace("\tC4\t", '\t"C4\t')
    ssl = tmp_path / "ssl.log"
    if case == "gzip":
        ssl.write_bytes(gzip.compress(text.encode()))
    else:
        ssl.write_text(text, newline="")
    took = _both(monkeypatch, tmp_path, [ssl], 32)
    assert took is (case == "quotes")  # quotes are plain data to both paths


def test_streamed_x509_and_unset_vectors_keep_the_tsv_meaning(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """An unset (``-``) chain reads as an empty one in TSV, on both paths."""
    ssl = tmp_path / "ssl.log"
    ssl.write_text(ssl_tsv(_rows(30)))
    x509, _ = _x509_pair(tmp_path)
    assert _both(monkeypatch, tmp_path, [ssl, x509], 1 << 20)
    df = read_zeek([ssl, x509])
    assert df.loc[2, "conn_id"] == "C2"
    assert df["server_chain"].isna().iloc[2]
    assert df.loc[0, "server_subject"] == "CN=leaf,O=Ex\\, Inc."


@pytest.mark.parametrize("threshold", [0, 1 << 40])
def test_take_join_and_decode_agree(monkeypatch: pytest.MonkeyPatch, threshold: int) -> None:
    rng = np.random.default_rng(3)
    monkeypatch.setattr(schema, "_JOIN_BYTES", threshold)
    cases: list[tuple[list[str | None], np.ndarray]] = [
        ([None if i % 5 == 2 else "é" * (i % 4) + "x" * int(rng.integers(0, 300)) for i in range(60)],
         rng.integers(-1, 60, 5000)),
        (["zeek"], np.zeros(100, dtype=np.int64)),
        (["tcp", "quic", "dtls"], np.ones(7, dtype=np.int64)),  # one value of several: the constant path
        (["tcp", None], np.ones(3, dtype=np.int64)),
        (["zeek"], np.array([0, -1, 0])),
        ([None], np.array([0, -1])),
        ([""], np.zeros(4, dtype=np.int64)),
        ([], np.full(3, -1)),
    ]
    for values, codes in cases:
        got = schema.strings_from_codes(values, codes)
        got._pa_array.validate(full=True)  # type: ignore[attr-defined]
        want = pd.array([values[c] if c >= 0 else None for c in codes], dtype="string")
        pd.testing.assert_extension_array_equal(got, want)
        if values:  # the same values as a certificate column, spelled out by as_text
            cat = pd.Series(schema.category_from_codes(values, codes))
            pd.testing.assert_extension_array_equal(schema.as_text(cat).array, want)


def test_streamed_plain_file_with_a_compressed_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Content decides, never the name: a plain log called ``*.gz`` is read as it is."""
    ssl = tmp_path / "ssl.log.gz"
    ssl.write_text(ssl_tsv(_rows(20)))
    assert _both(monkeypatch, tmp_path, [ssl], 1 << 20)
    assert len(read_zeek([ssl])) == 20


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("damage", ["none", "invalid", "truncated_at_end"])
def test_streamed_utf8(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunk: int, damage: str) -> None:
    """Raw UTF-8 in a body (Zeek escapes odd bytes, but not valid text): multi-byte characters across
    scan-chunk ends stay on the streamed path; invalid bytes take the general one and are dead letters."""
    rows = _rows(40)
    for i in range(0, 40, 3):
        rows[i][8] = f"caf\u00e9-\u00fc\u20ac{i}"  # raw 2- and 3-byte characters in server_name
    data = ssl_tsv(rows).encode()
    if damage == "invalid":
        data = data.replace(b"\tC5\t", b"\tC\xff5\t")
    elif damage == "truncated_at_end":
        data = data[: data.rindex(b"#close")] + b"x\t\xe2\x82"  # a last line ending mid-character
    ssl = tmp_path / "ssl.log"
    ssl.write_bytes(data)
    took = _both(monkeypatch, tmp_path, [ssl], chunk)
    assert took is (damage == "none")
    df, records, _ = _read([ssl], tmp_path / "dead.jsonl")
    assert df["sni"].str.startswith("caf\u00e9-\u00fc\u20ac").sum() == 14
    if damage == "invalid":
        assert [r["reason"] for r in records] == ["invalid UTF-8"]
        assert "C\\xff5" in str(records[0]["text"])
        assert len(df) == 39
    elif damage == "truncated_at_end":
        assert len(records) == 1
        assert len(df) == 40
    else:
        assert records == []
        assert len(df) == 40
