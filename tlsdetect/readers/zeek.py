"""Zeek ``ssl.log`` joined with ``x509.log`` (and optionally ``conn.log``) into the connections table.

Both of Zeek's writers are read: TSV (the ``#separator``/``#fields``/``#types`` header, ``\\xNN`` and
``\\\\`` escapes, vectors split on ``#set_separator``) and JSON lines; plain or gzip-rotated; files or
directories of them. Which log a file holds comes from its ``#path`` header or, for JSON, from its
fields (ssl: ``version``/``cipher``/``server_name``; x509: ``certificate.subject``/``fingerprint``;
conn: ``proto``/``conn_state``), never from its name.

Certificates are linked through one cache over every x509 record of the call (x509.log logs a
certificate once a day, so the record may sit in another file than the connection):

* ``cert_chain_fps`` -> ``x509.fingerprint`` (Zeek >= 4.1),
* ``cert_chain_fuids`` -> ``x509.id`` (older Zeek),
* the inline ``subject``/``issuer_subject`` columns of Bro 2.2.

``server_cert_sha256`` only ever holds a 64-hex SHA-256 (old Zeek's SHA-1 fingerprints are not
put there). DNs are kept as Zeek prints them (RFC 2253-like, ``\\,`` inside a value) and keyed with
:func:`tlsdetect.detect.issuers.add_issuer_keys`.

The TSV hot path is one ``pyarrow.csv.read_csv`` per file (only the used columns; Zeek's numeric
types parsed by Arrow, vectors read dictionary-encoded, unset -> null); a big plain file is read by
Arrow from disk after a scan of the mapped file rather than from a copy in memory. Escapes are decoded only on
the rows that hold a backslash, and the certificate join is done once per distinct chain, then
broadcast by the chain column's codes (large string columns gathered with ``bytes.join``). Lines that
do not parse go to the :class:`~tlsdetect.readers.logs.DeadLetter` with file, line number and reason.
"""

from __future__ import annotations

import codecs
import gzip
import json
import mmap
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.readers.logs import DeadLetter, LogFormatError, valid_utf8
from tlsdetect.sinks.alerts.ecs import flatten

__all__ = ["read_zeek"]

KINDS = ("ssl", "x509", "conn")

_VERSIONS = {
    "SSLv2": "SSLv2",
    "SSLv3": "SSLv3",
    "TLSv10": "TLSv1.0",
    "TLSv11": "TLSv1.1",
    "TLSv12": "TLSv1.2",
    "TLSv13": "TLSv1.3",
    "DTLSv10": "DTLSv1.0",
    "DTLSv12": "DTLSv1.2",
    "DTLSv13": "DTLSv1.3",
}

#: ssl.log fields (``ssl-log-ext`` policy script) -> ClientHello list columns.
_CH_LISTS = {
    "client_ciphers": "ch_ciphers",
    "ssl_client_exts": "ch_extensions",
    "client_curves": "ch_groups",
    "point_formats": "ch_point_formats",
    "client_supported_versions": "ch_supported_versions",
}
_VECTOR_FIELDS = (
    "cert_chain_fps",
    "cert_chain_fuids",
    "client_cert_chain_fps",
    "client_cert_chain_fuids",
    "orig_alpn",
    "sigalgs",
    "hashalgs",
    *_CH_LISTS,
)
_STRING_FIELDS = (
    "uid",
    "id.orig_h",
    "id.resp_h",
    "server_name",
    "version",
    "next_protocol",
    "ja3",
    "ja3s",
    "ja4",
    "ja4_r",
    "ja4_o",
    "ja4_ro",
    "subject",
    "issuer_subject",
    "client_subject",
    "client_issuer_subject",
    "fingerprint",
    "id",
    "certificate.subject",
    "certificate.issuer",
    "proto",
    "service",
)
_INT_FIELDS = ("id.orig_p", "id.resp_p", "client_version", "orig_bytes", "resp_bytes")
_U16_FIELDS = frozenset({"id.orig_p", "id.resp_p", "client_version"})
_FLOAT_FIELDS = ("duration",)
#: Fields the mapping only reads per distinct value (Arrow reads them dictionary-encoded).
_PER_DISTINCT = frozenset({*_VECTOR_FIELDS, "version"})
_USED = frozenset({"ts", *_INT_FIELDS, *_FLOAT_FIELDS, *_STRING_FIELDS, *_VECTOR_FIELDS})
#: Zeek-generated tokens (ids, addresses, hashes) never hold a backslash: skip the escape scan.
_NEVER_ESCAPED = frozenset({"uid", "id.orig_h", "id.resp_h", "version", "ja3", "ja3s", "ja4", "ja4_r", "ja4_o",
                            "ja4_ro", "fingerprint", "id", "proto"})
_CARRIED = ("ja3", "ja3s", "ja4", "ja4_r", "ja4_o", "ja4_ro")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ESCAPE = re.compile(rb"\\(\\|x[0-9a-fA-F]{2})")
_BACKSLASH = re.compile(rb"\\")
_MASKED_TS = re.compile(r"X+(\.X+)?")


@dataclass(slots=True)
class _Part:
    """One log's records with Zeek's field names, values already typed and unescaped."""

    kind: str
    frame: pd.DataFrame


@dataclass(slots=True)
class _Header:
    separator: str = "\t"
    set_separator: str = ","
    empty: str = "(empty)"
    unset: str = "-"
    path: str | None = None
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- entry


