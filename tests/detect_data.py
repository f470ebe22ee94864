"""Connections tables for the detection tests, built from the project's own captures (real hellos).

Each stack of ``pcaps/`` (openssl, curl, python, gnutls, node, java; TLS 1.2 and 1.3) becomes one
client with its own address, repeating its real hello over time: a population as stable as a
fleet of servers, so every flagged row in a test is flagged for the reason the test planted.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.readers.inputs import Inputs

from .conftest import CLEAN_PCAPS

HELLO_COLUMNS = [
    "ja3", "ja3_full", "ja3n", "ja4", "ja4_r", "ja4_o", "ja4_ro", "fingerprint_origin", "tls_version", "alpn",
    "ch_version", "ch_ciphers", "ch_extensions", "ch_groups", "ch_point_formats", "ch_sig_algs",
    "ch_supported_versions", "ch_alpn",
]


@cache
def captured() -> pd.DataFrame:
    """The project's clean captures as read by tlsdetect (15 real handshakes of 7 stacks)."""
    return Inputs([str(p) for p in CLEAN_PCAPS]).read_all()


def stack_of(df: pd.DataFrame) -> pd.Series:
    return df["sni"].str.split(".").str[0]


def population(repeat: int = 20, start: str = "2026-11-01") -> pd.DataFrame:
    """One client per (stack, TLS version) with ``repeat`` connections each, an hour apart."""
    base = captured()
    base = base[~stack_of(base).isin(["split", "proxy", "mtls"])].reset_index(drop=True)
    idx = np.tile(np.arange(len(base)), repeat)
    out = base.iloc[idx].reset_index(drop=True)
    out["client_ip"] = pd.array([f"10.0.0.{i + 1}" for i in idx], dtype="string")
    out["client_port"] = pd.array(40000 + np.arange(len(out)) % 20000, dtype="Int32")
    t0 = pd.Timestamp(start, tz="UTC")
    out["ts"] = t0 + pd.to_timedelta(np.repeat(np.arange(repeat), len(base)), unit="h") \
        + pd.to_timedelta(idx, unit="s")
    out["ts"] = out["ts"].astype("datetime64[ns, UTC]")
    return out


def later(df: pd.DataFrame, days: int = 30) -> pd.DataFrame:
    """The same traffic, ``days`` later (a held-out period)."""
    out = df.copy()
    out["ts"] = out["ts"] + pd.Timedelta(days=days)
    return out


def _like(col: pd.Series, values: np.ndarray) -> pd.Series:
    """``values`` in ``col``'s dtype; a categorical (fingerprint, certificate) gains the new values as categories."""
    if col.dtype == object:
        return pd.Series(values, index=col.index, dtype=object)
    if isinstance(col.dtype, pd.CategoricalDtype):
        return schema.as_category(pd.Series(values, index=col.index).astype("string"))
    return pd.Series(values, index=col.index).astype(col.dtype)


def with_hello_of(df: pd.DataFrame, rows: np.ndarray | list[int], donor: pd.Series) -> pd.DataFrame:
    """Rows ``rows`` now carry ``donor``'s ClientHello (lists and fingerprints): the client changed stack."""
    out = df.copy()
    for col in HELLO_COLUMNS:
        values = out[col].to_numpy(dtype=object, copy=True)
        for r in rows:
            values[r] = donor[col]
        out[col] = _like(out[col], values)
    return out


def with_issuer(df: pd.DataFrame, rows: np.ndarray | list[int], issuer: str, *, role: str = "server",
                akid: str | None = None) -> pd.DataFrame:
    out = df.copy()
    col = f"{role}_issuer"
    values = out[col].to_numpy(dtype=object, copy=True)
    values[list(rows)] = issuer
    out[col] = pd.array(values, dtype="string")
    if akid is not None:
        ak = out[f"{role}_issuer_akid"].to_numpy(dtype=object, copy=True)
        ak[list(rows)] = akid
        out[f"{role}_issuer_akid"] = pd.array(ak, dtype="string")
    return add_issuer_keys(out)


def codes(row: pd.Series) -> set[str]:
    """The reason codes of one scored row."""
    return {r["code"] for r in row["reasons"]}
