"""ssl.log records (with their x509 links) mapped to the connections table.

Most columns are a field table (:data:`_COPIED`: ssl.log field, column, dtype); the derived ones
(``tls_version``, ``transport``, ``fingerprint_origin``, certificates, ``alpn``, the ``ch_*`` lists
of the ``ssl-log-ext`` policy script) are computed once per distinct value and broadcast by codes.

The server's side: ``cipher`` (Zeek logs the IANA name, ``unknown-<n>`` for one it does not know)
-> ``sh_cipher``; ``resumed`` -> ``resumed``; ``version`` (the negotiated one) -> ``tls_version``
and, for TLS/DTLS 1.3, ``sh_selected_version``. ``sh_version`` stays missing: Zeek does not log
the ServerHello's legacy field or its extensions, and a ``sh_version`` would make the fingerprint
stage compute a JA3S without extensions over the one a Zeek package logged. The flights and
``sh_session_id_echoed`` are not in ssl.log: missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionDtype

from tlsdetect import schema
from tlsdetect.readers.zeek.fields import CH_LISTS, codes, column, split_vector
from tlsdetect.readers.zeek.join import CertCache, coalesce, link
from tlsdetect.wire.ciphers import cipher_numbers

__all__ = ["conformed", "map_ssl"]

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
#: Zeek's version -> the ServerHello's supported_versions value, which only 1.3 sends.
_SELECTED = {"TLSv13": 0x0304, "DTLSv13": 0xFEFC}
#: Zeek's bool as TSV (``T``/``F``) and as JSON (``true``/``false``, read as text).
_BOOLS = {"T": True, "F": False, "True": True, "False": False, "true": True, "false": False}
#: ssl.log fields copied as they are: (field, column, dtype to cast to or None).
_COPIED: tuple[tuple[str, str, ExtensionDtype | None], ...] = (
    ("uid", "conn_id", None),
    ("id.orig_h", "client_ip", None),
    ("id.orig_p", "client_port", pd.Int32Dtype()),
    ("id.resp_h", "server_ip", None),
    ("id.resp_p", "server_port", pd.Int32Dtype()),
    ("server_name", "sni", None),
)
#: Fingerprints Zeek packages log, carried (as strings) when present, with ``fingerprint_origin`` zeek.
_CARRIED = ("ja3", "ja3s", "ja4", "ja4_r", "ja4_o", "ja4_ro")
#: (column prefix, x509 link columns, inline subject and issuer columns of Bro 2.2 and zat's JSON)
_CERT_SIDES = (
    ("server", ("cert_chain_fps", "cert_chain_fuids"), ("subject", "issuer_subject")),
    ("peer", ("client_cert_chain_fps", "client_cert_chain_fuids"), ("client_subject", "client_issuer_subject")),
)


def map_ssl(raw: pd.DataFrame, cache: CertCache) -> pd.DataFrame:
    """The connections-table columns of ssl.log records ``raw`` (typed, Zeek's field names)."""
    n = len(raw)
    cols: dict[str, Any] = {}
    cols["ts"] = raw["ts"] if "ts" in raw.columns else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    cols["source"] = schema.strings_from_codes(["zeek"], np.zeros(n, dtype=np.int64))
    for name, col, dtype in _COPIED:
        values = column(raw, name)
        cols[col] = values.astype(dtype) if dtype is not None else values
    v_codes, v_uniques = codes(column(raw, "version"))  # categorical when read from TSV: its codes
    cols["tls_version"] = schema.strings_from_codes([_VERSIONS.get(str(v), str(v)) for v in v_uniques], v_codes)
    cols["sh_selected_version"] = _int32_per_code([_SELECTED.get(str(v)) for v in v_uniques], v_codes, raw.index)
    c_codes, c_uniques = codes(column(raw, "cipher"))
    cols["sh_cipher"] = _int32_per_code(cipher_numbers(c_uniques), c_codes, raw.index)
    r_codes, r_uniques = codes(column(raw, "resumed"))
    cols["resumed"] = _bool_per_code([_BOOLS.get(str(v)) for v in r_uniques], r_codes, raw.index)
    dtls_version = np.array([str(v).startswith("DTLS") for v in v_uniques] + [False], dtype=bool)
    letter = _first_bytes(column(raw, "ja4").astype("string"))  # JA4's first letter: t(cp), q(uic), d(tls)
    quic = letter == ord("q")
    dtls = dtls_version[v_codes] | (letter == ord("d"))  # code -1 (no version) takes the trailing False
    cols["transport"] = schema.strings_from_codes(["tcp", "quic", "dtls"], np.where(dtls, 2, np.where(quic, 1, 0)))
    carried = np.zeros(n, dtype=bool)
    for col in _CARRIED:
        if col in raw.columns:
            cols[col] = raw[col].astype("string")
            carried |= cols[col].notna().to_numpy(dtype=bool)
    cols["fingerprint_origin"] = schema.strings_from_codes(["zeek"], np.where(carried, 0, -1))

    linked = {prefix: link(raw, cache, *links) for prefix, links, _ in _CERT_SIDES}
    for prefix, _, inline in _CERT_SIDES:
        for key, inline_col in zip(("subject", "issuer"), inline, strict=True):
            values = linked[prefix][key]
            if inline_col in raw.columns:  # Bro 2.2 (and zat's JSON) print the leaf inline
                values = coalesce(values, raw[inline_col])
            cols[f"{prefix}_{key}"] = values
        cols[f"{prefix}_cert_sha256"] = linked[prefix]["sha256"]
    cols["server_chain"] = linked["server"]["chain"]

    alpn = column(raw, "next_protocol").astype("string")
    if "orig_alpn" in raw.columns:
        a_codes, a_uniques = codes(raw["orig_alpn"])
        first = pd.Series(schema.strings_from_codes([_first(str(u)) for u in a_uniques], a_codes), index=raw.index)
        alpn = first.fillna(alpn)
    cols["alpn"] = alpn
    out = pd.DataFrame(cols, index=raw.index, copy=False)
    _client_hello(raw, out)
    return out


def _int32_per_code(per_unique: list[int | None], row_codes: np.ndarray, index: pd.Index) -> pd.Series:
    """An Int32 column from one value per distinct input (None: missing) and the rows' codes (-1: missing)."""
    values = np.array([v if v is not None else 0 for v in per_unique] + [0], dtype=np.int32)
    known = np.array([v is not None for v in per_unique] + [False], dtype=bool)
    return pd.Series(pd.arrays.IntegerArray(values[row_codes], ~known[row_codes]), index=index)


def _bool_per_code(per_unique: list[bool | None], row_codes: np.ndarray, index: pd.Index) -> pd.Series:
    """A boolean column from one value per distinct input (None: missing) and the rows' codes (-1: missing)."""
    values = np.array([bool(v) for v in per_unique] + [False], dtype=bool)
    known = np.array([v is not None for v in per_unique] + [False], dtype=bool)
    return pd.Series(pd.arrays.BooleanArray(values[row_codes], ~known[row_codes]), index=index)


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
    items = split_vector(cell)
    return items[0] if items else None


def _per_unique(s: pd.Series, fn: Any) -> np.ndarray:
    row_codes, uniques = codes(s)
    table = np.empty(len(uniques) + 1, dtype=object)
    for i, u in enumerate(uniques):  # one by one: a slice assignment would broadcast equal-length tuples
        table[i] = fn(str(u))
    table[-1] = None
    picked: np.ndarray = table[row_codes]
    return picked


def _ints(cell: str) -> tuple[int, ...]:
    return tuple(int(v) for v in split_vector(cell))


def _client_hello(raw: pd.DataFrame, out: pd.DataFrame) -> None:
    """ClientHello lists logged by Zeek's ``ssl-log-ext`` policy script -> ``ch_*`` columns."""
    if "client_version" not in raw.columns or "client_ciphers" not in raw.columns:
        return
    present = raw["client_version"].notna() & raw["client_ciphers"].notna()
    out["ch_version"] = raw["client_version"].where(present).astype("Int32")
    for src, dst in CH_LISTS.items():
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
                                                            for v in split_vector(c)))
        out["ch_alpn"] = pd.Series(alpn, index=raw.index, dtype=object).where(present, None)


def _safe(fn: Any) -> Any:
    def wrapped(cell: str) -> Any:
        try:
            return fn(cell)
        except ValueError:
            return None

    return wrapped


def conformed(out: pd.DataFrame) -> pd.DataFrame:
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
