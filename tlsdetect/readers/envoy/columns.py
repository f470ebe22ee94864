"""One block's raw string columns typed: addresses split, ports and timestamps parsed, bad rows out.

Arrow compute kernels over whole columns; a row with a bad address, port or timestamp goes to the
dead letters with its reason and is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.certs import certificates
from tlsdetect.readers.envoy.chunk import Chunk
from tlsdetect.readers.logs import DeadLetter

__all__ = ["block_frame"]

_ADDRESS_RE = (
    r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.\-]+)?)\](?::(?P<p6>[0-9]{1,5}))?"
    r"|(?P<ip4>(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"
    r"(?::(?P<p4>[0-9]{1,5}))?"
    r"|(?P<bare6>[0-9A-Fa-f]*:[0-9A-Fa-f:.]*))$"
)
#: Raw columns that go to the table as they are (the addresses and the timestamp are parsed).
_COPIED = (
    "sni", "ja3", "ja4", "peer_subject", "peer_issuer", "peer_cert_sha256", "peer_uri_san", "peer_serial",
    "peer_not_before", "peer_not_after", "server_subject",
    "server_issuer", "server_cert_sha256", "conn_id", "user_agent", "alpn", "tls_version", "tls_cipher", "client_id",
    "method", "response_code", "access_log_type",
)  # fmt: skip


def _null_dash(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.is_in(arr, pa.array(["-", ""])), pa.scalar(None, pa.string()), arr)


def _split_address(arr: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray[Any, np.dtype[np.bool_]]]:
    """(ip, port, bad mask) of ``ip:port`` / ``[v6]:port`` / bare ip texts; missing stays missing.

    A column of few distinct values (the server side: a listener's address) is matched once per value."""
    encoded = arr.dictionary_encode()
    if len(encoded.dictionary) * 4 <= len(arr):
        parts = pc.extract_regex(encoded.dictionary, _ADDRESS_RE).take(encoded.indices)
    else:
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


def block_frame(chunk: Chunk, file: Path, dead: DeadLetter, time_format: str | None) -> pd.DataFrame:
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
    for col in _COPIED:
        frame[col] = cols.get(col, empty)
    frame.update(out)
    frame.update(certificates(cols, frame, bad, chunk, file, dead))
    validity = {c: frame.pop(c) for c in _VALIDITY}
    table = pa.table({k: v.filter(keep) for k, v in frame.items()})
    df: pd.DataFrame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.int32(): pd.Int32Dtype()}.get)
    df["ts"] = ts[~bad].reset_index(drop=True)
    for col, arr in validity.items():
        when, when_bad = _parse_ts(arr, None)
        if (when_bad & ~bad).any():  # the row is kept: only its certificate's validity is unknown
            dead.stats.reasons["bad certificate validity"] += int((when_bad & ~bad).sum())
        df[col] = when[~bad].reset_index(drop=True)
    return df


#: The client certificate's validity (``%DOWNSTREAM_PEER_CERT_V_START%``/``_V_END%``, or from its PEM).
_VALIDITY = ("peer_not_before", "peer_not_after")
