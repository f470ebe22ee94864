"""Pushed Envoy records (gRPC access-log service, OTLP) as named string columns: no JSON round trip.

A receiver decodes a message into :class:`Records`: one list per key (``DOWNSTREAM_REMOTE_ADDRESS``,
``ja4``, ...), filled a record at a time, then one Arrow table of string columns. The names go through the
same key map as a JSON log line's (:func:`tlsdetect.readers.envoy.read.parse_envoy_records`), so a record
and a log line with the same keys give the same row. Formatting a record as JSON and parsing it again cost
more than the rest of the receiver's path together (issue 22: 1.8 of 2.6 s per 20,000 ALS records).

A record's text (for a dead letter) is made only when the record turns out bad (:func:`record_text`).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Records", "record_text", "scalar_text"]


def scalar_text(value: object) -> str | None:
    """A value as the text a JSON log line's cell reads as (``true``, ``443``); lists and maps as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class Records:
    """Columns of string cells keyed by record key; a key missing from a record is a null cell.

    ``arrays`` holds columns built whole (Arrow arrays of ``rows`` cells); ``columns`` those filled a cell at
    a time with :meth:`put`; a key in both takes the cells put, where there are some.
    """

    def __init__(self, rows: int = 0) -> None:
        self.rows = rows
        self.arrays: dict[str, pa.Array] = {}
        self.columns: dict[str, list[str | None]] = {}

    def put(self, i: int, key: str, value: str | None) -> None:
        """Record ``i``'s ``key`` (records are put in order; the last value put wins)."""
        col = self.columns.get(key)
        if col is None:
            col = self.columns[key] = []
        if len(col) < i:
            col.extend([None] * (i - len(col)))
        if len(col) > i:
            col[i] = value
        else:
            col.append(value)

    def table(self) -> pa.Table:
        """One Arrow table of string columns of ``rows`` cells each."""
        out = dict(self.arrays)
        for key, col in self.columns.items():
            cells = pa.array(col + [None] * (self.rows - len(col)), type=pa.string())
            out[key] = cells if key not in out else pc.coalesce(cells, out[key])
        if not out:
            return pa.table({"_": pa.nulls(self.rows, pa.string())}).drop_columns(["_"])
        return pa.table(out)

    def dicts(self) -> list[dict[str, str]]:
        """The records as dicts of their non-empty cells (tests, and the text of a bad record)."""
        return [dict(r) for r in _rows(self.table())]


def _rows(table: pa.Table) -> list[list[tuple[str, str]]]:
    return [[(k, v) for k, v in row.items() if v is not None and v != ""] for row in table.to_pylist()]


def record_text(table: pa.Table, i: int) -> str:
    """Record ``i`` of ``table`` as a JSON object of its non-empty cells (a dead letter's text)."""
    (row,) = _rows(table.slice(i, 1))
    return json.dumps(dict(row), separators=(",", ":"), ensure_ascii=False)
