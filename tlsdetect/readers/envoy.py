"""Envoy access logs (JSON lines, or text given the configured format string) to the connections table.

What is read
------------
* **JSON access logs** (``json_format``) with any key names. The usual ones are mapped by default:
  the keys of the project's sample configuration (``downstream_remote_address``, ``ja3``, ``ja4``,
  ``connection_id``, ...) and, for every supported command operator, the names an operator derives
  from it: ``downstream_remote_address``, ``DOWNSTREAM_REMOTE_ADDRESS``, ``%DOWNSTREAM_REMOTE_ADDRESS%``
  and ``downstreamRemoteAddress``. ``mapping={json_key: column}`` adds custom names; a custom key wins
  over a default key for the same column. Columns a mapping may name: the connections-table columns
  below plus ``client_address``/``server_address`` (``ip:port``, split here), ``peer_uri_san``,
  ``method``, ``response_code`` and ``access_log_type``.
* **Text access logs** given the Envoy format string (``text_format``): the ``%OPERATOR%`` template
  becomes one RE2 regex (literal text escaped, one group per operator), applied to all lines at once;
  ``-`` means missing.

=====================================  ==========================================
operator                               column
=====================================  ==========================================
``%START_TIME%``                       ``ts`` (UTC; ISO 8601, or epoch seconds)
``%DOWNSTREAM_REMOTE_ADDRESS%``        ``client_ip``, ``client_port`` (``[::1]:443`` too)
``%DOWNSTREAM_LOCAL_ADDRESS%``         ``server_ip``, ``server_port``
``%REQUESTED_SERVER_NAME%``            ``sni``
``%DOWNSTREAM_TLS_VERSION%``           ``tls_version`` (``TLSv1.2``; Envoy's ``TLSv1`` -> ``TLSv1.0``)
``%TLS_JA3_FINGERPRINT%``              ``ja3``
``%TLS_JA4_FINGERPRINT%``              ``ja4``
``%DOWNSTREAM_PEER_SUBJECT%``          ``peer_subject``
``%DOWNSTREAM_PEER_ISSUER%``           ``peer_issuer`` (and ``peer_issuer_key``)
``%DOWNSTREAM_PEER_FINGERPRINT_256%``  ``peer_cert_sha256``
``%DOWNSTREAM_PEER_URI_SAN%``          ``peer_uri_san`` (extra column; SPIFFE ID source)
``%DOWNSTREAM_PEER_CERT%``             ``peer_issuer_akid`` (see below)
``%UPSTREAM_PEER_SUBJECT%``            ``server_subject``
``%UPSTREAM_PEER_ISSUER%``             ``server_issuer`` (and ``server_issuer_key``)
``%UPSTREAM_PEER_FINGERPRINT_256%``    ``server_cert_sha256``
``%UPSTREAM_PEER_CERT%``               ``server_issuer_akid`` (see below)
``%CONNECTION_ID%``                    ``conn_id``
``%REQ(USER-AGENT)%``                  ``user_agent``
=====================================  ==========================================

``server_*`` here is the certificate of the *upstream* connection (Envoy -> backend): the one an
interceptor between Envoy and its backend would replace.

``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%`` (JSON keys ``downstream_peer_cert``/
``upstream_peer_cert`` and the other derived names; raw columns ``peer_cert_pem``/
``server_cert_pem`` for ``mapping``) log the leaf certificate as URL-encoded PEM. It gives
``peer_issuer_akid``/``server_issuer_akid`` (the leaf's Authority Key Identifier, lowercase hex: which
key signed it) and, where the line lacks them, the ``*_subject``, ``*_issuer`` and
``*_cert_sha256`` of the same side. Each distinct PEM is parsed once. A PEM that does not parse
leaves those cells missing and the row kept: it is counted in ``stats.reasons["bad certificate"]``
(not a bad line) with one warning per block in ``stats.warnings`` naming the first line.

Rows
----
An HTTP connection manager logs one line per request; a listener-level access log logs one line per
connection, including failed handshakes (no HTTP fields). Every line is a row by default and the
extra column ``envoy_line`` says ``http`` or ``listener``. With ``collapse=True`` all lines of one
connection (same ``conn_id`` and 4-tuple; Envoy restarts its connection ids at 0) become one row: the
earliest ``ts``, the first non-missing value of every other column, ``envoy_line`` = ``http`` when
any line was, and the number of HTTP lines in the extra column ``http_requests``.

``client_id`` is the first ``spiffe://`` URI of ``%DOWNSTREAM_PEER_URI_SAN%``, else the peer
subject, else the client IP. ``source`` is ``envoy``, ``transport`` is ``tcp``.

Fingerprints: Envoy's values differ from the spec
-------------------------------------------------
Envoy's JA3 keeps GREASE values in the supported_groups (elliptic curves) field, and its JA4 keeps
GREASE values in the signature_algorithms list hashed into JA4's third part (``c``). So:

* a ClientHello with a GREASE value in supported_groups (Chrome, Edge and every Chromium browser,
  other BoringSSL clients that enable GREASE, uTLS mimics of them) gives an Envoy JA3 that differs
  from the spec JA3 of the same hello; a hello without one (OpenSSL-based clients such as curl,
  wget and Python; Go's crypto/tls; Java) gives the spec value. The JA3 *string* is not logged;
* a ClientHello with a GREASE value in signature_algorithms (Chrome >= 152) gives an Envoy JA4
  whose ``c`` hash differs from the spec JA4; its ``a`` part (counts exclude GREASE either way)
  and ``b`` part are equal. Every other hello gives the spec JA4.

A hash cannot be turned back into its list, so these values cannot be normalised from the log alone.
They are carried as they are with ``fingerprint_origin`` = ``envoy``, and scoring must compare them
with fingerprints of the same origin (or recompute from hello lists when another source has them).

Bad input
---------
A line that does not parse (broken JSON, not an object, a value of the wrong shape, a text line that
does not match the format, a bad address, port or timestamp) goes to ``dead_letter`` with its file,
line number and reason; it is counted and never crashes a run. A file whose first lines hold no
Envoy record at all is a :class:`~tlsdetect.readers.logs.LogFormatError`.

Connection ids are per Envoy process and repeat after a restart (and Envoy 1.40 logged id 0 both for a
connection closed before its handshake and for the next, real one), so ``collapse`` keys on the id
*and* the 4-tuple.

Speed: JSON is parsed in blocks by Arrow's multi-threaded JSON reader; only a block that Arrow
rejects is re-read line by line to locate and dead-letter its bad lines. Mapping, address splitting
and timestamp parsing are Arrow compute kernels over whole columns.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.readers.logs import DeadLetter, LogFormatError, LogStats, valid_utf8
from tlsdetect.schema import COLUMNS, conform, null_categories
from tlsdetect.wire.tls import CertInfo, parse_der_certificate

__all__ = ["OPERATORS", "compile_text_format", "default_mapping", "parse_envoy_lines", "read_envoy"]

#: Envoy command operator -> raw column. ``client_address``/``server_address`` are split later;
#: ``method``, ``response_code`` and ``access_log_type`` only tell HTTP from listener lines.
OPERATORS: Mapping[str, str] = {
    "START_TIME": "ts",
    "DOWNSTREAM_REMOTE_ADDRESS": "client_address",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": "client_address",
    "DOWNSTREAM_LOCAL_ADDRESS": "server_address",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": "server_address",
    "REQUESTED_SERVER_NAME": "sni",
    "DOWNSTREAM_TLS_VERSION": "tls_version",
    "TLS_JA3_FINGERPRINT": "ja3",
    "TLS_JA4_FINGERPRINT": "ja4",
    "DOWNSTREAM_PEER_SUBJECT": "peer_subject",
    "DOWNSTREAM_PEER_ISSUER": "peer_issuer",
    "DOWNSTREAM_PEER_FINGERPRINT_256": "peer_cert_sha256",
    "DOWNSTREAM_PEER_URI_SAN": "peer_uri_san",
    "DOWNSTREAM_PEER_CERT": "peer_cert_pem",
    "UPSTREAM_PEER_SUBJECT": "server_subject",
    "UPSTREAM_PEER_ISSUER": "server_issuer",
    "UPSTREAM_PEER_FINGERPRINT_256": "server_cert_sha256",
    "UPSTREAM_PEER_CERT": "server_cert_pem",
    "CONNECTION_ID": "conn_id",
    "REQ(USER-AGENT)": "user_agent",
    "REQ(:METHOD)": "method",
    "RESPONSE_CODE": "response_code",
    "ACCESS_LOG_TYPE": "access_log_type",
}

#: Raw columns a line may carry (mapping targets).
RAW_COLUMNS = (
    "ts", "client_address", "server_address", "client_ip", "client_port", "server_ip", "server_port",
    "sni", "tls_version", "alpn", "ja3", "ja4", "peer_subject", "peer_issuer", "peer_cert_sha256",
    "peer_uri_san", "server_subject", "server_issuer", "server_cert_sha256", "conn_id", "user_agent",
    "client_id", "method", "response_code", "access_log_type", "peer_cert_pem", "server_cert_pem",
)  # fmt: skip

#: Keys seen in the wild for some columns, beyond the operator-derived names.
_EXTRA_KEYS: Mapping[str, str] = {
    "ja3": "ja3",
    "ja4": "ja4",
    "ja3_fingerprint": "ja3",
    "ja4_fingerprint": "ja4",
    "tls_ja3": "ja3",
    "tls_ja4": "ja4",
    "connection_id": "conn_id",
    "sni": "sni",
    "method": "method",
    "user_agent": "user_agent",
    "user-agent": "user_agent",
    "downstream_peer_uri_san": "peer_uri_san",
    "spiffe_id": "peer_uri_san",
}

#: Columns whose presence makes a JSON object an Envoy access-log record (for format detection).
_CORE = frozenset(
    {"client_address", "server_address", "client_ip", "server_ip", "ja3", "ja4", "sni", "conn_id",
     "peer_subject", "peer_issuer", "tls_version"}
)  # fmt: skip

_TLS_VERSIONS = {
    "TLSv1": "TLSv1.0",
    "TLSv1.0": "TLSv1.0",
    "TLSv1.1": "TLSv1.1",
    "TLSv1.2": "TLSv1.2",
    "TLSv1.3": "TLSv1.3",
    "TLS 1.0": "TLSv1.0",
    "TLS 1.1": "TLSv1.1",
    "TLS 1.2": "TLSv1.2",
    "TLS 1.3": "TLSv1.3",
}

_ADDRESS_RE = (
    r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.\-]+)?)\](?::(?P<p6>[0-9]{1,5}))?"
    r"|(?P<ip4>(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"
    r"(?::(?P<p4>[0-9]{1,5}))?"
    r"|(?P<bare6>[0-9A-Fa-f]*:[0-9A-Fa-f:.]*))$"
)

_BLOCK = 16 << 20
_SNIFF_LINES = 20


def _snake(op: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", op.lower()).strip("_")


def _camel(op: str) -> str:
    head, *rest = _snake(op).split("_")
    return head + "".join(p.title() for p in rest)


def default_mapping() -> dict[str, str]:
    """The default ``{json_key: column}``: sample-config keys plus operator-derived names."""
    out: dict[str, str] = {}
    for op, col in OPERATORS.items():
        for key in (_snake(op), op, f"%{op}%", _camel(op)):
            out.setdefault(key, col)
    for key, col in _EXTRA_KEYS.items():
        out.setdefault(key, col)
    return out


def _candidates(mapping: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Column -> JSON keys in priority order (custom keys first)."""
    merged: dict[str, list[str]] = {}
    for source in (mapping or {}, default_mapping()):
        for key, col in source.items():
            if col not in RAW_COLUMNS:
                raise ValueError(f"mapping target {col!r} is not a column read_envoy fills; choose from {RAW_COLUMNS}")
            keys = merged.setdefault(col, [])
            if key not in keys:
                keys.append(key)
    return merged