def read_zeek(paths: Sequence[Path], *, dead_letter: DeadLetter | None = None) -> pd.DataFrame:
    """Read Zeek ssl (+ x509, + conn) logs into one connections table.

    ``paths`` may mix files and directories (read recursively, sorted). Unparseable lines go to
    ``dead_letter`` (counted even without one); a file that is not a Zeek ssl/x509/conn log
    raises :class:`LogFormatError`.
    """
    letters = dead_letter if dead_letter is not None else DeadLetter()
    parts: list[_Part] = []
    for path in _expand(paths):
        letters.stats.files += 1
        parts.extend(_read_file(path, letters))
    ssl = [p.frame for p in parts if p.kind == "ssl" and len(p.frame)]
    x509 = [p.frame for p in parts if p.kind == "x509" and len(p.frame)]
    conn = [p.frame for p in parts if p.kind == "conn" and len(p.frame)]
    letters.stats.rows += sum(len(p.frame) for p in parts)
    if not ssl:
        return schema.conform(add_issuer_keys(schema.empty()))
    raw = pd.concat(ssl, ignore_index=True) if len(ssl) > 1 else ssl[0]
    cache = _CertCache.build(x509)
    out = _map_ssl(raw, cache)
    if conn:
        out = _join_conn(out, pd.concat(conn, ignore_index=True))
    out = _conformed(out)
    if out["ch_version"].notna().any():
        from tlsdetect.fingerprint import add_fingerprints

        out = schema.conform(add_fingerprints(out))
    return add_issuer_keys(out)  # once per distinct issuer: the column's categories


def _conformed(out: pd.DataFrame) -> pd.DataFrame:
    """Schema order and dtypes; the frame is built with the right dtypes, so usually no cast or copy."""
    have = [c for c in schema.COLUMNS if c in out.columns and schema.COLUMNS[c] != "object"]
    typed = (schema.dtype_name(out[c].dtype) == schema.COLUMNS[c] for c in have)
    if all(typed):
        # one frame from the columns' arrays (no concat, no copies); missing columns built cheaply
        # (Series, not arrays: pandas would scan object arrays to infer a dtype)
        cols = {c: out[c] if c in out.columns else schema.missing(t, out.index) for c, t in schema.COLUMNS.items()}
        cols.update((c, out[c]) for c in out.columns if c not in schema.COLUMNS)
        return pd.DataFrame(cols, index=out.index, copy=False)
    return schema.conform(out)


def _codes(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Factorise a column: codes (-1 for missing) and the distinct values (order not significant).

    A categorical column (TSV vectors are read dictionary-encoded) gives its codes as they are (its
    categories may include values no row uses); anything else is factorised in Arrow as strings.
    """
    import pyarrow as pa

    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.asarray(s.cat.codes, dtype=np.int64), list(s.cat.categories)
    arr = pa.array(s.astype("string").array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = arr.dictionary_encode()
    codes = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, list(enc.dictionary.to_pylist())


def _expand(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(q for q in path.rglob("*") if q.is_file()))
        else:
            out.append(path)
    return out


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LogFormatError(f"{path}: broken gzip file ({exc})") from None
    return data


def _read_file(path: Path, letters: DeadLetter) -> list[_Part]:
    streamed = _read_tsv_streamed(path, letters)
    if streamed is not None:
        return streamed
    data = _read_bytes(path)
    stripped = data.lstrip()
    if stripped.startswith(b"#"):
        return _read_tsv(path, data, letters)
    if stripped.startswith(b"{"):
        return _read_json(path, data, letters)
    if not stripped:
        return []
    raise LogFormatError(f"{path}: not a Zeek log (no #fields header and not JSON lines)")


# ------------------------------------------------------------------------------------------- TSV


def _decode_directive(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _parse_header(lines: list[str]) -> _Header:
    head = _Header()
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


def _kind_from_fields(fields: Iterable[str]) -> str | None:
    names = set(fields)
    if "certificate.subject" in names or ("fingerprint" in names and "certificate.issuer" in names):
        return "x509"
    if names & {"version", "cipher", "server_name", "cert_chain_fps", "cert_chain_fuids"}:
        return "ssl"
    if "uid" in names and names & {"proto", "conn_state"}:
        return "conn"
    return None


def _read_tsv(path: Path, data: bytes, letters: DeadLetter) -> list[_Part]:
    """Split a TSV file into header blocks (concatenated logs repeat ``#separator``) and read each."""
    starts = [0, *_separator_lines(data)]
    if data.startswith(b"\n"):
        starts = starts[1:] or [0]
    parts: list[_Part] = []
    line_base = 0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        block = data if (start, end) == (0, len(data)) else data[start:end]
        line_base = data.count(b"\n", 0, start)
        part = _read_tsv_block(path, block, line_base, letters, first=i == 0)
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


#: TSV files at least this big, plain and with one header block, are parsed by Arrow from the file
#: itself (its reads overlap the parse) after a scan of the mapped file, instead of from one ``bytes`` copy.
_STREAM_BYTES = 1 << 24
_SCAN_CHUNK = 1 << 23


class _FallbackError(Exception):
    """The streamed read met something only the general path handles (it starts over)."""


@dataclass(slots=True)
class _FileBody:
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


def _read_tsv_streamed(path: Path, letters: DeadLetter) -> list[_Part] | None:
    """A big, plain (single-character separator, no carriage return), single-header-block TSV file read
    without holding it in memory: the header from the file's start, a UTF-8 check of the mapped file, then
    Arrow reads the file while a scan checks for carriage returns and further ``#separator`` lines (the
    read is used only if the scan passes). ``None``: use the general path."""
    st = path.stat()
    if st.st_size < _STREAM_BYTES:
        return None
    header_lines: list[str] = []
    pos = 0
    with open(path, "rb", buffering=0) as fh:
        first = fh.read(1 << 20)
        if first[:1] != b"#":  # gzip, JSON, leading blank lines: general path
            return None
        while pos < len(first) and first.startswith(b"#", pos):
            nl = first.find(b"\n", pos)
            if nl < 0:
                return None
            header_lines.append(first[pos:nl].decode("utf-8", "replace").rstrip("\r"))
            pos = nl + 1
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    # UTF-8 first (Arrow's handler for a bad row fails on other bytes), then the search for carriage
    # returns and header blocks runs while Arrow reads: a file that fails it is read by the general path
    with mapped, ThreadPoolExecutor(1) as pool:
        size = len(mapped)
        if size != st.st_size or pos == 0 or pos >= size:
            return None
        head = _parse_header(header_lines)
        if not head.fields or len(head.separator) != 1:
            return None
        kind = head.path if head.path in KINDS else _kind_from_fields(head.fields)
        if kind is None or (head.path is not None and head.path not in KINDS
                            and _kind_from_fields(head.fields) is None):
            return None
        if not _utf8_body(mapped):
            return None
        scan = pool.submit(_one_plain_block, mapped)
        body = _FileBody(path, pos, len(header_lines), st.st_size, st.st_mtime_ns, scan.result)
        try:
            frame = _tsv_body(path, body, head, len(header_lines) + 1, letters, plain=True)
        except _FallbackError:
            return None
    return [_Part(kind, frame)]


def _utf8_body(data: mmap.mmap) -> bool:
    """Every byte valid UTF-8: Arrow's read (and its handler for a bad row) needs it.

    One numpy pass (~0.03 s for 344 MB); UTF-8 is decoded only when a byte is not ASCII.
    """
    view = np.frombuffer(data, dtype=np.uint8)
    ascii_only = int(view.max()) < 0x80
    del view  # the map cannot close while an exported view lives
    if ascii_only:
        return True
    utf8 = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), _SCAN_CHUNK):
            utf8.decode(data[start : start + _SCAN_CHUNK])
        utf8.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _one_plain_block(data: mmap.mmap) -> bool:
    """No carriage return and no second header block: lines as Zeek wrote them, one header for all.

    ``memchr``-speed searches (~0.06 s for 344 MB), run while Arrow reads.
    """
    if data.find(b"\r") >= 0:
        return False
    hit = data.find(b"#", 1)
    for _ in range(4096):
        if hit < 0:
            return True
        if data[hit - 1] == 0x0A and data[hit : hit + 10] == b"#separator":
            return False  # another header block: general path
        hit = data.find(b"#", hit + 1)
    return False  # '#' all over the body: the general path's search is faster


