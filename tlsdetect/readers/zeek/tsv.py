"""Zeek's TSV writer: header blocks (``#separator``/``#fields``/``#types``), body lines to typed columns.

A file may hold several header blocks (concatenated logs repeat ``#separator``); each is read on its
own. The hot path is one ``pyarrow.csv.read_csv`` per block (only the used columns; Zeek's numeric
types parsed by Arrow, vectors read dictionary-encoded, unset -> null); blocks with odd bytes, quotes
or carriage returns take an exact line-by-line path. A line that does not parse goes to the dead
letters with its line number, found only when some row needs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect.readers.logs import DeadLetter, LogFormatError, valid_utf8
from tlsdetect.readers.zeek.fields import KINDS, PER_DISTINCT, USED, Header, Part, kind_from_fields
from tlsdetect.readers.zeek.values import typed

__all__ = ["FallbackError", "FileBody", "kind_of", "parse_header", "read_body", "read_tsv"]

#: Zeek's numeric ``#types`` -> the Arrow types the first, typed read parses them as.
_NUMERIC = ("time", "interval", "double", "port", "count", "int")


def _decode_directive(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def parse_header(lines: list[str]) -> Header:
    """The directives of a header block's ``#`` lines."""
    head = Header()
    for line in lines:
        if line.startswith("#separator"):
            head.separator = _decode_directive(line[len("#separator") :].strip()) or "\t"
            continue
        name, _, rest = line.partition(head.separator)
        values = rest.split(head.separator) if rest else []
        if name == "#set_separator" and values:
            head.set_separator = _decode_directive(values[0])
        elif name == "#empty_field" and values:
            head.empty = values[0]
        elif name == "#unset_field" and values:
            head.unset = values[0]
        elif name == "#path" and values:
            head.path = values[0]
        elif name == "#fields":
            head.fields = values
        elif name == "#types":
            head.types = values
    return head


def kind_of(head: Header) -> str | None:
    """The log a header block introduces: its ``#path`` when that is one of ours, else by its fields."""
    return head.path if head.path in KINDS else kind_from_fields(head.fields)


def read_tsv(path: Path, data: bytes, letters: DeadLetter) -> list[Part]:
    """Split a TSV file into header blocks (concatenated logs repeat ``#separator``) and read each."""
    starts = [0, *_separator_lines(data)]
    if data.startswith(b"\n"):
        starts = starts[1:] or [0]
    parts: list[Part] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        block = data if (start, end) == (0, len(data)) else data[start:end]
        line_base = data.count(b"\n", 0, start)
        part = _read_block(path, block, line_base, letters, first=i == 0)
        if part is not None:
            parts.append(part)
    return parts


def _separator_lines(data: bytes) -> list[int]:
    """Offsets of the ``#separator`` lines after the first byte: a ``memchr`` for ``#`` (rare in a body)
    is ~7x faster than searching for ``\\n#separator`` (``\\n`` starts every line)."""
    out: list[int] = []
    hit = data.find(b"#", 1)
    for _ in range(4096):
        if hit < 0:
            return out
        if data[hit - 1] == 0x0A and data.startswith(b"#separator", hit):
            out.append(hit)
        hit = data.find(b"#", hit + 1)
    # many '#' in the body: the substring search from here on
    hit = data.find(b"\n#separator", hit - 1)
    while hit >= 0:
        out.append(hit + 1)
        hit = data.find(b"\n#separator", hit + 1)
    return out


def _read_block(path: Path, block: bytes, line_base: int, letters: DeadLetter, *, first: bool) -> Part | None:
    header_lines: list[str] = []
    pos = 0
    while pos < len(block) and block.startswith(b"#", pos):
        nl = block.find(b"\n", pos)
        nl = len(block) if nl < 0 else nl
        header_lines.append(block[pos:nl].decode("utf-8", "replace").rstrip("\r"))
        pos = nl + 1
    head = parse_header(header_lines)
    if not head.fields and not block[pos:].strip():
        return None  # a comment-only preamble (btest banners) before the first header block
    if not head.fields and not first:  # a stray "#separator" later in the file: its lines cannot be read
        start = line_base + len(header_lines) + 1
        for no, text in _split_lines(memoryview(block)[pos:], start):
            if text and not text.startswith("#"):
                letters.stats.lines += 1
                letters.add(path, no, "no #fields header for this line", text)
        return None
    if not head.fields:
        raise LogFormatError(f"{path}: not a Zeek TSV log (no #fields header)")
    twice = sorted({f for f in head.fields if head.fields.count(f) > 1})
    if twice:  # Zeek never writes one: a damaged or forged header, whose columns cannot be told apart
        raise LogFormatError(f"{path}: #fields names {', '.join(twice)} more than once (a damaged header)")
    kind = kind_of(head)
    if kind is None:
        raise LogFormatError(f"{path}: Zeek log of kind {head.path or 'unknown'!r}, expected ssl, x509, conn or quic")
    first_line = line_base + len(header_lines) + 1
    # Arrow's handler for a bad row cannot be called on invalid UTF-8: such a block takes the exact path
    plain = len(head.separator) == 1 and block.find(b"\r", pos) < 0 and valid_utf8(block)
    frame = read_body(path, memoryview(block)[pos:], head, first_line, letters, plain=plain)
    return Part(kind, frame)


