"""Writers for the connections table: a readable table, JSON lines, CSV and Parquet.

All writers take the same frame. List cells (the parsed hello lists) become JSON arrays in
text formats and Arrow lists in Parquet, so a row written and read back recomputes the same
fingerprints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import IO, Any

import pandas as pd

__all__ = ["FORMATS", "TABLE_COLUMNS", "to_records", "write"]

FORMATS = ("table", "jsonl", "csv", "parquet")

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


def _plain(value: Any) -> Any:
    """A JSON-ready value: missing -> None, tuples/arrays -> lists, timestamps -> ISO 8601."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "item"):
        return value.item()
    return value


def to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(df.columns)
    return [{c: _plain(v) for c, v in zip(cols, row, strict=True)} for row in df.itertuples(index=False)]


def _write_jsonl(df: pd.DataFrame, fh: IO[str]) -> None:
    for rec in to_records(df):
        fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
        fh.write("\n")


def _write_csv(df: pd.DataFrame, fh: IO[str]) -> None:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: json.dumps(_plain(v)) if isinstance(v, tuple | list) else v)
    out.to_csv(fh, index=False)


def _write_parquet(df: pd.DataFrame, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: list(v) if isinstance(v, tuple) else v)
    pq.write_table(pa.Table.from_pandas(out, preserve_index=False), path)


def _write_table(df: pd.DataFrame, fh: IO[str], columns: Sequence[str], width: int | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    cols = [c for c in columns if c in df.columns]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in cols:
        table.add_column(c, no_wrap=True)
    widest = {c: len(c) for c in cols}
    for rec in to_records(df[cols]):
        cells = ["" if rec[c] is None else str(rec[c]) for c in cols]
        for c, cell in zip(cols, cells, strict=True):
            widest[c] = max(widest[c], len(cell))
        table.add_row(*cells)
    # Fingerprints are only useful whole: size the table to its content, never fold a hash.
    natural = sum(widest.values()) + 3 * len(cols)
    console = Console(file=fh, width=max(width or 0, natural), soft_wrap=False, highlight=False)
    console.print(table)


def write(
    df: pd.DataFrame,
    fmt: str,
    fh: IO[str] | None = None,
    *,
    path: str | None = None,
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> None:
    """Write ``df`` as ``fmt`` to ``fh`` (text formats) or ``path`` (Parquet needs a file)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    if fmt == "parquet":
        if path is None:
            raise ValueError("parquet output needs a file: give -o FILE")
        _write_parquet(df, path)
        return
    if fh is None:
        raise ValueError(f"{fmt} output needs a stream")
    if fmt == "jsonl":
        _write_jsonl(df, fh)
    elif fmt == "csv":
        _write_csv(df, fh)
    else:
        _write_table(df, fh, columns or TABLE_COLUMNS, width)