# --------------------------------------------------------------------------------------------- text


@dataclass(frozen=True, slots=True)
class TextFormat:
    """A compiled Envoy text format: the RE2 pattern and, per group, the raw column it fills."""

    pattern: str
    columns: tuple[str | None, ...]
    time_format: str | None
    regex: re.Pattern[str]

    def match(self, line: str) -> dict[str, str | None] | None:
        """Raw column values of one line (``-`` -> None), None when the line does not match."""
        m = self.regex.match(line)
        if m is None:
            return None
        out: dict[str, str | None] = {}
        for i, col in enumerate(self.columns):
            value = m.group(f"g{i}")
            if col is not None and out.get(col) is None:
                out[col] = None if value in ("-", "") else value
        return out


_OPERATOR_RE = re.compile(r"%%|%([A-Z0-9_]+(?:\([^)]*\))?)(?::[0-9]+)?%")

#: Operators whose values never hold whitespace: a tighter group keeps the regex unambiguous.
_NO_SPACE = frozenset(
    {"client_address", "server_address", "conn_id", "ja3", "ja4", "tls_version", "sni", "response_code",
     "peer_cert_sha256", "server_cert_sha256", "method", "access_log_type", "peer_cert_pem", "server_cert_pem"}
)  # fmt: skip
_NO_SPACE_OPS = re.compile(
    r"^(?:BYTES_|DURATION|RESPONSE_|REQUEST_DURATION|RESPONSE_DURATION|RESPONSE_TX_DURATION|UPSTREAM_HOST|"
    r"UPSTREAM_CLUSTER|UPSTREAM_LOCAL_ADDRESS|UPSTREAM_REMOTE_ADDRESS|DOWNSTREAM_DIRECT_REMOTE_ADDRESS|"
    r"PROTOCOL|UPSTREAM_PROTOCOL|DOWNSTREAM_TLS_CIPHER|UPSTREAM_TLS|DOWNSTREAM_PEER_SERIAL|ROUTE_NAME|"
    r"HOSTNAME|UPSTREAM_TRANSPORT_FAILURE_REASON|UNIQUE_ID|STREAM_ID)"
)