class FallbackError(Exception):
    """The read from disk met something only the in-memory path handles (it starts over)."""


@dataclass(slots=True)
class FileBody:
    """The body of a TSV file left on disk: after ``skip`` header lines (``pos`` bytes), ``size`` bytes in all."""

    path: Path
    pos: int
    skip: int
    size: int
    mtime_ns: int
    #: The verdict of the scan that Arrow's read relies on (plain bytes), awaited after the read:
    #: the two run at the same time.
    plain: Callable[[], bool]

    def usable(self) -> bool:
        """The file is as it was when opened, and plain."""
        st = self.path.stat()
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns and self.plain()

    def load(self) -> memoryview:
        """The body's bytes, for the rare line-level work (dead letters)."""
        data = self.path.read_bytes()
        if len(data) < self.size:
            raise LogFormatError(f"{self.path}: file shrank while being read")
        return memoryview(data)[self.pos : self.size]


def read_body(path: Path, body: memoryview | FileBody, head: Header, first_line: int, letters: DeadLetter, *,
              plain: bool) -> pd.DataFrame:
    """The body lines of one header block as typed columns. ``body`` left on disk (:class:`FileBody`): only
    the first, typed attempt is made, and a failed attempt, an unreadable line or a file changed meanwhile
    raise :class:`FallbackError` before anything is counted."""
    return _Body(path, body, head, first_line, letters).frame(plain=plain)


