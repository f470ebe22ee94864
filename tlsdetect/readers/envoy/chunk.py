"""An Envoy log in blocks of whole lines, and what a reader makes of one block: a :class:`Chunk`.

Both readers (JSON, text) turn a block into raw string columns of its good lines; the line number
and text of a row are only worked out when a row turns out bad (:class:`LazyLines`). A line none of
whose connection columns (:data:`.keys.CORE`) holds a value would be an empty row that looks clean:
:func:`without_empty` dead-letters it as ``no connection fields``.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.keys import CORE
from tlsdetect.readers.logs import DeadLetter

__all__ = ["BLOCK", "NO_CONNECTION", "Chunk", "LazyLines", "blocks", "line_texts", "open_binary", "without_empty"]

#: The dead-letter reason of a line that holds no connection field.
NO_CONNECTION = "no connection fields: none of the address, fingerprint, SNI, id or peer keys has a value"

BLOCK = 16 << 20


def open_binary(path: Path) -> IO[bytes]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return open(path, "rb")


def blocks(fh: IO[bytes], size: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of whole lines) blocks of about ``size`` bytes."""
    line_no, rest = 1, b""
    while True:
        data = fh.read(size)
        if not data:
            if rest:
                yield line_no, rest
            return
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        block, rest = data[: cut + 1], data[cut + 1 :]
        yield line_no, block
        line_no += block.count(b"\n")


@dataclass(slots=True)
class Chunk:
    """Raw string columns of the good lines of one block, with each row's line number and text."""

    columns: dict[str, pa.Array]
    rows: int
    lines: int
    text: Callable[[int], str]
    line_no: Callable[[int], int]


def line_texts(block: bytes) -> list[str]:
    return block.decode("utf-8", "replace").split("\n")


class LazyLines:
    """Line numbers and texts of a block's non-blank lines, computed only when a row is bad."""

    def __init__(self, first: int, block: bytes) -> None:
        self.first, self.block = first, block
        self._texts: list[str] | None = None
        self._nos: np.ndarray[Any, np.dtype[np.int64]] | None = None

    def _load(self) -> None:
        if self._texts is None:
            all_lines = line_texts(self.block)
            keep = [i for i, t in enumerate(all_lines) if t.strip()]
            self._texts = [all_lines[i].rstrip("\r") for i in keep]
            self._nos = np.array([self.first + i for i in keep], dtype=np.int64)

    def text(self, i: int) -> str:
        self._load()
        assert self._texts is not None
        return self._texts[i]

    def line_no(self, i: int) -> int:
        self._load()
        assert self._nos is not None
        return int(self._nos[i])


def without_empty(chunk: Chunk, file: Path, dead: DeadLetter) -> Chunk:
    """``chunk`` without the rows that have no value (missing, ``-`` or empty) in any :data:`.keys.CORE`
    column; those rows are dead letters. The rows kept keep their line numbers and texts."""
    if not chunk.rows:
        return chunk
    has = np.zeros(chunk.rows, dtype=bool)
    for col in CORE & chunk.columns.keys():
        arr = chunk.columns[col]
        filled = pc.and_(arr.is_valid(), pc.invert(pc.is_in(arr, pa.array(["-", ""]))))
        has |= filled.fill_null(False).to_numpy(zero_copy_only=False)
    if has.all():
        return chunk
    for i in np.flatnonzero(~has):
        dead.add(file, chunk.line_no(int(i)), NO_CONNECTION, chunk.text(int(i)))
    keep = np.flatnonzero(has)
    mask = pa.array(has)
    text, line_no = chunk.text, chunk.line_no
    return Chunk({c: a.filter(mask) for c, a in chunk.columns.items()}, len(keep), chunk.lines,
                 lambda i: text(int(keep[i])), lambda i: line_no(int(keep[i])))