def _group_pattern(col: str | None, op: str) -> str:
    if col in _NO_SPACE or _NO_SPACE_OPS.match(op):
        return r"\S*"
    return r".*?"


def compile_text_format(text_format: str) -> TextFormat:
    """Turn an Envoy format string into a parser: one group per ``%OPERATOR%``, literals escaped.

    ``%START_TIME(fmt)%`` keeps its strftime format for parsing; ``%OP(...):N%`` truncation is
    accepted; ``%%`` is a literal ``%``. Unknown operators are matched and ignored.
    """
    template = text_format.rstrip("\r\n")
    parts: list[str] = ["^"]
    columns: list[str | None] = []
    time_format: str | None = None
    pos = 0
    for m in _OPERATOR_RE.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        pos = m.end()
        if m.group(0) == "%%":
            parts.append("%")
            continue
        op = m.group(1)
        base = op.split("(", 1)[0]
        col = OPERATORS.get(op) or (OPERATORS.get(base) if base == "START_TIME" else None)
        if base == "START_TIME" and "(" in op:
            time_format = op[op.index("(") + 1 : -1] or None
        parts.append(f"(?P<g{len(columns)}>{_group_pattern(col, op)})")
        columns.append(col)
    parts.append(re.escape(template[pos:]))
    parts.append("$")
    if not columns:
        raise ValueError(f"text_format has no %OPERATOR%: {text_format!r}")
    pattern = "".join(parts)
    try:
        pc.extract_regex(pa.array([], pa.string()), pattern)  # RE2 must accept it, as Python's re does
        regex = re.compile(pattern, re.DOTALL)
    except (pa.ArrowInvalid, re.error) as exc:
        raise ValueError(f"text_format cannot be turned into a parser: {exc}") from exc
    return TextFormat(pattern, tuple(columns), time_format, regex)