class _Body:
    """One header block's body on its way to typed columns.

    State kept between the steps: how many rows Arrow skipped, and (computed only when a bad value
    needs its line) the block's lines and the line number of every row kept.
    """

    def __init__(self, path: Path, body: memoryview | FileBody, head: Header, first_line: int,
                 letters: DeadLetter) -> None:
        self.path, self.body, self.head, self.first_line, self.letters = path, body, head, first_line, letters
        self.n = len(head.fields)
        self.used = [i for i, f in enumerate(head.fields) if f in USED] or [0]
        #: rows Arrow's handler skipped that are not ``#`` lines
        self.invalid = 0
        self.lines: list[tuple[int, str]] | None = None
        self.row_lines: np.ndarray | None = None
        self.comment: np.ndarray | None = None

    def frame(self, *, plain: bool) -> pd.DataFrame:
        table = self._arrow_table() if plain else None
        if isinstance(self.body, FileBody) and (table is None or self.invalid or not self.body.usable()):
            raise FallbackError
        raw = self._exact_rows() if table is None else self._arrow_rows(table)
        return typed(self.path, self._drop_comments(raw), self.head, self.letters, self.line_of, tsv=True)

    def _load(self) -> memoryview:
        return self.body.load() if isinstance(self.body, FileBody) else self.body

    def _on_invalid(self, row: Any) -> str:
        try:
            text = str(row.text)
        except UnicodeDecodeError:  # pyarrow decodes the row for us: a damaged row, counted as invalid
            text = ""
        if not text.startswith("#"):  # ``#close`` and other trailing header lines are not damage
            self.invalid += 1
        return "skip"

    def _arrow_table(self) -> Any:
        """Arrow's parse of the body, or None when it fails (then the exact path reads it)."""
        import pyarrow as pa

        head, used = self.head, self.used
        numeric = {t: pa.float64() if t in ("time", "interval", "double") else pa.int64() for t in _NUMERIC}
        types = {i: numeric[t] for i, t in enumerate(head.types) if t in numeric and i in used}
        # vectors (certificate chains, hello lists) and the version are only looked up per distinct value:
        # read them as dictionaries, which spares the string copies and the later factorisation
        dicts = {i: pa.dictionary(pa.int32(), pa.string()) for i in used[1:] if head.fields[i] in PER_DISTINCT}
        # first try with Zeek's numeric types parsed by Arrow (no string copies of ts/ports); any value that
        # does not parse (masked test timestamps, a corrupt line) -> again with strings, checked per row
        attempts: list[dict[int, Any]] = [types | dicts, dicts] if types else [dicts]
        for attempt in attempts[:1] if isinstance(self.body, FileBody) else attempts:
            self.invalid = 0
            try:
                return self._read_csv(attempt)
            except (pa.ArrowInvalid, UnicodeDecodeError):
                self.invalid = 0
        return None

    def _read_csv(self, column_types: dict[int, Any]) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        on_disk = self.body if isinstance(self.body, FileBody) else None
        # on disk: a stream, not the path (Arrow would guess a compression from the file's name)
        source = pa.OSFile(str(on_disk.path)) if on_disk is not None else pa.py_buffer(self.body)
        try:
            return pacsv.read_csv(
                source,
                read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(self.n)], block_size=4 << 20,
                                               skip_rows=on_disk.skip if on_disk is not None else 0),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.head.separator, quote_char=False, escape_char=False,
                    invalid_row_handler=self._on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    # large_string: what pandas' Arrow strings hold, so no per-column cast on the way out
                    column_types={f"c{i}": column_types.get(i, pa.large_string()) for i in range(self.n)},
                    include_columns=[f"c{i}" for i in self.used],
                    null_values=[self.head.unset],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,  # ``plain``: the caller has checked every byte is UTF-8
                ),
            )
        finally:
            if isinstance(source, pa.NativeFile):
                source.close()

    def _arrow_rows(self, table: Any) -> pd.DataFrame:
        names = [self.head.fields[i] for i in self.used]
        raw: pd.DataFrame = table.rename_columns(names).to_pandas(types_mapper=_string_mapper)
        self.letters.stats.lines += int(table.num_rows) + self.invalid
        if self.invalid:
            self.lines = _split_lines(self._load(), self.first_line)
            self.row_lines = _classify(self.path, self.lines, self.head.separator, self.n, self.letters)
        return raw

    def _exact_rows(self) -> pd.DataFrame:
        """The slow, exact path: odd bytes, quotes or carriage returns."""
        head, letters = self.head, self.letters
        self.lines = _split_lines(self._load(), self.first_line)
        good = [(no, text) for no, text in self.lines if text and not text.startswith("#")]
        rows, numbers = [], []
        for no, text in good:
            if not valid_utf8(text):  # Zeek escapes odd bytes as \\xNN: raw invalid UTF-8 is a damaged line
                letters.add(self.path, no, "invalid UTF-8", text)
                continue
            values = text.split(head.separator)
            if len(values) != self.n:
                letters.add(self.path, no, f"wrong field count: {len(values)} instead of {self.n}", text)
                continue
            rows.append([None if v == head.unset else v for v in values])
            numbers.append(no)
        letters.stats.lines += len(good)
        self.row_lines = np.array(numbers, dtype=np.int64)
        if not rows:
            return pd.DataFrame({f: pd.Series(dtype="string") for f in head.fields})
        return pd.DataFrame(rows, columns=head.fields, dtype="string")

    def _drop_comments(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Data lines starting with '#' (e.g. ``#close``) with the right field count are comments."""
        first_col = raw[raw.columns[0]] if len(raw.columns) else None
        if first_col is not None and len(raw) and str(first_col.dtype) == "string":  # typed: no '#' got through
            self.comment = first_col.str.startswith("#").fillna(False).to_numpy(dtype=bool)
        if self.comment is not None and self.comment.any():
            raw = raw.loc[~self.comment].reset_index(drop=True)
            if self.row_lines is not None:
                self.row_lines = self.row_lines[~self.comment]
        return raw

    def line_of(self, mask: np.ndarray) -> list[tuple[int, str]]:
        """(line number, text) of the rows ``mask`` selects, for the dead letters."""
        if self.row_lines is None:
            self.lines = self.lines or _split_lines(self._load(), self.first_line)
            row_lines = _classify(self.path, self.lines, self.head.separator, self.n, None)
            if self.comment is not None and self.comment.any():
                row_lines = row_lines[~self.comment]
            self.row_lines = row_lines
        assert self.lines is not None
        text_of = dict(self.lines)
        return [(int(no), text_of.get(int(no), "")) for no in self.row_lines[mask]]


def _string_mapper(t: Any) -> Any:
    import pyarrow as pa

    return pd.StringDtype("pyarrow") if t in (pa.string(), pa.large_string()) else None


def _split_lines(body: memoryview, first_line: int) -> list[tuple[int, str]]:
    text = bytes(body).decode("utf-8", "surrogateescape")
    return [(first_line + i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"))]


def _classify(
    path: Path, lines: list[tuple[int, str]], sep: str, n: int, letters: DeadLetter | None
) -> np.ndarray:
    """Line numbers of the rows pyarrow kept; dead-letter the ones it skipped (wrong field count)."""
    kept = []
    for no, text in lines:
        if not text:
            continue
        count = text.count(sep) + 1
        if count == n:
            kept.append(no)
        elif not text.startswith("#") and letters is not None:
            letters.add(path, no, f"wrong field count: {count} instead of {n}", text)
    return np.array(kept, dtype=np.int64)
