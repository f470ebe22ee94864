"""JSON lines built from whole columns: each distinct value of a column is encoded once, rows are joined.

The per-row writer (a dict per row, ``json.dumps`` per row) cost 10 s per 100k rows of ~60 columns, 30x
writing Parquet. Here a column becomes an array of JSON fragments (``,"key":value``) by encoding its
distinct values (:mod:`.distinct`) and indexing them by code; the times are one vectorised pass
(:func:`.values.iso_utc`); rows are then one ``str.join`` over the fragments of a block of rows.

The bytes are those of ``json.dumps(record, ensure_ascii=False, separators=(",", ":"))`` per row: a
fragment is the same C encoder's text for the same value (:func:`.values.plain` first), keys in column
order. Frames whose keys a dict would change (repeated or non-text column names) go the per-row way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from json.encoder import encode_basestring
from typing import IO, Any

import numpy as np
import pandas as pd

from tlsdetect.sinks.distinct import first_rows
from tlsdetect.sinks.rows import BLOCK_ROWS, Column, join_rows
from tlsdetect.sinks.values import iso_utc_array, plain

__all__ = ["BLOCK_ROWS", "jsonl_blocks", "record_lines", "write_jsonl"]

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_INT = {int}


def _json(value: Any, ints: dict[tuple[int, ...], str]) -> str:
    """``_ENCODE(plain(value))``, with the common cells (text, integers, hello tuples) short of the detour.

    ``ints`` remembers the text of tuples of plain ints: the pcap reader makes a tuple object per hello
    and window, thousands of objects for a few dozen values. Only all-int tuples are looked up, and equal
    all-int tuples print the same (``(1,) == (1.0,) == (True,)`` never meet there).
    """
    kind = type(value)
    if kind is str:
        return encode_basestring(value)  # what the encoder calls for a str
    if kind is tuple and set(map(type, value)) <= _INT:
        text = ints.get(value)
        if text is None:
            text = ints[value] = "[" + ",".join(map(str, value)) + "]"  # an int's JSON is its repr
        return text
    if isinstance(value, np.integer):
        return str(int(value))
    return _ENCODE(plain(value))


def record_lines(df: pd.DataFrame) -> Iterator[str]:
    """The per-row writer, kept as the oracle the tests compare against: one ``json.dumps`` per row."""
    cols = list(df.columns)
    for row in df.itertuples(index=False):
        rec = {c: plain(v) for c, v in zip(cols, row, strict=True)}
        yield json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"


def _fragments(s: pd.Series, head: str, tail: str) -> Column:
    """``head + JSON(value) + tail`` per distinct value of ``s``, and each row's code into them."""
    codes, first = first_rows(s)
    values = s.iloc[first]
    if isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype.tz) == "UTC":  # times: one vectorised pass
        text, missing = iso_utc_array(values)
        out = np.strings.add(np.strings.add(head + '"', text), '"' + tail).astype(object)
        out[missing] = head + "null" + tail
        return codes, out
    if isinstance(values.array, pd.arrays.IntegerArray):  # an integer's JSON is its decimal text
        text = values.astype("string").fillna("null").to_numpy(dtype=object)
        return codes, head + text + tail
    listed = values.to_numpy(dtype=object) if isinstance(s.dtype, pd.StringDtype) else list(values)
    ints: dict[tuple[int, ...], str] = {}
    return codes, np.array([head + _json(v, ints) + tail for v in listed] or [""], dtype=object)


def _columnar(df: pd.DataFrame) -> bool:
    cols = list(df.columns)
    return bool(cols) and all(type(c) is str for c in cols) and len(set(cols)) == len(cols)


def jsonl_blocks(df: pd.DataFrame, block_rows: int = BLOCK_ROWS) -> Iterator[str]:
    """The JSON lines of ``df`` as text blocks of up to ``block_rows`` rows (each line ends in ``\\n``)."""
    if not _columnar(df):
        yield from record_lines(df)
        return
    cols = list(df.columns)
    last = len(cols) - 1
    frags = [
        _fragments(df.iloc[:, j], ("{" if j == 0 else ",") + _ENCODE(c) + ":", "}\n" if j == last else "")
        for j, c in enumerate(cols)
    ]
    yield from join_rows(frags, len(df), block_rows)


def write_jsonl(df: pd.DataFrame, fh: IO[str]) -> None:
    """Write ``df`` as JSON lines: byte for byte what :func:`record_lines` gives, from whole columns."""
    for block in jsonl_blocks(df):
        fh.write(block)