# ------------------------------------------------------------------------------------------- reading


def _open_binary(path: Path) -> IO[bytes]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return open(path, "rb")


def _blocks(fh: IO[bytes], size: int = _BLOCK) -> Iterator[tuple[int, bytes]]:
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
class _Chunk:
    """Raw string columns of the good lines of one block, with each row's line number and text."""

    columns: dict[str, pa.Array]
    rows: int
    lines: int
    text: Callable[[int], str]
    line_no: Callable[[int], int]


def _line_texts(block: bytes) -> list[str]:
    return block.decode("utf-8", "replace").split("\n")


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


class _JsonReader:
    def __init__(self, mapping: Mapping[str, str] | None) -> None:
        self.candidates = _candidates(mapping)
        self.key_column = {k: c for c, keys in self.candidates.items() for k in keys}

    def is_record(self, line: str) -> bool:
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        return isinstance(obj, dict) and any(self.key_column.get(k) in _CORE for k in obj)

    def read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> _Chunk:
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
        lazy = _LazyLines(first, block)
        return _Chunk(columns, table.num_rows, table.num_rows, lazy.text, lazy.line_no)

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

    def _line_by_line(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> _Chunk:
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
                obj = json.loads(line)
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
        return _Chunk(columns, len(nos), seen, texts.__getitem__, nos.__getitem__)


class _LazyLines:
    """Line numbers and texts of a block's non-blank lines, computed only when a row is bad."""

    def __init__(self, first: int, block: bytes) -> None:
        self.first, self.block = first, block
        self._texts: list[str] | None = None
        self._nos: np.ndarray[Any, np.dtype[np.int64]] | None = None

    def _load(self) -> None:
        if self._texts is None:
            all_lines = _line_texts(self.block)
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


def _float_text(arr: pa.Array) -> pa.Array:
    values = arr.to_pylist()
    return pa.array([_scalar_text(v) for v in values], type=pa.string())


class _TextReader:
    def __init__(self, text_format: str) -> None:
        self.fmt = compile_text_format(text_format)
        self.names = [f"g{i}" for i in range(len(self.fmt.columns))]

    def is_record(self, line: str) -> bool:
        return self.fmt.match(line) is not None

    def read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> _Chunk:
        all_lines = [t.rstrip("\r") for t in _line_texts(block)]
        keep = [i for i, t in enumerate(all_lines) if t.strip()]
        texts = [all_lines[i] for i in keep]
        arr = pa.array(texts, type=pa.string())
        matched = pc.extract_regex(arr, self.fmt.pattern)
        ok = matched.is_valid().to_numpy(zero_copy_only=False)
        for j in np.flatnonzero(~ok):
            dead.add(file, first + keep[j], "line does not match text_format", texts[j])
        good = pa.array(ok)
        matched = matched.filter(good)
        columns: dict[str, pa.Array] = {}
        for i, col in enumerate(self.fmt.columns):
            if col is None:
                continue
            values = matched.field(i)
            values = pc.if_else(pc.is_in(values, pa.array(["-", ""])), pa.scalar(None, pa.string()), values)
            columns[col] = values if col not in columns else pc.coalesce(columns[col], values)
        good_nos = [first + keep[j] for j in np.flatnonzero(ok)]
        good_texts = [texts[j] for j in np.flatnonzero(ok)]
        return _Chunk(columns, len(good_nos), len(texts), good_texts.__getitem__, good_nos.__getitem__)


# ------------------------------------------------------------------------------------------ columns


def _null_dash(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.is_in(arr, pa.array(["-", ""])), pa.scalar(None, pa.string()), arr)


def _split_address(arr: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray[Any, np.dtype[np.bool_]]]:
    """(ip, port, bad mask) of ``ip:port`` / ``[v6]:port`` / bare ip texts; missing stays missing."""
    parts = pc.extract_regex(arr, _ADDRESS_RE)
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)

    def field(name: str) -> pa.Array:
        return _null_dash(parts.field(name))

    ip = pc.coalesce(field("ip4"), field("ip6"), field("bare6"))
    port_text = pc.coalesce(field("p4"), field("p6"))
    port = pc.cast(port_text, pa.int32())
    port_bad = pc.fill_null(pc.greater(port, 65535), False).to_numpy(zero_copy_only=False)
    bad = (present & ~matched) | port_bad
    return ip, port, bad


