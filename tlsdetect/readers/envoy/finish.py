"""The rows of all blocks made connections-table rows: derived columns, optional collapse, schema order.

The server's side Envoy logs for the downstream handshake (Envoy is the server there):
``%DOWNSTREAM_TLS_CIPHER%`` (the OpenSSL name) -> ``sh_cipher`` (IANA number), TLS 1.3 in
``%DOWNSTREAM_TLS_VERSION%`` -> ``sh_selected_version``.

``envoy_line`` tells HTTP lines from listener lines; ``client_id`` is the first ``spiffe://`` URI of
the peer's URI SAN, else the peer subject, else the client IP. With ``collapse`` all lines of one
connection (same ``conn_id`` and 4-tuple: Envoy restarts its ids) become one row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tlsdetect.schema import COLUMNS, conform, null_categories
from tlsdetect.wire.ciphers import cipher_numbers

__all__ = ["finish"]

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
#: The ServerHello's supported_versions value, which only 1.3 sends.
_SELECTED = {"TLSv1.3": 0x0304}


def finish(df: pd.DataFrame, collapse: bool) -> pd.DataFrame:
    """Derived columns, collapse, schema order."""
    n = len(df)
    for col in ("peer_cert_sha256", "server_cert_sha256", "peer_serial"):  # hex in one spelling, whoever wrote it
        df[col] = df[col].str.replace(":", "", regex=False).str.lower()
    codes, uniques = pd.factorize(df["tls_version"].astype(object), use_na_sentinel=True)
    names = np.array([_TLS_VERSIONS.get(str(u), str(u)) for u in uniques] + [None], dtype=object)
    df["tls_version"] = pd.array(names[codes], dtype="string")
    selected = np.array([_SELECTED.get(str(n)) for n in names], dtype=object)[codes]
    df["sh_selected_version"] = pd.array(selected, dtype="Int32")
    df["sh_cipher"] = _cipher_column(df.pop("tls_cipher"))
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
    out: pd.DataFrame = conform(_fill_missing(df))
    return out


def _cipher_column(names: pd.Series) -> pd.Series:
    """OpenSSL/BoringSSL suite names -> IANA numbers, looked up once per distinct name; garbage -> missing."""
    codes, uniques = pd.factorize(names.astype(object), use_na_sentinel=True)
    numbers = np.array([*cipher_numbers(uniques), None], dtype=object)
    return pd.Series(pd.array(numbers[codes], dtype="Int32"), index=names.index)


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
