"""What the Zeek readers share: the fields they read, the kind of a log, a parsed header, vector cells.

Which log a file holds comes from its ``#path`` header or from its fields (ssl: ``version``/
``cipher``/``server_name``; x509: ``certificate.subject``/``fingerprint``; conn: ``proto``/
``conn_state``; quic: ``client_initial_dcid``/``client_scid``/``server_scid``/``client_protocol``,
checked first, as quic.log also has ``version`` and ``server_name``), never from its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CH_LISTS", "FLOAT_FIELDS", "INT_FIELDS", "KINDS", "NEVER_ESCAPED", "PER_DISTINCT", "STRING_FIELDS",
    "U16_FIELDS", "USED", "VECTOR_FIELDS", "Header", "Part", "codes", "column", "kind_from_fields",
    "kind_from_record", "split_vector", "unescape_one",
]  # fmt: skip

KINDS = ("ssl", "x509", "conn", "quic")
#: quic.log fields no other log of ours has (it shares ``version``/``server_name`` with ssl.log).
QUIC_FIELDS = frozenset({"client_initial_dcid", "client_scid", "server_scid", "client_protocol"})

#: ssl.log fields (``ssl-log-ext`` policy script) -> ClientHello list columns.
CH_LISTS = {
    "client_ciphers": "ch_ciphers",
    "ssl_client_exts": "ch_extensions",
    "client_curves": "ch_groups",
    "point_formats": "ch_point_formats",
    "client_supported_versions": "ch_supported_versions",
}
VECTOR_FIELDS = (
    "cert_chain_fps",
    "cert_chain_fuids",
    "client_cert_chain_fps",
    "client_cert_chain_fuids",
    "orig_alpn",
    "sigalgs",
    "hashalgs",
    *CH_LISTS,
)
STRING_FIELDS = (
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
    "cipher",
    "resumed",
    *sorted(QUIC_FIELDS),
)
INT_FIELDS = ("id.orig_p", "id.resp_p", "client_version", "orig_bytes", "resp_bytes")
U16_FIELDS = frozenset({"id.orig_p", "id.resp_p", "client_version"})
FLOAT_FIELDS = ("duration",)
#: Fields the mapping only reads per distinct value (Arrow reads them dictionary-encoded).
PER_DISTINCT = frozenset({*VECTOR_FIELDS, "version", "cipher", "resumed"})
USED = frozenset({"ts", *INT_FIELDS, *FLOAT_FIELDS, *STRING_FIELDS, *VECTOR_FIELDS})
#: Zeek-generated tokens (ids, addresses, hashes) never hold a backslash: skip the escape scan.
NEVER_ESCAPED = frozenset({"client_initial_dcid", "client_scid", "server_scid",
                           "uid", "id.orig_h", "id.resp_h", "version", "ja3", "ja3s", "ja4", "ja4_r", "ja4_o",
                           "ja4_ro", "fingerprint", "id", "proto", "cipher", "resumed"})
_ESCAPE = re.compile(rb"\\(\\|x[0-9a-fA-F]{2})")


@dataclass(slots=True)
class Part:
    """One log's records with Zeek's field names, values already typed and unescaped."""

    kind: str
    frame: pd.DataFrame


@dataclass(slots=True)
class Header:
    """A TSV header block's directives (JSON logs use the defaults)."""

    separator: str = "\t"
    set_separator: str = ","
    empty: str = "(empty)"
    unset: str = "-"
    path: str | None = None
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)


def kind_from_fields(fields: Iterable[str]) -> str | None:
    """``ssl``, ``x509``, ``conn`` or ``quic`` from a TSV ``#fields`` list; None for another log."""
    names = set(fields)
    if names & QUIC_FIELDS:
        return "quic"
    if "certificate.subject" in names or ("fingerprint" in names and "certificate.issuer" in names):
        return "x509"
    if names & {"version", "cipher", "server_name", "cert_chain_fps", "cert_chain_fuids"}:
        return "ssl"
    if "uid" in names and names & {"proto", "conn_state"}:
        return "conn"
    return None


def kind_from_record(obj: dict[str, Any]) -> str | None:
    """``ssl``, ``x509``, ``conn`` or ``quic`` from one flattened JSON record; None for another log."""
    if obj.keys() & QUIC_FIELDS:
        return "quic"
    if "certificate.subject" in obj or "fingerprint" in obj:
        return "x509"
    if obj.keys() & {"version", "cipher", "server_name", "cert_chain_fps", "cert_chain_fuids"}:
        return "ssl"
    if "uid" in obj and obj.keys() & {"proto", "conn_state"}:
        return "conn"
    return None


def codes(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
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
    picked = np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return picked, list(enc.dictionary.to_pylist())


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, or a missing string column when the log has no such field."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def unescape_one(value: str) -> str:
    """Zeek's TSV escapes (``\\\\`` and ``\\xNN``) of one value decoded."""
    raw = value.encode("utf-8", "surrogateescape")
    decoded = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]), raw)
    return decoded.decode("utf-8", "backslashreplace")


def split_vector(value: str) -> list[str]:
    """A vector cell joined by ``,`` (escaped commas inside elements are ``\\x2c``)."""
    if value == "":
        return []
    return [unescape_one(v) for v in value.split(",")]