def _parse_ts(arr: pa.Array, time_format: str | None) -> tuple[pd.Series, np.ndarray[Any, np.dtype[np.bool_]]]:
    """UTC timestamps and a mask of present-but-unparsable values."""
    present = arr.is_valid().to_numpy(zero_copy_only=False)
    texts = pd.Series(arr.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get), dtype="string")
    try:
        ts = _to_ts(arr, texts, time_format)
    except (ValueError, OverflowError, TypeError, pa.ArrowException):
        ts = pd.Series([_one_ts(t, time_format) for t in texts.astype(object)], dtype="datetime64[ns, UTC]")
    bad = present & ts.isna().to_numpy()
    return ts.reset_index(drop=True), bad


def _to_ts(arr: pa.Array, texts: pd.Series, time_format: str | None) -> pd.Series:
    """Vectorised: Arrow's ISO 8601 cast, else pandas; numbers are epoch seconds (or ms)."""
    ts: pd.Series
    if time_format and time_format != "%s":
        fmt = re.sub(r"%[1-9]f", "%f", time_format)
        return pd.to_datetime(texts, format=fmt, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    # a bare number is epoch seconds (Envoy's %START_TIME(%s)%), not an ISO 8601 year
    numeric_text = pc.fill_null(pc.match_substring_regex(arr, r"^-?[0-9]+(\.[0-9]+)?$"), False)
    iso = pc.if_else(numeric_text, pa.scalar(None, pa.string()), arr)
    try:
        ts = pd.Series(pc.cast(iso, pa.timestamp("ns", tz="UTC")).to_pandas())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ts = pd.to_datetime(texts.where(~numeric_text.to_numpy(zero_copy_only=False)), format="ISO8601", utc=True,
                            errors="coerce")  # fmt: skip
    ts = ts.astype("datetime64[ns, UTC]")
    missing = ts.isna().to_numpy() & texts.notna().to_numpy()
    if missing.any():
        numeric = pd.to_numeric(texts.where(missing), errors="coerce").astype("float64")
        epoch = numeric.notna() & missing
        if epoch.any():
            num = numeric[epoch]
            conv = pd.to_datetime(num.where(num <= 1e11, num / 1000.0), unit="s", utc=True, errors="coerce")
            ts[epoch] = conv.astype("datetime64[ns, UTC]")
    return ts


def _one_ts(text: object, time_format: str | None) -> pd.Timestamp | None:
    if not isinstance(text, str):
        return None
    try:
        if time_format and time_format != "%s":
            out = pd.to_datetime(text, format=re.sub(r"%[1-9]f", "%f", time_format), utc=True)
        else:
            out = pd.to_datetime(text, format="ISO8601", utc=True)
        if not isinstance(out, pd.Timestamp) or pd.isna(out):
            return None
        return out.as_unit("ns")
    except (ValueError, OverflowError, TypeError):
        return None


def _frame(chunk: _Chunk, file: Path, dead: DeadLetter, time_format: str | None) -> pd.DataFrame:
    """Connections rows from one chunk's raw columns; bad rows dead-lettered and removed."""
    cols = {c: _null_dash(a) for c, a in chunk.columns.items()}
    n = chunk.rows
    empty = pa.nulls(n, pa.string())
    bad = np.zeros(n, dtype=bool)
    reasons = np.full(n, None, dtype=object)
    out: dict[str, Any] = {}

    for side in ("client", "server"):
        ip: pa.Array = cols.get(f"{side}_ip", empty)
        port: pa.Array = empty
        if f"{side}_address" in cols:
            a_ip, a_port, a_bad = _split_address(cols[f"{side}_address"])
            ip = pc.coalesce(a_ip, ip)
            port = a_port
            reasons[a_bad & ~bad] = f"bad address: {side} address is not ip:port"
            bad |= a_bad
        if f"{side}_port" in cols:
            p = cols[f"{side}_port"]
            p_text = pd.Series(p.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get))
            p_num = pd.to_numeric(p_text, errors="coerce")
            p_out = (p_num.isna() | (p_num < 0) | (p_num > 65535) | (p_num % 1 != 0)).to_numpy(dtype=bool)
            p_bad = p.is_valid().to_numpy(zero_copy_only=False) & p_out
            reasons[p_bad & ~bad] = f"bad port: {side} port"
            bad |= p_bad
            p_int = pa.array(p_num.where(~pd.Series(p_bad)).astype("Int32"), type=pa.int32())
            port = pc.coalesce(pc.cast(port, pa.int32()), p_int)
        out[f"{side}_ip"] = ip
        out[f"{side}_port"] = pc.cast(port, pa.int32())

    if "ts" in cols:
        ts, ts_bad = _parse_ts(cols["ts"], time_format)
        reasons[ts_bad & ~bad] = "bad timestamp: START_TIME does not parse"
        bad |= ts_bad
    else:
        ts = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")

    for i in np.flatnonzero(bad):
        dead.add(file, chunk.line_no(int(i)), str(reasons[i]), chunk.text(int(i)))
    keep = pa.array(~bad)

    frame: dict[str, Any] = {}
    for col in ("sni", "ja3", "ja4", "peer_subject", "peer_issuer", "peer_cert_sha256", "peer_uri_san",
                "server_subject", "server_issuer", "server_cert_sha256", "conn_id", "user_agent", "alpn",
                "tls_version", "client_id", "method", "response_code", "access_log_type"):  # fmt: skip
        frame[col] = cols.get(col, empty)
    frame.update(out)
    frame.update(_certificates(cols, frame, bad, chunk, file, dead))
    table = pa.table({k: v.filter(keep) for k, v in frame.items()})
    df: pd.DataFrame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.int32(): pd.Int32Dtype()}.get)
    df["ts"] = ts[~bad].reset_index(drop=True)
    return df