def _read_tsv_block(path: Path, block: bytes, line_base: int, letters: DeadLetter, *, first: bool) -> _Part | None:
    header_lines: list[str] = []
    pos = 0
    while pos < len(block) and block.startswith(b"#", pos):
        nl = block.find(b"\n", pos)
        nl = len(block) if nl < 0 else nl
        header_lines.append(block[pos:nl].decode("utf-8", "replace").rstrip("\r"))
        pos = nl + 1
    head = _parse_header(header_lines)
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
    kind = head.path if head.path in KINDS else _kind_from_fields(head.fields)
    if kind is None or (head.path is not None and head.path not in KINDS and _kind_from_fields(head.fields) is None):
        raise LogFormatError(f"{path}: Zeek log of kind {head.path or 'unknown'!r}, expected ssl, x509 or conn")
    first_line = line_base + len(header_lines) + 1
    # Arrow's handler for a bad row cannot be called on invalid UTF-8: such a block takes the exact path
    plain = len(head.separator) == 1 and block.find(b"\r", pos) < 0 and valid_utf8(block)
    frame = _tsv_body(path, memoryview(block)[pos:], head, first_line, letters, plain=plain)
    return _Part(kind, frame)


def _tsv_body(path: Path, body: memoryview | _FileBody, head: _Header, first_line: int, letters: DeadLetter, *,
              plain: bool) -> pd.DataFrame:
    """The body lines of one header block. ``body`` left on disk (:class:`_FileBody`): only the first,
    typed attempt is made, and a failed attempt, an unreadable line or a file changed meanwhile raise
    :class:`_FallbackError` before anything is counted."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(head.fields)
    sep = head.separator
    invalid = 0
    comments = 0

    def on_invalid(row: Any) -> str:
        nonlocal invalid, comments
        try:
            text = str(row.text)
        except UnicodeDecodeError:  # pyarrow decodes the row for us: a damaged row, counted as invalid
            text = ""
        if text.startswith("#"):
            comments += 1  # ``#close`` and other trailing header lines
        else:
            invalid += 1
        return "skip"

    table = None
    used = [i for i, f in enumerate(head.fields) if f in _USED] or [0]
    numeric = {"time": pa.float64(), "interval": pa.float64(), "double": pa.float64(), "port": pa.int64(),
               "count": pa.int64(), "int": pa.int64()}
    typed = {i: numeric[t] for i, t in enumerate(head.types) if t in numeric and i in used}
    # vectors (certificate chains, hello lists) and the version are only looked up per distinct value:
    # read them as dictionaries, which spares the string copies and the later factorisation
    dicts = {i: pa.dictionary(pa.int32(), pa.string()) for i in used[1:] if head.fields[i] in _PER_DISTINCT}
    # first try with Zeek's numeric types parsed by Arrow (no string copies of ts/ports); any value that
    # does not parse (masked test timestamps, a corrupt line) -> again with strings, checked per row
    attempts: list[dict[int, Any]] = [typed | dicts, dicts] if typed else [dicts]
    for attempt in attempts[:1] if isinstance(body, _FileBody) else attempts:
        if not plain:
            break
        invalid = comments = 0
        # on disk: a stream, not the path (Arrow would guess a compression from the file's name)
        source = pa.OSFile(str(body.path)) if isinstance(body, _FileBody) else pa.py_buffer(body)
        try:
            table = pacsv.read_csv(
                source,
                read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(n)], block_size=4 << 20,
                                               skip_rows=body.skip if isinstance(body, _FileBody) else 0),
                parse_options=pacsv.ParseOptions(
                    delimiter=sep, quote_char=False, escape_char=False, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    # large_string: what pandas' Arrow strings hold, so no per-column cast on the way out
                    column_types={f"c{i}": attempt.get(i, pa.large_string()) for i in range(n)},
                    include_columns=[f"c{i}" for i in used],
                    null_values=[head.unset],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,  # ``plain``: the caller has checked every byte is UTF-8
                ),
            )
            break
        except (pa.ArrowInvalid, UnicodeDecodeError):
            table = None
            invalid = comments = 0
        finally:
            if isinstance(source, pa.NativeFile):
                source.close()
    if isinstance(body, _FileBody):
        if table is None or invalid or not body.usable():
            raise _FallbackError
        disk = body

        def load() -> memoryview:
            return disk.load()
    else:
        mem = body

        def load() -> memoryview:
            return mem
    lines: list[tuple[int, str]] | None = None
    if table is None:  # slow, exact path: odd bytes, quotes or carriage returns
        lines = _split_lines(load(), first_line)
        good = [(no, text) for no, text in lines if text and not text.startswith("#")]
        rows, numbers = [], []
        for no, text in good:
            if not valid_utf8(text):  # Zeek escapes odd bytes as \\xNN: raw invalid UTF-8 is a damaged line
                letters.add(path, no, "invalid UTF-8", text)
                continue
            values = text.split(sep)
            if len(values) != n:
                letters.add(path, no, f"wrong field count: {len(values)} instead of {n}", text)
                continue
            rows.append([None if v == head.unset else v for v in values])
            numbers.append(no)
        letters.stats.lines += len(good)
        raw = pd.DataFrame(rows, columns=head.fields, dtype="string") if rows else _empty_raw(head.fields)
        row_lines = np.array(numbers, dtype=np.int64)
    else:
        raw = table.rename_columns([head.fields[i] for i in used]).to_pandas(types_mapper=_string_mapper)
        row_lines = None
        data_lines = int(table.num_rows) + invalid
        letters.stats.lines += data_lines
        if invalid:
            lines = _split_lines(load(), first_line)
            row_lines = _classify(path, lines, sep, n, letters)
        # data lines starting with '#' (e.g. ``#close``) with the right field count are comments
    first_col = raw[raw.columns[0]] if len(raw.columns) else None
    comment = None
    if first_col is not None and len(raw) and str(first_col.dtype) == "string":  # typed: no '#' got through
        comment = first_col.str.startswith("#").fillna(False).to_numpy(dtype=bool)
    if comment is not None and comment.any():
        raw = raw.loc[~comment].reset_index(drop=True)
        if row_lines is not None:
            row_lines = row_lines[~comment]

    def line_of(mask: np.ndarray) -> list[tuple[int, str]]:
        nonlocal lines, row_lines
        if row_lines is None:
            lines = lines or _split_lines(load(), first_line)
            row_lines = _classify(path, lines, sep, n, None)
            if comment is not None and comment.any():
                row_lines = row_lines[~comment]
        assert lines is not None
        text_of = dict(lines)
        return [(int(no), text_of.get(int(no), "")) for no in row_lines[mask]]

    return _typed(path, raw, head, letters, line_of, tsv=True)


def _string_mapper(t: Any) -> Any:
    import pyarrow as pa

    return pd.StringDtype("pyarrow") if t in (pa.string(), pa.large_string()) else None


def _empty_raw(fields: list[str]) -> pd.DataFrame:
    return pd.DataFrame({f: pd.Series(dtype="string") for f in fields})


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


# ------------------------------------------------------------------------------------------ JSON


def _kind_from_record(obj: dict[str, Any]) -> str | None:
    if "certificate.subject" in obj or "fingerprint" in obj:
        return "x509"
    if obj.keys() & {"version", "cipher", "server_name", "cert_chain_fps", "cert_chain_fuids"}:
        return "ssl"
    if "uid" in obj and obj.keys() & {"proto", "conn_state"}:
        return "conn"
    return None


#: A JSON record of each kind carries at least one of these keys.
_REQUIRED = {"ssl": frozenset({"uid"}), "conn": frozenset({"uid"}), "x509": frozenset({"fingerprint", "id"})}


def _read_json(path: Path, data: bytes, letters: DeadLetter) -> list[_Part]:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    texts: list[str] = []
    kind: str | None = None
    for no, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), start=1):
        text = line.strip()
        if not text:
            continue
        letters.stats.lines += 1
        if not valid_utf8(text):  # Zeek's JSON writer escapes odd bytes: raw invalid UTF-8 is damage
            letters.add(path, no, "invalid UTF-8", line)
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            letters.add(path, no, f"bad json: {exc}", line)
            continue
        if not isinstance(obj, dict):
            letters.add(path, no, "bad json: not an object", line)
            continue
        flat = flatten(obj)
        if kind is None:
            kind = _kind_from_record(flat)
            if kind is None:
                raise LogFormatError(f"{path}: JSON lines but not a Zeek ssl, x509 or conn log")
        if not (flat.keys() & _REQUIRED[kind]):
            letters.add(path, no, f"not a Zeek {kind} record: no {' or '.join(sorted(_REQUIRED[kind]))}", line)
            continue
        records.append(flat)
        numbers.append(no)
        texts.append(line)
    if kind is None:
        return []
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for col in raw.columns:
        if col in _VECTOR_FIELDS:
            raw[col] = [_json_vector(v) for v in raw[col].tolist()]
        elif col in _STRING_FIELDS:
            raw[col] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                                 for v in raw[col].tolist()], dtype="string")

    def line_of(mask: np.ndarray) -> list[tuple[int, str]]:
        return [(int(numbers[i]), texts[i]) for i in np.flatnonzero(mask)]

    head = _Header(set_separator=",")
    return [_Part(kind, _typed(path, raw, head, letters, line_of, tsv=False))]


def _json_vector(value: object) -> str | None:
    """JSON arrays become the set-separator-joined string the TSV path produces (escapes kept)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, list):
        return ",".join(str(v).replace("\\", "\\\\").replace(",", "\\x2c") for v in value)
    return str(value)


