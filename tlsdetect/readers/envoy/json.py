"""Envoy JSON access logs (``json_format``, any key names): one block of lines to raw string columns.

A block is parsed by Arrow's multi-threaded JSON reader; only a block that Arrow rejects (or that it
would misread: a ``null`` line, invalid UTF-8) is read line by line to find and dead-letter its bad
lines. Each raw column takes the first of its keys (:func:`.keys.candidates`) that a line has.
Lines nested deeper than :data:`~tlsdetect.readers.json_depth.MAX_DEPTH` (Arrow would take minutes or
crash the process on them) are dead letters before Arrow sees the block, and a line none of whose
connection keys (:data:`.keys.CORE`) has a value is a dead letter ``no connection fields``, not an
empty row.

Arrow makes (and fills) a column for every name it meets, so it is only ever given explicit
schemas: first the names of a sample of the block's first lines (as fast as inference: 103 vs 130 ms
for 16 MB), any other name an error; on such an error the mapped names alone
(:data:`.keys.candidates`), any other name ignored (1.1-1.4x: the absent ones cost). A name without
a value in the sample is typed ``null``; its first value in the block (Arrow's ``changed from null to
...``) retypes it and the block is parsed again. So many distinct names cost nothing and the cells
are bounded by rows x names (:data:`_MAX_CELLS`). A line with more than
:data:`~tlsdetect.readers.json_names.MAX_NAMES` names is a dead letter (the sample must stay small),
and a block that still does not fit is read in pieces of :data:`_PIECE` bytes, each the same way,
a piece that does not fit either line by line.
"""

from __future__ import annotations

import bisect
import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from tlsdetect.readers import json_depth, json_names
from tlsdetect.readers.envoy.chunk import Chunk, LazyLines, without_empty
from tlsdetect.readers.envoy.keys import CORE, candidates
from tlsdetect.readers.logs import DeadLetter, valid_utf8

__all__ = ["JsonReader"]

#: A block's types come from its first lines up to these bytes and names (colons).
_SAMPLE_BYTES = 16 << 10
_SAMPLE_NAMES = 256
#: Most cells (rows x typed names) one Arrow parse may build; a bigger block is read in pieces.
_MAX_CELLS = 1 << 24
#: How many names' first values may retype a block's schema before it is read in pieces.
_RETYPES = 8
#: The size of the pieces a block is read in when it does not fit its schema.
_PIECE = 256 << 10
_READ = pj.ReadOptions(block_size=1 << 20)
#: Arrow's message for a value of another type than the schema's (anything else: a broken line).
_DRIFT = re.compile(r"changed from|Failed to convert")
_NEW_TYPE = re.compile(r"Column\(/(.*)\) changed from null to (string|number|boolean) in row")
_TYPES = {"string": pa.string(), "number": pa.int64(), "boolean": pa.bool_()}


