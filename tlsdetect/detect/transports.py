"""What the baseline learns per client and server: the transports (TCP, QUIC, DTLS) it reached it over.

Browsers reach most big sites over QUIC (HTTP/3), and an interception product that cannot read QUIC
blocks UDP/443 so the browser falls back to TLS over TCP, which it can inspect. The fallback is silent
for the user but visible on the wire: a client that always used QUIC to a server now reaches it only
over TCP. The evidence needs the baseline to know, per client and server, which transports it saw:
the ``transports`` table, ``(client_id, server, transport)`` with a count and first/last seen, folded
like the others (counts add).

A server is its name (``sni``, lowercase), else its address without the port: QUIC and TCP reach one
server on the same name (UDP/443 and TCP/443), and a port would part them. Grouped once over the rows
(pandas ``groupby``), no Python per row.
"""

from __future__ import annotations

import pandas as pd

from tlsdetect.detect.columns import text_column

__all__ = ["learn_transports", "server_keys"]


def server_keys(df: pd.DataFrame) -> pd.Series:
    """Per row: the server name in lowercase, else the server address (string; missing when neither)."""
    sni = text_column(df, "sni").astype("string").str.lower().reset_index(drop=True)
    ip = text_column(df, "server_ip").astype("string").reset_index(drop=True)
    return sni.where(sni.notna() & (sni != ""), ip)


def learn_transports(df: pd.DataFrame, cid: pd.Series, ts: pd.Series) -> pd.DataFrame:
    """The baseline's ``transports`` rows: per client and server, each transport with its connections and
    first and last seen. Rows without a client, a server or a transport are left out."""
    frame = pd.DataFrame({
        "client_id": cid.astype("string").reset_index(drop=True),
        "server": server_keys(df),
        "transport": text_column(df, "transport").astype("string").str.lower().reset_index(drop=True),
        "ts": ts.reset_index(drop=True),
    })
    frame = frame[frame[["client_id", "server", "transport"]].notna().all(axis=1).to_numpy(dtype=bool)]
    g = frame.groupby(["client_id", "server", "transport"], sort=False, observed=True)
    out = g.size().rename("count").to_frame()
    out["first_seen"] = g["ts"].min()
    out["last_seen"] = g["ts"].max()
    return out.reset_index()