#: (side, raw PEM column, operator) of the logged leaf certificates.
_PEM_SIDES = (("peer", "peer_cert_pem", "DOWNSTREAM_PEER_CERT"), ("server", "server_cert_pem", "UPSTREAM_PEER_CERT"))


@lru_cache(maxsize=4096)
def _pem_certificate(text: str) -> CertInfo | None:
    """One logged leaf certificate (URL-encoded PEM, or plain PEM); None when it is not one."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = x509.load_pem_x509_certificate(unquote(text).strip().encode("utf-8", "surrogateescape"))
        info = parse_der_certificate(cert.public_bytes(Encoding.DER))
    except (ValueError, TypeError, UnicodeError, x509.InvalidVersion):
        return None
    return info if info.subject is not None else None


def _certificates(
    cols: Mapping[str, pa.Array], frame: Mapping[str, pa.Array], bad: np.ndarray[Any, np.dtype[np.bool_]],
    chunk: _Chunk, file: Path, dead: DeadLetter,
) -> dict[str, pa.Array]:
    """``*_issuer_akid`` (and missing subject, issuer, SHA-256) from the logged PEM leaves.

    Vectorised over distinct PEM texts: each is parsed once (and cached across blocks), its
    fields broadcast with Arrow's take. Rows already dead-lettered (``bad``) are not counted.
    """
    n = chunk.rows
    out: dict[str, pa.Array] = {}
    for side, raw, op in _PEM_SIDES:
        pem = cols.get(raw)
        if pem is None or pem.null_count == n:
            out[f"{side}_issuer_akid"] = pa.nulls(n, pa.string())
            continue
        encoded = pc.dictionary_encode(pem)
        infos = [_pem_certificate(t) for t in encoded.dictionary.to_pylist()]
        codes = pc.fill_null(encoded.indices, len(infos))  # null PEM -> the trailing None entry
        infos.append(None)

        def per_row(values: list[str | None], codes: pa.Array = codes) -> pa.Array:
            return pa.array(values, type=pa.string()).take(codes)

        out[f"{side}_issuer_akid"] = per_row([i.akid if i else None for i in infos])
        for col, attr in (("subject", "subject"), ("issuer", "issuer"), ("cert_sha256", "sha256")):
            logged = frame[f"{side}_{col}"]
            out[f"{side}_{col}"] = pc.coalesce(logged, per_row([getattr(i, attr) if i else None for i in infos]))
        unreadable = np.array([i is None for i in infos], dtype=bool)
        unreadable[-1] = False
        rows = np.flatnonzero(unreadable[codes.to_numpy(zero_copy_only=False)] & ~bad)
        if len(rows):
            dead.stats.reasons["bad certificate"] += len(rows)
            dead.stats.warnings.append(
                f"{file}: {len(rows)} line(s) whose %{op}% is not a PEM certificate (first at line "
                f"{chunk.line_no(int(rows[0]))}); their {side}_issuer_akid is left missing"
            )
    return out


def _finish(df: pd.DataFrame, collapse: bool) -> pd.DataFrame:
    """Derived columns, collapse, schema order."""
    n = len(df)
    for col in ("peer_cert_sha256", "server_cert_sha256"):
        df[col] = df[col].str.replace(":", "", regex=False).str.lower()
    codes, uniques = pd.factorize(df["tls_version"].astype(object), use_na_sentinel=True)
    names = np.array([_TLS_VERSIONS.get(str(u), str(u)) for u in uniques] + [None], dtype=object)
    df["tls_version"] = pd.array(names[codes], dtype="string")
    method = df["method"].notna()
    code = df["response_code"].fillna("0")
    kind = df["access_log_type"].fillna("")
    http = method | ~code.isin(["0", ""]) | kind.str.startswith("Downstream")
    df["envoy_line"] = pd.array(np.where(http.to_numpy(dtype=bool), "http", "listener"), dtype="string")
    spiffe = df["peer_uri_san"].str.extract(r"(spiffe://[^,\s]+)", expand=False).astype("string")
    existing = df["client_id"] if "client_id" in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    df["client_id"] = existing.fillna(spiffe).fillna(df["peer_subject"]).fillna(df["client_ip"]).astype("string")
    df["source"] = _constant("envoy", n)
    df["transport"] = _constant("tcp", n)
    has_fp = df["ja3"].notna() | df["ja4"].notna()
    df["fingerprint_origin"] = _constant("envoy", n).where(has_fp.to_numpy(dtype=bool))
    df = df.drop(columns=["method", "response_code", "access_log_type"])
    if collapse:
        df = _collapse(df)
    out: pd.DataFrame = add_issuer_keys(conform(_fill_missing(df)))
    return out


def _constant(value: str | None, n: int) -> pd.Series:
    arr = pa.nulls(n, pa.string()) if value is None else pa.repeat(pa.scalar(value, pa.string()), n)
    return pd.Series(pd.array(arr, dtype=pd.StringDtype()))


def _fill_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Add the schema columns this source never fills, built in bulk (cheaper than ``conform``)."""
    n = len(df)
    new: dict[str, Any] = {}
    for col, dtype in COLUMNS.items():
        if col in df.columns:
            continue
        if dtype == "string":
            new[col] = _constant(None, n).to_numpy(dtype=object) if n == 0 else _constant(None, n).array
        elif dtype == "object":
            new[col] = np.full(n, None, dtype=object)
        elif dtype == "category":
            new[col] = null_categories(n)
        else:
            new[col] = pd.Series(pd.NA, index=range(n), dtype=dtype).array
    if not new:
        return df
    return pd.concat([df.reset_index(drop=True), pd.DataFrame(new, index=range(n))], axis=1)