class _DriftError(Exception):
    """A block holds a type its schema does not, or would build too many cells."""


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
        self.names = tuple(self.key_column)

    def is_record(self, line: str) -> bool:
        try:
            obj = json_depth.loads(line)
        except ValueError:
            return False
        return isinstance(obj, dict) and any(self.key_column.get(k) in CORE for k in obj)

    def read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        deep, newlines = json_depth.scan(block)
        wide = sorted(set(json_names.wide_lines(block, newlines)) - set(deep))
        if deep or wide:
            parts = block.split(b"\n")
            for i, reason in sorted([(i, json_depth.TOO_DEEP) for i in deep]
                                    + [(i, json_names.TOO_MANY_NAMES) for i in wide]):  # fmt: skip
                dead.add(file, first + i, reason, parts[i].rstrip(b"\r"))
            block = json_depth.without_lines(block, deep + wide)
        chunk = without_empty(self._read_block(file, first, block, dead), file, dead)
        chunk.lines += len(deep) + len(wide)
        return chunk

    def _read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        # Arrow (26) crashes the process on a block whose first line is ``null`` and reads a ``null``
        # line elsewhere as an empty row: such blocks are read line by line (the lines dead-lettered).
        # Arrow's JSON reader passes invalid UTF-8 through into string columns (which then fail to
        # convert): such blocks too, where each line is decoded with replacement characters.
        if block.lstrip()[:1] not in (b"{", b"") or b"\nnull" in block or not valid_utf8(block):
            return self._line_by_line(file, first, block, dead)
        try:
            return self._arrow(first, block)
        except _DriftError:
            return _joined([self._piece(file, no, piece, dead) for no, piece in _pieces(first, block)])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return self._line_by_line(file, first, block, dead)

    def _piece(self, file: Path, first: int, piece: bytes, dead: DeadLetter) -> Chunk:
        try:
            return self._arrow(first, piece)
        except (_DriftError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return self._line_by_line(file, first, piece, dead)

    def _arrow(self, first: int, block: bytes) -> Chunk:
        table = _bounded_table(block, self.names)
        columns = self.columns_of(table)
        lazy = LazyLines(first, block)
        return Chunk(columns, table.num_rows, table.num_rows, lazy.text, lazy.line_no)

    def columns_of(self, table: pa.Table) -> dict[str, pa.Array]:
        """The raw columns of a table of named cells (a JSON block, or pushed records): the one key map."""
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


def _bounded_table(block: bytes, mapped: tuple[str, ...]) -> pa.Table:
    """Arrow's parse of a block with explicit schemas only, so that no name makes a column unasked.

    First the sample's names (as fast as inference), any other name an error; then, on such an
    error, the ``mapped`` names alone, any other name ignored. Raises :class:`_DriftError` when a
    value's type is not its name's or the block would build more than :data:`_MAX_CELLS` cells;
    Arrow's own error for a broken line.
    """
    sample = block[: json_names.sample_end(block, _SAMPLE_BYTES, _SAMPLE_NAMES)]
    seen = pj.read_json(io.BytesIO(sample), read_options=_READ).schema
    rows = block.count(b"\n") + 1
    try:
        return _parse(block, rows, {f.name: f.type for f in seen}, "error")
    except _OffSampleError:
        types = {n: seen.field(n).type if n in seen.names else pa.null() for n in mapped}
        return _parse(block, rows, types, "ignore")


class _OffSampleError(Exception):
    """A block holds a name or a type its sample does not."""


def _parse(block: bytes, rows: int, types: dict[str, pa.DataType], unexpected: str) -> pa.Table:
    """Arrow's parse with the schema ``types``; a ``null`` name's first value retypes it (at most
    :data:`_RETYPES` times: each is a parse again)."""
    for _ in range(_RETYPES + 1):
        typed = sum(not pa.types.is_null(t) for t in types.values())
        if rows * typed > _MAX_CELLS:
            if unexpected == "error":
                raise _OffSampleError  # the mapped names alone may be few enough
            raise _DriftError(f"{rows} rows x {typed} names")
        options = pj.ParseOptions(explicit_schema=pa.schema(types.items()), unexpected_field_behavior=unexpected)
        try:
            return pj.read_json(io.BytesIO(block), read_options=_READ, parse_options=options)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            new = _NEW_TYPE.search(message)
            if new and new[1] in types and pa.types.is_null(types[new[1]]):
                types[new[1]] = _TYPES[new[2]]
                continue
            if unexpected == "error" and ("unexpected field" in message or _DRIFT.search(message)):
                raise _OffSampleError from exc  # the mapped names alone ignore the others' types
            if _DRIFT.search(message):
                raise _DriftError(message) from exc
            raise
    if unexpected == "error":
        raise _OffSampleError
    raise _DriftError(f"more than {_RETYPES} names first seen after the sample")


def _pieces(first: int, block: bytes) -> list[tuple[int, bytes]]:
    """(first line number, bytes) of whole-line pieces of about :data:`_PIECE` bytes."""
    out = []
    start = 0
    while start < len(block):
        cut = block.find(b"\n", start + _PIECE)
        end = len(block) if cut < 0 else cut + 1
        out.append((first, block[start:end]))
        first += block.count(b"\n", start, end)
        start = end
    return out


def _joined(chunks: list[Chunk]) -> Chunk:
    """One chunk of consecutive pieces' chunks: columns concatenated (a name a piece lacks is null)."""
    if len(chunks) == 1:
        return chunks[0]
    names = list(dict.fromkeys(c for chunk in chunks for c in chunk.columns))
    columns = {
        name: pa.concat_arrays([chunk.columns[name] if name in chunk.columns else pa.nulls(chunk.rows, pa.string())
                                for chunk in chunks])
        for name in names
    }  # fmt: skip
    offsets = np.cumsum([0] + [chunk.rows for chunk in chunks]).tolist()

    def at(i: int) -> tuple[Chunk, int]:
        k = bisect.bisect_right(offsets, i) - 1
        return chunks[k], i - offsets[k]

    def text(i: int) -> str:
        chunk, j = at(i)
        return chunk.text(j)

    def line_no(i: int) -> int:
        chunk, j = at(i)
        return chunk.line_no(j)

    return Chunk(columns, offsets[-1], sum(chunk.lines for chunk in chunks), text, line_no)
