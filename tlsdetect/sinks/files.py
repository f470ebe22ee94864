"""Writers for the connections table: a readable table, JSON lines, CSV and Parquet.

All writers take the same frame. List cells (the parsed hello lists) become JSON arrays in
text formats and Arrow lists in Parquet, so a row written and read back recomputes the same
fingerprints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import IO, Any

import pandas as pd

from tlsdetect.sinks.csv_rows import write_csv
from tlsdetect.sinks.jsonl import write_jsonl
from tlsdetect.sinks.table import Rank, TableView
from tlsdetect.sinks.values import iso_utc, plain

#: The per-value form, under the name the alert writers and tests import.
_plain = plain

__all__ = ["ALERT_FORMATS", "FORMATS", "TABLE_COLUMNS", "Sink", "iso_utc", "to_records", "write"]

FORMATS = ("table", "jsonl", "csv", "parquet")
#: Formats of the stream's alerts (one record per connection whose verdict is not ``ok``), which
#: ``tlsdetect score`` can also write: ECS JSON lines (:mod:`.ecs`) and CEF lines (:mod:`.cef`).
ALERT_FORMATS = ("ecs", "cef")

#: What fits a terminal: enough to act on, the full rows are one ``--format jsonl`` away.
TABLE_COLUMNS = (
    "ts",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "sni",
    "tls_version",
    "ja4",
    "ja3",
    "ja3s",
    "server_issuer",
)


def utc_time(ts: Any) -> dt.datetime | None:
    """An alert's ISO 8601 ``ts`` as an aware UTC datetime (naive counts as UTC); None when absent or bad."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(df.columns)
    return [{c: _plain(v) for c, v in zip(cols, row, strict=True)} for row in df.itertuples(index=False)]


def _arrow_schema(df: pd.DataFrame) -> Any:
    """Arrow types from the table schema, so every chunk of one file has the same schema."""
    import pyarrow as pa

    from tlsdetect import schema

    kinds = {
        "string": pa.string(),
        "Int32": pa.int32(),
        "boolean": pa.bool_(),
        "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"),
        # certificate columns: dictionaries, read back as categoricals; 32-bit indices whatever
        # width a chunk's codes have (a later chunk may know more certificates than the first)
        "category": pa.dictionary(pa.int32(), pa.string()),
    }
    fields = []
    for col in df.columns:
        dtype = schema.COLUMNS.get(col)
        if col == "reasons":  # one fixed type, whatever the first chunk holds (even no reason at all)
            fields.append(pa.field(col, schema.REASONS_ARROW))
        elif dtype == "object":
            item = pa.string() if col == "ch_alpn" else pa.int32()
            fields.append(pa.field(col, pa.list_(item)))
        elif dtype in kinds:
            fields.append(pa.field(col, kinds[dtype]))
        else:
            fields.append(pa.Schema.from_pandas(df[[col]], preserve_index=False).field(col))
    return pa.schema(fields)


def _shared_list_array(cells: pd.Series, kind: Any) -> Any:
    """An Arrow list column converted once per distinct cell *object*, or None when most cells
    are distinct objects (then Arrow's own conversion of the frame is as good).

    The pcap fast lane broadcasts a few hundred parsed hello lists to every row: converting
    those once and repeating them by index is exact (one object, one value) and spares Arrow a
    Python-level walk over every tuple of every row.
    """
    import numpy as np
    import pyarrow as pa

    values = cells.to_numpy(dtype=object)
    probe = values[:256]
    if 2 * len(set(map(id, probe))) > len(probe):  # distinct objects: not worth the detour
        return None
    ids = np.fromiter(map(id, values), dtype=np.uint64, count=len(values))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    if 2 * len(first) > len(values):
        return None
    return pa.array(values[first], type=kind, from_pandas=True).take(pa.array(inverse.reshape(-1)))


class _ParquetSink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.writer: Any = None
        self.schema: Any = None

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.schema = _arrow_schema(df)
            self.writer = pq.ParquetWriter(self.path, self.schema)
        shared = {f.name: _shared_list_array(df[f.name], f.type) for f in self.schema if pa.types.is_list(f.type)}
        done = {name: array for name, array in shared.items() if array is not None}
        rest = [f for f in self.schema if f.name not in done]
        table = pa.Table.from_pandas(df[[f.name for f in rest]], schema=pa.schema(rest), preserve_index=False)
        done.update({f.name: table.column(f.name) for f in rest})
        self.writer.write_table(pa.Table.from_arrays([done[f.name] for f in self.schema], schema=self.schema))

    def close(self) -> None:
        if self.writer is None:  # no rows at all: still write a valid, empty file
            from tlsdetect import schema

            self.write(schema.empty())
        self.writer.close()


class _TextSink:
    def __init__(self, fmt: str, fh: IO[str], columns: Sequence[str] | None) -> None:
        self.fmt, self.fh, self.columns = fmt, fh, columns
        self.header = True

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "jsonl":
            write_jsonl(df, self.fh)
        else:
            write_csv(df, self.fh, header=self.header)
            self.header = False

    def close(self) -> None:
        if self.fmt == "csv" and self.header:
            self.fh.write(",".join(self.columns or ()) + "\n")
        self.fh.flush()


class _TableSink(TableView):
    """The table view, flushed at the end like the text writers."""

    def close(self) -> None:
        super().close()
        self.fh.flush()


class Sink:
    """Writes chunks of the connections table as they come; call :meth:`close` at the end.

    ``rows`` counts every row written, also those a table with ``max_rows`` does not show; ``rank``
    picks which a cut table shows (:mod:`tlsdetect.sinks.table`). Both apply to the table only.
    """

    def __init__(
        self,
        fmt: str,
        fh: IO[str] | None = None,
        *,
        path: str | None = None,
        columns: Sequence[str] | None = None,
        width: int | None = None,
        max_rows: int | None = None,
        rank: Rank | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.columns = list(columns) if columns is not None else None
        self.rows = 0
        self._impl: _ParquetSink | _TextSink | _TableSink
        if fmt == "parquet":
            if path is None:
                raise ValueError("parquet output needs a file: give -o FILE")
            self._impl = _ParquetSink(path)
        elif fh is None:
            raise ValueError(f"{fmt} output needs a stream")
        elif fmt == "table":
            self._impl = _TableSink(fh, self.columns or TABLE_COLUMNS, width=width, max_rows=max_rows, rank=rank)
        else:
            self._impl = _TextSink(fmt, fh, self.columns)

    def write(self, df: pd.DataFrame) -> None:
        self.rows += len(df)
        if isinstance(self._impl, _TableSink):  # it ranks on every column, then keeps its own
            self._impl.write(df)
            return
        if self.columns is not None:
            df = df[[c for c in self.columns if c in df.columns]]
        self._impl.write(df)

    def close(self) -> None:
        self._impl.close()


def write(
    df: pd.DataFrame,
    fmt: str,
    fh: IO[str] | None = None,
    *,
    path: str | None = None,
    columns: Sequence[str] | None = None,
    width: int | None = None,
    max_rows: int | None = None,
    rank: Rank | None = None,
) -> None:
    """Write one whole table (a :class:`Sink` with a single chunk)."""
    sink = Sink(fmt, fh, path=path, columns=columns, width=width, max_rows=max_rows, rank=rank)
    sink.write(df)
    sink.close()