_KEY = ["conn_id", "client_ip", "client_port", "server_ip", "server_port"]


def _collapse(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        df["http_requests"] = pd.Series(dtype="Int32")
        return df
    has_id = df["conn_id"].notna().to_numpy()
    with_id = df[has_id].copy()
    without = df[~has_id].copy()
    with_id["_http"] = (with_id["envoy_line"] == "http").astype("int32")
    with_id = with_id.sort_values("ts", kind="stable", na_position="last")
    groups = with_id.groupby(_KEY, sort=False, dropna=False)
    first = groups.first()
    first["ts"] = groups["ts"].min()
    first["http_requests"] = groups["_http"].sum().astype("Int32")
    is_http = first["http_requests"].to_numpy(dtype="int64", na_value=0) > 0
    first["envoy_line"] = pd.Series(np.where(is_http, "http", "listener"), index=first.index, dtype="string")
    first = first.drop(columns=["_http"]).reset_index()
    without_http = (without["envoy_line"] == "http").to_numpy(dtype=bool, na_value=False)
    without["http_requests"] = pd.Series(np.where(without_http, 1, 0), index=without.index, dtype="Int32")
    out = pd.concat([first, without], ignore_index=True)
    for col in df.columns:
        out[col] = out[col].astype(df[col].dtype)
    return out.sort_values("ts", kind="stable", na_position="last").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- API


def read_envoy(
    paths: Sequence[Path],
    *,
    dead_letter: DeadLetter | None = None,
    mapping: Mapping[str, str] | None = None,
    text_format: str | None = None,
    collapse: bool = False,
) -> pd.DataFrame:
    """Read Envoy access logs (JSON lines, or text with ``text_format``) into the connections table.

    ``mapping`` adds ``{json_key: column}`` names for JSON logs (see the module docstring for the
    columns). ``collapse=True`` gives one row per connection instead of one per line. Unreadable
    lines go to ``dead_letter`` (a private one when None) and ``dead_letter.stats`` counts files,
    lines and rows. A file that holds no Envoy record in its first lines raises
    :class:`LogFormatError`; gzip files are read transparently.
    """
    dead = dead_letter if dead_letter is not None else DeadLetter()
    stats: LogStats = dead.stats
    reader: _JsonReader | _TextReader = _TextReader(text_format) if text_format is not None else _JsonReader(mapping)
    time_format = reader.fmt.time_format if isinstance(reader, _TextReader) else None
    frames: list[pd.DataFrame] = []
    for raw_path in paths:
        path = Path(raw_path)
        _check_head(path, reader)
        stats.files += 1
        with _open_binary(path) as fh:
            for first, block in _blocks(fh):
                chunk = reader.read_block(path, first, block, dead)
                stats.lines += chunk.lines
                frames.append(_frame(chunk, path, dead, time_format))
    if frames:
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        raw = [c for c in RAW_COLUMNS if c not in ("client_address", "server_address", "peer_cert_pem",
                                                   "server_cert_pem")]  # fmt: skip
        df = pd.DataFrame({c: pd.Series(dtype="string") for c in raw})
        df["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
        df["client_port"] = pd.Series(dtype="Int32")
        df["server_port"] = pd.Series(dtype="Int32")
    out = _finish(df, collapse)
    stats.rows += len(out)
    return out


@lru_cache(maxsize=16)
def _reader(mapping: tuple[tuple[str, str], ...] | None, text_format: str | None) -> _JsonReader | _TextReader:
    return _TextReader(text_format) if text_format is not None else _JsonReader(dict(mapping or ()))


def parse_envoy_lines(
    block: bytes,
    *,
    source: Path,
    first_line: int = 1,
    dead_letter: DeadLetter | None = None,
    mapping: Mapping[str, str] | None = None,
    text_format: str | None = None,
    collapse: bool = False,
) -> pd.DataFrame:
    """The rows of whole lines of one Envoy access log (``block``: complete, ``\\n``-separated lines).

    The same parse as :func:`read_envoy` over one block of a file, for readers that follow a log
    (``tlsdetect stream``): ``source`` and ``first_line`` (the 1-based number of the block's first
    line) only name bad lines in ``dead_letter``. Blank lines are skipped; no format check is made
    (a line that is not a record is a dead letter, never an error). ``dead_letter.stats`` counts
    lines and rows as :func:`read_envoy` does, but not files.
    """
    dead = dead_letter if dead_letter is not None else DeadLetter()
    reader = _reader(tuple(sorted(mapping.items())) if mapping else None, text_format)
    time_format = reader.fmt.time_format if isinstance(reader, _TextReader) else None
    chunk = reader.read_block(Path(source), first_line, block, dead)
    dead.stats.lines += chunk.lines
    out = _finish(_frame(chunk, Path(source), dead, time_format), collapse)
    dead.stats.rows += len(out)
    return out


def _check_head(path: Path, reader: _JsonReader | _TextReader) -> None:
    """Raise :class:`LogFormatError` when none of the first non-blank lines is an Envoy record."""
    lines: list[str] = []
    with _open_binary(path) as fh:
        try:
            for raw in fh:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    lines.append(text)
                    if len(lines) >= _SNIFF_LINES:
                        break
        except (OSError, EOFError) as exc:
            raise LogFormatError(f"{path}: unreadable ({exc})") from exc
    if not lines or any(reader.is_record(line) for line in lines):
        return
    if isinstance(reader, _TextReader):
        raise LogFormatError(f"{path}: no line of its first {len(lines)} matches the given text_format")
    raise LogFormatError(
        f"{path}: not an Envoy JSON access log (no JSON object with Envoy access-log keys in its first "
        f"{len(lines)} lines; for a text log pass text_format, for custom keys pass mapping)"
    )
