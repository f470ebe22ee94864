"""Zeek's quic.log (Zeek >= 6.1) joined to the ssl rows: the transport, the QUIC version, and QUIC-only rows.

Zeek's QUIC analyzer hands the decrypted CRYPTO frames to its TLS analyzer, so a QUIC connection has an
ssl.log row (with the FoxIO ja4 package, a ``q`` JA4 and a JA4S) and a quic.log row with the same ``uid``:
``version`` (``1``, ``quicv2``, a draft's name), ``client_initial_dcid``, ``client_scid``, ``server_scid``,
``server_name``, ``client_protocol`` (the first ALPN) and ``history``. This module:

* marks the ssl rows whose ``uid`` is in quic.log ``transport=quic`` (without the ja4 package or
  conn.log nothing else says so) and adds the ``quic_version`` column; fills a missing ``sni``/``alpn``
  from ``server_name``/``client_protocol``;
* makes a row of each quic.log record with no ssl row (ssl.log not kept, or the analyzer gave up on the
  hello): its addresses, name, ALPN and ``transport=quic``, no fingerprint. It still tells a baseline that
  this client reached this server over QUIC (:mod:`tlsdetect.detect.transports`).

quic.log shares ``version`` and ``server_name`` with ssl.log; before this reader knew it, a quic.log in a
Zeek folder was read as a second ssl.log. Joined by uid with one pandas merge, no Python per row.
"""

from __future__ import annotations

import pandas as pd

from tlsdetect import schema
from tlsdetect.readers.zeek.fields import column

__all__ = ["join_quic", "quic_rows"]


def quic_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """quic.log records (Zeek's field names, typed) as connections-table columns (plus ``quic_version``)."""
    n = len(raw)
    ts = raw["ts"] if "ts" in raw.columns else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    return pd.DataFrame({
        "ts": ts, "source": pd.array(["zeek"] * n, dtype="string"),
        "conn_id": column(raw, "uid").astype("string"),
        "client_ip": column(raw, "id.orig_h").astype("string"),
        "client_port": column(raw, "id.orig_p").astype("Int32"),
        "server_ip": column(raw, "id.resp_h").astype("string"),
        "server_port": column(raw, "id.resp_p").astype("Int32"),
        "transport": pd.array(["quic"] * n, dtype="string"),
        "sni": column(raw, "server_name").astype("string"),
        "alpn": column(raw, "client_protocol").astype("string"),
        "quic_version": column(raw, "version").astype("string"),
    }, index=raw.index).reset_index(drop=True)


def join_quic(out: pd.DataFrame, quic: pd.DataFrame) -> pd.DataFrame:
    """The ssl rows ``out`` with quic.log ``quic`` joined by uid, then the QUIC-only rows (conformed)."""
    rows = quic_rows(quic).drop_duplicates("conn_id", keep="first")
    rows = rows[rows["conn_id"].notna().to_numpy(dtype=bool)]
    right = rows[["conn_id", "quic_version", "sni", "alpn"]].rename(columns={"sni": "_q_sni", "alpn": "_q_alpn"})
    merged = out.merge(right, on="conn_id", how="left") if len(out) else out.assign(
        quic_version=pd.Series(dtype="string"), _q_sni=pd.Series(dtype="string"), _q_alpn=pd.Series(dtype="string"))
    seen = merged["quic_version"].notna().to_numpy(dtype=bool) | merged["_q_sni"].notna().to_numpy(dtype=bool)
    matched = merged["conn_id"].isin(rows["conn_id"]).to_numpy(dtype=bool) | seen
    if "transport" in merged.columns:
        merged["transport"] = merged["transport"].astype("string").mask(matched, "quic")
    for col, q in (("sni", "_q_sni"), ("alpn", "_q_alpn")):
        base = merged[col].astype("string") if col in merged.columns else pd.Series(pd.NA, index=merged.index,
                                                                                   dtype="string")
        merged[col] = base.fillna(merged[q])
    merged = schema.conform(merged.drop(columns=["_q_sni", "_q_alpn"]))
    only = rows[~rows["conn_id"].isin(out["conn_id"] if len(out) else pd.Series(dtype="string")).to_numpy()]
    if len(only) == 0:
        return merged
    return schema.concat([merged, schema.conform(only)])