# -------------------------------------------------------------------------------- typing (shared)


def _typed(path: Path, raw: pd.DataFrame, head: _Header, letters: DeadLetter,
           line_of: Any, *, tsv: bool) -> pd.DataFrame:
    """Convert the columns the mapping uses; rows with a bad number go to the dead letter."""
    out = pd.DataFrame(index=raw.index)
    bad = np.zeros(len(raw), dtype=bool)
    reasons = np.empty(len(raw), dtype=object)  # set for every bad row
    if "ts" in raw.columns:
        ts, ts_bad = _to_ts(raw["ts"])
        out["ts"] = ts
        reasons[ts_bad & ~bad] = "bad number: ts"
        bad |= ts_bad
    for col in (*_INT_FIELDS, *_FLOAT_FIELDS):
        if col not in raw.columns:
            continue
        if col in _U16_FIELDS and raw[col].dtype == np.int64:  # typed by Arrow, no nulls: the range check only
            values, col_bad = _u16(raw[col], np.zeros(len(raw), dtype=bool))
        else:
            values, col_bad = _to_number(raw[col], integer=col in _INT_FIELDS)
            if col in _U16_FIELDS:  # ports and the hello version: the table's Int32 must not wrap them
                values, col_bad = _u16(values, col_bad)
        out[col] = values
        reasons[col_bad & ~bad] = f"bad number: {col}"
        bad |= col_bad
    for col in _STRING_FIELDS:
        if col in raw.columns:
            s = raw[col]
            if tsv and col not in _NEVER_ESCAPED:
                s = _unescape(s.astype("string"))
            out[col] = s
    for col in _VECTOR_FIELDS:
        if col in raw.columns:
            out[col] = _per_category(raw[col], lambda s: _tsv_vector(s, head) if tsv else s)
    if bad.any():
        for (no, text), reason in zip(line_of(bad), reasons[bad], strict=True):
            letters.add(path, no, str(reason), text)
        out = out.loc[~bad].reset_index(drop=True)
    return out


