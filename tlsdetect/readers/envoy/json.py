"""Envoy JSON access logs (``json_format``, any key names): one block of lines to raw string columns.

A block is parsed by Arrow's multi-threaded JSON reader; only a block that Arrow rejects (or that it
would misread: a ``null`` line, invalid UTF-8) is read line by line to find and dead-letter its bad
lines. Each raw column takes the first of its keys (:func:`.keys.candidates`) that a line has.
Lines nested deeper than :data:`~tlsdetect.readers.json_depth.MAX_DEPTH` (Arrow would take minutes or
crash the process on them) are dead letters before Arrow sees the block, and a line none of whose
connection keys (:data:`.keys.CORE`) has a value is a dead letter ``no connection fields``, not an
empty row.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from tlsdetect.readers import json_depth
from tlsdetect.readers.envoy.chunk import Chunk, LazyLines, without_empty
from tlsdetect.readers.envoy.keys import CORE, candidates
from tlsdetect.readers.logs import DeadLetter, valid_utf8

__all__ = ["JsonReader"]


def _scalar_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise TypeError(type(value).__name__)


class JsonReader:
    """Reads JSON lines with the default key map plus ``mapping``."""

    #: JSON logs carry their own timestamps (ISO 8601 or epoch): no strftime format
    time_format: str | None = None

    def __init__(self, mapping: Mapping[str, str] | None) -> None:
        self.candidates = candidates(mapping)
        self.key_column = {k: c for c, keys in self.candidates.items() for k in keys}

    def is_record(self, line: str) -> bool:
        try:
            obj = json_depth.loads(line)
        except ValueError:
            return False
        return isinstance(obj, dict) and any(self.key_column.get(k) in CORE for k in obj)

    def read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        deep = json_depth.deep_lines(block)
        if deep:
            parts = block.split(b"\n")
            for i in deep:
                dead.add(file, first + i, json_depth.TOO_DEEP, parts[i].rstrip(b"\r"))
            block = json_depth.without_lines(block, deep)
        chunk = without_empty(self._read_block(file, first, block, dead), file, dead)
        chunk.lines += len(deep)
        return chunk

    def _read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        # Arrow (26) crashes the process on a block whose first line is ``null`` and reads a ``null``
        # line elsewhere as an empty row: such blocks are read line by line (the lines dead-lettered).
        # Arrow's JSON reader passes invalid UTF-8 through into string columns (which then fail to
        # convert): such blocks too, where each line is decoded with replacement characters.
        if block.lstrip()[:1] not in (b"{", b"") or b"\nnull" in block or not valid_utf8(block):
            return self._line_by_line(file, first, block, dead)
        try:
            table = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(block_size=1 << 20))
            columns = self._from_table(table)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return self._line_by_line(file, first, block, dead)
        lazy = LazyLines(first, block)
        return Chunk(columns, table.num_rows, table.num_rows, lazy.text, lazy.line_no)

    def _from_table(self, table: pa.Table) -> dict[str, pa.Array]:
        names = set(table.column_names)
        out: dict[str, pa.Array] = {}
        for col, keys in self.candidates.items():
            present = [k for k in keys if k in names]
            if not present:
                continue
            arrays = []
            for key in present:
                arr = table.column(key).combine_chunks()
                if pa.types.is_floating(arr.type):
                    arr = _float_text(arr)
                elif pa.types.is_null(arr.type):
                    arr = pa.nulls(len(arr), pa.string())
                elif not (pa.types.is_string(arr.type) or pa.types.is_integer(arr.type)
                          or pa.types.is_boolean(arr.type)):  # fmt: skip
                    raise pa.ArrowTypeError(f"{key}: {arr.type}")
                arrays.append(pc.cast(arr, pa.string()))
            out[col] = arrays[0] if len(arrays) == 1 else pc.coalesce(*arrays)
        return out

    def _line_by_line(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        values: dict[str, list[str | None]] = {c: [] for c in self.candidates}
        nos: list[int] = []
        seen = 0
        texts: list[str] = []
        for i, raw in enumerate(block.split(b"\n")):
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line.strip():
                continue
            seen += 1
            try:
                obj = json_depth.loads(line)
            except ValueError as exc:
                dead.add(file, first + i, f"broken JSON: {exc}", line)
                continue
            if not isinstance(obj, dict):
                dead.add(file, first + i, f"not a JSON object: {type(obj).__name__}", line)
                continue
            row: dict[str, str | None] = {}
            try:
                for col, keys in self.candidates.items():
                    value = None
                    for key in keys:
                        value = _scalar_text(obj.get(key))
                        if value is not None:
                            break
                    row[col] = value
            except TypeError as exc:
                dead.add(file, first + i, f"unexpected value type: {exc}", line)
                continue
            for col, column in values.items():
                column.append(row[col])
            nos.append(first + i)
            texts.append(line)
        columns = {c: pa.array(v, type=pa.string()) for c, v in values.items()}
        return Chunk(columns, len(nos), seen, texts.__getitem__, nos.__getitem__)


def _float_text(arr: pa.Array) -> pa.Array:
    values = arr.to_pylist()
    return pa.array([_scalar_text(v) for v in values], type=pa.string())
