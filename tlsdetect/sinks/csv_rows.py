"""CSV built from whole columns: each distinct value of a column is formatted and quoted once, rows are joined.

pandas' ``to_csv`` hands every row to Python's CSV writer (17 s per 100k rows of the connections table).
Here the same pipeline formats only a column's distinct values (:mod:`.distinct`): a two-column frame of
them goes through ``DataFrame.to_csv`` into a recorder that keeps one line per value, so a cell's text and
quoting are pandas' and the CSV writer's own, not a copy of their rules. Rows are then joined per block.

What the cells hold is decided before, as it was: wire text escaped (:mod:`.escape`, with the formula
guard), times as ISO 8601 UTC text (:func:`.values.iso_utc`), lists as JSON text. Frames whose layout a
column-by-column view could change (no columns, non-text names, naive times formatted per block) go
through pandas whole.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pandas as pd

from tlsdetect.sinks.distinct import first_rows
from tlsdetect.sinks.escape import escape_frame
from tlsdetect.sinks.rows import BLOCK_ROWS, Column, join_rows
from tlsdetect.sinks.values import iso_utc, plain

__all__ = ["BLOCK_ROWS", "csv_blocks", "write_csv", "write_csv_whole"]


def write_csv_whole(df: pd.DataFrame, fh: IO[str], *, header: bool = True) -> None:
    """The per-row writer (pandas over the whole frame): the oracle of the tests, and the way for odd frames."""
    # Text off the wire (SNI, DNs, User-Agent, ...) with control characters and a leading formula
    # character escaped (sinks.escape): no CR or LF can split a row, no cell runs in a spreadsheet.
    # Before lists become JSON: that text (ASCII, escaped by JSON) is safe as it is.
    out = escape_frame(df, formula=True).copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):  # "...T18:37:10.545976Z", as JSON lines and the table
            out[col] = iso_utc(out[col])
        elif out[col].dtype == object:
            out[col] = _json_lists(out[col])
    out.to_csv(fh, index=False, header=header)


def _json_lists(s: pd.Series) -> pd.Series:
    return s.map(lambda v: json.dumps(plain(v)) if isinstance(v, tuple | list) else v)


_INT = {int}


def _json_list(value: Any, ints: dict[tuple[int, ...], str]) -> Any:
    """:func:`_json_lists` for one value, hello tuples of plain ints short of the detour (an int's JSON is its
    repr; ``json.dumps`` separates items with ``", "``) and remembered in ``ints`` (see ``jsonl._json``)."""
    if type(value) is tuple and set(map(type, value)) <= _INT:
        text = ints.get(value)
        if text is None:
            text = ints[value] = "[" + ", ".join(map(str, value)) + "]"
        return text
    return json.dumps(plain(value)) if isinstance(value, tuple | list) else value


class _Lines(io.StringIO):
    """A file that keeps each write apart: the CSV writer writes one row per call."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)


def _cells(s: pd.Series, tail: str) -> Column:
    """Each distinct value's CSV cell (quoted as the CSV writer quotes it) plus ``tail``, and each row's code:
    formatted by pandas and the CSV writer, once per distinct value."""
    codes, first = first_rows(s)
    values = s.iloc[first].reset_index(drop=True)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        text = iso_utc(values).to_numpy(dtype=object, copy=True)  # digits, '-', ':', '.', 'T', 'Z': never quoted
        text[pd.isna(text)] = ""
        return codes, text + tail
    if values.dtype == object:
        ints: dict[tuple[int, ...], str] = {}
        values = pd.Series([_json_list(v, ints) for v in values], dtype=object)
    rec = _Lines()
    pd.DataFrame({"v": values, "end": ""}).to_csv(rec, index=False, header=False)
    if len(rec.lines) != len(values):
        raise AssertionError(f"CSV wrote {len(rec.lines)} lines for {len(values)} values")
    return codes, np.array([line[:-2] + tail for line in rec.lines] or [""], dtype=object)  # 'cell,\n'


def _columnar(df: pd.DataFrame) -> bool:
    cols = list(df.columns)
    return bool(cols) and all(type(c) is str for c in cols) and len(set(cols)) == len(cols) and not any(
        isinstance(dt, np.dtype) and dt.kind in "mM" for dt in df.dtypes
    )


def _header(cols: list[Any]) -> str:
    rec = _Lines()
    pd.DataFrame(columns=cols).to_csv(rec, index=False)
    return "".join(rec.lines)


def csv_blocks(df: pd.DataFrame, *, header: bool = True, block_rows: int = BLOCK_ROWS) -> Iterator[str]:
    """The CSV text of ``df`` in blocks of up to ``block_rows`` rows (the header first when asked)."""
    if not _columnar(df):
        rec = _Lines()
        write_csv_whole(df, rec, header=header)
        yield "".join(rec.lines)
        return
    ready = escape_frame(df, formula=True)
    if header:
        yield _header(list(df.columns))
    last = ready.shape[1] - 1
    cols = [_cells(ready.iloc[:, j], "\n" if j == last else ",") for j in range(last + 1)]
    if len(cols) == 1:  # the CSV writer quotes a row of one empty field, not to read as no row at all
        codes, cells = cols[0]
        cols[0] = (codes, np.where(cells == "\n", '""\n', cells))
    yield from join_rows(cols, len(df), block_rows)


def write_csv(df: pd.DataFrame, fh: IO[str], *, header: bool = True) -> None:
    """Write ``df`` as CSV: byte for byte what :func:`write_csv_whole` gives, from whole columns."""
    for block in csv_blocks(df, header=header):
        fh.write(block)