def _tsv_vector(s: pd.Series, head: _Header) -> pd.Series:
    if head.set_separator != ",":
        s = s.str.replace(head.set_separator, ",", regex=False)
    return s.mask((s == head.empty).fillna(False), "")  # unset (-) stays null, as in JSON


def _per_category(s: pd.Series, fn: Any) -> pd.Series:
    """``fn`` on a string column; for a categorical one on its categories only (same values)."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        out: pd.Series = fn(s.astype("string"))
        return out
    # the missing value is mapped too (last, at code -1), so ``fn`` decides what a missing cell becomes
    mapped = fn(pd.Series([*s.cat.categories, None], dtype="string"))
    to_new, uniques = pd.factorize(mapped.astype(object), use_na_sentinel=True)
    codes = np.asarray(s.cat.codes, dtype=np.int64)
    lookup = np.asarray(to_new, dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(lookup[codes], categories=pd.Index(uniques, dtype=object)),
                     index=s.index)


def _arrow_cast(s: pd.Series, target: Any) -> np.ndarray | None:
    """Arrow's C cast of a whole string column, or None when any value does not parse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if str(s.dtype) != "string":
        return None
    try:
        arr = pc.cast(pa.chunked_array(pa.array(s.array)), target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return None
    values: np.ndarray = arr.to_numpy(zero_copy_only=False)
    return values


def _to_ts(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    n = len(s)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        fast: np.ndarray | None = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        fast = _arrow_cast(s, _pa_type("float64"))
    if fast is not None:
        secs = fast.astype(np.float64, copy=False)
        finite = np.isfinite(secs) & (np.abs(secs) < 9e9)
        every = bool(finite.all())  # the common case: no masking, no copies for it
        nanos = np.round((secs if every else np.where(finite, secs, 0.0)) * 1e6).astype(np.int64)
        nanos *= 1000
        utc = pd.DatetimeIndex(nanos.view("datetime64[ns]")).tz_localize("UTC")
        ts = pd.Series(utc, index=s.index, copy=False)
        if not every:
            ts = ts.where(finite)
        return ts.astype("datetime64[ns, UTC]"), np.isfinite(secs) & ~finite
    if not pd.api.types.is_numeric_dtype(s.dtype):
        text = s.astype("string")
        num = pd.to_numeric(text, errors="coerce")
        num_f = np.asarray(num.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        missing = text.isna().to_numpy(dtype=bool)
        failed = (np.isnan(num_f) & ~missing).copy()
        stamps = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        if failed.any():
            sub = text[failed]
            masked = sub.str.fullmatch(_MASKED_TS.pattern).fillna(False).to_numpy(dtype=bool)
            parsed = pd.to_datetime(sub[~masked].astype(object), utc=True, errors="coerce", format="ISO8601")
            ok = parsed.notna().to_numpy(dtype=bool)
            idx = np.flatnonzero(failed)
            iso_idx = idx[~masked][ok]
            stamps.iloc[iso_idx] = parsed[ok].dt.as_unit("ns").to_numpy()
            failed[idx[masked]] = False
            failed[iso_idx] = False
        secs = num_f
    else:
        secs = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        failed = np.zeros(n, dtype=bool)
        stamps = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    finite = np.isfinite(secs) & (np.abs(secs) < 9e9)
    failed |= np.isfinite(secs) & ~finite
    micros = np.where(finite, np.round(np.where(finite, secs, 0.0) * 1e6), 0).astype(np.int64)
    ns = pd.to_datetime(micros * 1000, utc=True)
    ts = pd.Series(ns, index=s.index).where(pd.Series(finite, index=s.index), stamps)
    return ts.astype("datetime64[ns, UTC]"), failed


def _pa_type(name: str) -> Any:
    import pyarrow as pa

    return getattr(pa, name)()


def _to_number(s: pd.Series, *, integer: bool) -> tuple[pd.Series, np.ndarray]:
    if integer and s.dtype in (np.int64, np.float64):  # read typed by Arrow (float64: it had nulls)
        return _whole_numbers(s)
    fast = _arrow_cast(s, _pa_type("int64" if integer else "float64"))
    if fast is not None:
        mask = s.isna().to_numpy(dtype=bool)
        if integer:
            data = np.where(mask, 0, np.nan_to_num(fast.astype(np.float64))).astype(np.int64)
            return pd.Series(pd.arrays.IntegerArray(data, mask), index=s.index), np.zeros(len(s), dtype=bool)
        return pd.Series(pd.array(fast.astype(np.float64), dtype="Float64"), index=s.index).where(~mask), np.zeros(
            len(s), dtype=bool)
    num = pd.to_numeric(s.astype(object) if s.dtype == object else s, errors="coerce")
    failed = (num.isna() & s.notna()).to_numpy(dtype=bool).copy()
    if integer:
        f = num.astype("Float64")
        whole = (f % 1 == 0).fillna(True).to_numpy(dtype=bool) & (f.abs() < 2**62).fillna(True).to_numpy(dtype=bool)
        failed |= ~whole
        f = f.where(pd.Series(whole, index=s.index))
        return f.astype("Int64"), failed
    return num.astype("Float64"), failed


def _u16(values: pd.Series, bad: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """A 16-bit field as ``Int32``; a value outside 0-65535 is a bad number (a damaged line), not a
    wrapped one."""
    data = values.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(data)
    wide = ~missing & ((data < 0) | (data > 0xFFFF))
    keep = ~missing & ~wide
    ints = np.where(keep, data, 0).astype(np.int32)
    return pd.Series(pd.arrays.IntegerArray(ints, ~keep), index=values.index), bad | wide


def _whole_numbers(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """What the generic path below makes of a numeric column, in one pass: through float64, values
    that are not whole or not below 2**62 in magnitude fail, missing ones stay missing."""
    f = np.asarray(s, dtype=np.float64)
    missing = np.isnan(f)
    whole = missing | ((np.floor(f) == f) & (np.abs(f) < 2.0**62))  # (infinities fail the bound)
    keep = whole & ~missing
    data = np.where(keep, f, 0.0).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(data, ~keep), index=s.index), ~whole


def _unescape_one(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    decoded = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]), raw)
    return decoded.decode("utf-8", "backslashreplace")


def _unescape(s: pd.Series) -> pd.Series:
    """Zeek TSV escapes (``\\\\`` and ``\\xNN``), decoded only where a backslash occurs."""
    if str(s.dtype) == "string" and not _any_backslash(s):  # the common case: nothing to decode
        return s
    has = s.str.contains("\\", regex=False).fillna(False).to_numpy(dtype=bool)
    if not has.any():
        return s
    codes, uniques = pd.factorize(s[has].astype(object))
    decoded = np.array([_unescape_one(str(u)) for u in uniques], dtype=object)
    out = s.astype(object).to_numpy(copy=True)
    out[has] = decoded[codes]
    return pd.Series(pd.array(out, dtype="string"), index=s.index)


def _any_backslash(s: pd.Series) -> bool:
    """Whether a backslash may occur in an Arrow-backed string column: a search of its data buffers
    (C speed, ~4x faster than Arrow's per-value ``match_substring``). A buffer can hold bytes outside
    the column's slice, so a hit only sends the column down the exact path."""
    import pyarrow as pa

    arr = pa.array(s.array)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    for chunk in chunks:
        data = chunk.buffers()[2] if len(chunk) and len(chunk.buffers()) > 2 else None
        if data is not None and _BACKSLASH.search(memoryview(data)):
            return True
    return False


def _split_vector(value: str) -> list[str]:
    """A vector cell joined by ``,`` (escaped commas inside elements are ``\\x2c``)."""
    if value == "":
        return []
    return [_unescape_one(v) for v in value.split(",")]


# ------------------------------------------------------------------------------------ certificates


@dataclass(slots=True)
class _CertCache:
    by_fp: dict[str, tuple[str | None, str | None, str | None]]
    by_id: dict[str, tuple[str | None, str | None, str | None]]

    @classmethod
    def build(cls, frames: list[pd.DataFrame]) -> _CertCache:
        by_fp: dict[str, tuple[str | None, str | None, str | None]] = {}
        by_id: dict[str, tuple[str | None, str | None, str | None]] = {}
        for frame in frames:
            subj = _col(frame, "certificate.subject")
            iss = _col(frame, "certificate.issuer")
            fps = _col(frame, "fingerprint")
            ids = _col(frame, "id")
            # one entry per distinct certificate: drop repeated log lines before the loop
            keyed = pd.DataFrame({"fp": fps, "id": ids, "s": subj, "i": iss}).drop_duplicates()
            for fp, fid, s, i in keyed.itertuples(index=False, name=None):
                fp_s = None if pd.isna(fp) else str(fp)
                sha = fp_s.lower() if fp_s is not None and _HEX64.fullmatch(fp_s) else None
                rec = (None if pd.isna(s) else str(s), None if pd.isna(i) else str(i), sha)
                if fp_s is not None:
                    by_fp[fp_s.lower()] = rec
                if not pd.isna(fid):
                    by_id[str(fid)] = rec
        return cls(by_fp, by_id)

    def chain(self, cell: str, *, by_fp: bool) -> list[tuple[str | None, str | None, str | None]]:
        out = []
        for key in _split_vector(cell):
            if by_fp:
                k = key.lower()
                rec = self.by_fp.get(k)
                sha = k if _HEX64.fullmatch(k) else None
                out.append(rec if rec is not None else (None, None, sha))
            else:
                out.append(self.by_id.get(key, (None, None, None)))
        return out


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def _link(raw: pd.DataFrame, cache: _CertCache, fps_col: str, fuids_col: str) -> dict[str, pd.Series]:
    """subject, issuer, sha256 of the leaf and the chain JSON, once per distinct chain cell.

    Certificate columns are categoricals: the per-cell values become the categories and the
    chain column's codes the rows' codes, so no text is written per row. Fingerprint links win;
    the fuid links fill what they left missing.
    """
    n = len(raw)
    keys = ("subject", "issuer", "sha256", "chain")
    result: dict[str, pd.Series] = {k: pd.Series(schema.null_categories(n), index=raw.index) for k in keys}
    for col, by_fp in ((fps_col, True), (fuids_col, False)):
        if col not in raw.columns:
            continue
        codes, uniques = _codes(raw[col])
        if len(uniques) == 0:
            continue
        per: list[tuple[str | None, str | None, str | None, str | None]] = []
        for cell in uniques:
            chain = cache.chain(str(cell), by_fp=by_fp)
            if not chain:
                per.append((None, None, None, None))
                continue
            leaf = chain[0]
            doc = json.dumps([{"subject": s, "issuer": i, "sha256": h} for s, i, h in chain])
            per.append((leaf[0], leaf[1], leaf[2], doc))
        for j, key in enumerate(keys):
            values = pd.Series(schema.category_from_codes([p[j] for p in per], codes), index=raw.index)
            result[key] = _coalesce(result[key], values) if not by_fp else values
    return result


def _coalesce(first: pd.Series, second: pd.Series) -> pd.Series:
    """``first.fillna(second)`` for certificate columns: a categorical cannot take a value it has no
    category for, so the two are recoded onto the union of their categories."""
    a, b = schema.as_category(first), schema.as_category(second)
    union = a.cat.categories.append(b.cat.categories).unique()
    codes = []
    for s in (a, b):
        own = np.asarray(s.cat.codes, dtype=np.int64)
        codes.append(np.append(union.get_indexer(s.cat.categories), -1)[own])  # own -1 -> the last slot: -1
    picked = np.where(codes[0] >= 0, codes[0], codes[1])
    return pd.Series(pd.Categorical.from_codes(picked, categories=union, validate=False), index=first.index)


# -------------------------------------------------------------------------------------- mapping


def _map_ssl(raw: pd.DataFrame, cache: _CertCache) -> pd.DataFrame:
    n = len(raw)
    cols: dict[str, Any] = {}
    cols["ts"] = raw["ts"] if "ts" in raw.columns else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    cols["source"] = schema.strings_from_codes(["zeek"], np.zeros(n, dtype=np.int64))
    cols["conn_id"] = _col(raw, "uid")
    cols["client_ip"] = _col(raw, "id.orig_h")
    cols["client_port"] = _col(raw, "id.orig_p").astype("Int32")
    cols["server_ip"] = _col(raw, "id.resp_h")
    cols["server_port"] = _col(raw, "id.resp_p").astype("Int32")
    cols["sni"] = _col(raw, "server_name")
    v_codes, v_uniques = _codes(_col(raw, "version"))  # categorical when read from TSV: its codes
    cols["tls_version"] = schema.strings_from_codes([_VERSIONS.get(str(v), str(v)) for v in v_uniques], v_codes)
    dtls_version = np.array([str(v).startswith("DTLS") for v in v_uniques] + [False], dtype=bool)
    letter = _first_bytes(_col(raw, "ja4").astype("string"))  # JA4's first letter: t(cp), q(uic), d(tls)
    quic = letter == ord("q")
    dtls = dtls_version[v_codes] | (letter == ord("d"))  # code -1 (no version) takes the trailing False
    cols["transport"] = schema.strings_from_codes(["tcp", "quic", "dtls"], np.where(dtls, 2, np.where(quic, 1, 0)))
    carried = np.zeros(n, dtype=bool)
    for col in _CARRIED:
        if col in raw.columns:
            cols[col] = raw[col].astype("string")
            carried |= cols[col].notna().to_numpy(dtype=bool)
    cols["fingerprint_origin"] = schema.strings_from_codes(["zeek"], np.where(carried, 0, -1))

    server = _link(raw, cache, "cert_chain_fps", "cert_chain_fuids")
    peer = _link(raw, cache, "client_cert_chain_fps", "client_cert_chain_fuids")
    for prefix, linked, inline in (("server", server, ("subject", "issuer_subject")),
                                   ("peer", peer, ("client_subject", "client_issuer_subject"))):
        for key, inline_col in zip(("subject", "issuer"), inline, strict=True):
            values = linked[key]
            if inline_col in raw.columns:  # Bro 2.2 (and zat's JSON) print the leaf inline
                values = _coalesce(values, raw[inline_col])
            cols[f"{prefix}_{key}"] = values
        cols[f"{prefix}_cert_sha256"] = linked["sha256"]
    cols["server_chain"] = server["chain"]

    alpn = _col(raw, "next_protocol").astype("string")
    if "orig_alpn" in raw.columns:
        a_codes, a_uniques = _codes(raw["orig_alpn"])
        first = pd.Series(schema.strings_from_codes([_first(str(u)) for u in a_uniques], a_codes), index=raw.index)
        alpn = first.fillna(alpn)
    cols["alpn"] = alpn
    out = pd.DataFrame(cols, index=raw.index, copy=False)
    _client_hello(raw, out)
    return out


def _first_bytes(s: pd.Series) -> np.ndarray:
    """The first byte of each value of a string column (0 where missing or empty), from Arrow's
    buffers: one gather instead of a per-value ``startswith`` per letter."""
    import pyarrow as pa

    arr = pa.array(s.array)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = []
    for part in chunks:
        chunk = part.cast(pa.large_string())
        n = len(chunk)
        if n == 0:
            continue
        _, offs_buf, data_buf = chunk.buffers()
        offs = np.frombuffer(offs_buf, dtype=np.int64, count=chunk.offset + n + 1)[chunk.offset :]
        empty = data_buf is None or data_buf.size == 0
        data = np.zeros(1, np.uint8) if empty else np.frombuffer(data_buf, dtype=np.uint8)
        starts = offs[:-1]
        has = (np.diff(offs) > 0) & np.asarray(chunk.is_valid(), dtype=bool)
        parts.append(np.where(has, data[np.where(has, starts, 0)], 0).astype(np.uint8))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


def _first(cell: str) -> str | None:
    items = _split_vector(cell)
    return items[0] if items else None


def _per_unique(s: pd.Series, fn: Any) -> np.ndarray:
    codes, uniques = _codes(s)
    table = np.empty(len(uniques) + 1, dtype=object)
    for i, u in enumerate(uniques):  # one by one: a slice assignment would broadcast equal-length tuples
        table[i] = fn(str(u))
    table[-1] = None
    picked: np.ndarray = table[codes]
    return picked


def _ints(cell: str) -> tuple[int, ...]:
    return tuple(int(v) for v in _split_vector(cell))


def _client_hello(raw: pd.DataFrame, out: pd.DataFrame) -> None:
    """ClientHello lists logged by Zeek's ``ssl-log-ext`` policy script -> ``ch_*`` columns."""
    if "client_version" not in raw.columns or "client_ciphers" not in raw.columns:
        return
    present = raw["client_version"].notna() & raw["client_ciphers"].notna()
    out["ch_version"] = raw["client_version"].where(present).astype("Int32")
    for src, dst in _CH_LISTS.items():
        if src in raw.columns:
            vals = _per_unique(raw[src], _safe(_ints))
        else:
            vals = np.empty(len(raw), dtype=object)
            vals.fill(())  # not a slice assignment: numpy would broadcast the tuples
        out[dst] = pd.Series(vals, index=raw.index, dtype=object).where(present, None)
    if "sigalgs" in raw.columns:
        sig = _per_unique(raw["sigalgs"], _safe(_ints))
        hashes = _per_unique(raw["hashalgs"], _safe(_ints)) if "hashalgs" in raw.columns else sig
        combined = [
            tuple((h << 8) | s for h, s in zip(hs, ss, strict=False)) if "hashalgs" in raw.columns and ss is not None
            and hs is not None else ss
            for ss, hs in zip(sig, hashes, strict=True)
        ]
        out["ch_sig_algs"] = pd.Series(combined, index=raw.index, dtype=object).where(present, None)
    if "orig_alpn" in raw.columns:
        alpn = _per_unique(raw["orig_alpn"], lambda c: tuple(v.encode("utf-8", "surrogateescape").hex()
                                                            for v in _split_vector(c)))
        out["ch_alpn"] = pd.Series(alpn, index=raw.index, dtype=object).where(present, None)


def _safe(fn: Any) -> Any:
    def wrapped(cell: str) -> Any:
        try:
            return fn(cell)
        except ValueError:
            return None

    return wrapped


def _join_conn(out: pd.DataFrame, conn: pd.DataFrame) -> pd.DataFrame:
    """conn.log's duration and byte counts as ``conn_*`` extras, by uid; QUIC from proto/service."""
    cols = {"uid": "conn_id", "duration": "conn_duration", "orig_bytes": "conn_orig_bytes",
            "resp_bytes": "conn_resp_bytes", "proto": "conn_proto", "service": "conn_service"}
    have = {k: v for k, v in cols.items() if k in conn.columns}
    if "uid" not in have:
        return out
    right = conn[list(have)].rename(columns=have).drop_duplicates("conn_id", keep="last")
    merged = out.merge(right, on="conn_id", how="left")
    if "conn_service" in merged.columns:
        quic = merged["conn_service"].astype("string").str.contains("quic", regex=False).fillna(False)
        merged.loc[quic.to_numpy(dtype=bool), "transport"] = "quic"
    return merged
