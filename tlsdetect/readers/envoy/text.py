"""Envoy text access logs, given the configured format string (``text_format``).

The ``%OPERATOR%`` template becomes one RE2 regex (literal text escaped, one group per operator),
applied to all lines of a block at once by Arrow; ``-`` means missing. A line whose connection
operators are all ``-`` is a dead letter ``no connection fields``. ``%START_TIME(fmt)%`` keeps
its strftime format for the timestamps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.chunk import Chunk, line_texts, without_empty
from tlsdetect.readers.envoy.keys import OPERATORS
from tlsdetect.readers.logs import DeadLetter

__all__ = ["TextFormat", "TextReader", "compile_text_format"]


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


class TextReader:
    """Reads text lines that ``text_format`` describes."""

    def __init__(self, text_format: str) -> None:
        self.fmt = compile_text_format(text_format)
        self.names = [f"g{i}" for i in range(len(self.fmt.columns))]
        self.time_format = self.fmt.time_format

    def is_record(self, line: str) -> bool:
        return self.fmt.match(line) is not None

    def read_block(self, file: Path, first: int, block: bytes, dead: DeadLetter) -> Chunk:
        all_lines = [t.rstrip("\r") for t in line_texts(block)]
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
        chunk = Chunk(columns, len(good_nos), len(texts), good_texts.__getitem__, good_nos.__getitem__)
        return without_empty(chunk, file, dead)
