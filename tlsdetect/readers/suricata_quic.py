"""Suricata EVE ``quic`` events -> connections-table rows (``transport=quic``), one per flow.

Suricata (>= 7; ``rust/src/quic/logger.rs``) logs a ``quic`` event per QUIC transaction, and a QUIC
connection has several: the client's Initial (``quic.version``, ``sni``, ``ua``, ``ja3``, ``ja4``,
``extensions``) and the server's (``ja3s``), and more with nothing but ``version``. They are folded into
one row per ``flow_id`` (the 5-tuple when a build logs none):

========================================  =============================================
EVE ``quic``                              connections table
========================================  =============================================
``timestamp`` (earliest of the flow)      ``ts``
``src_*``/``dest_*`` of the client's      ``client_*``/``server_*`` (of the flow's first
event (the one with ``ja3``/``ja4``/       event when there is no client event)
``sni``)
``sni``                                   ``sni``
``ua`` (Google QUIC)                      ``user_agent``
``ja3.hash``/``ja3.string``               ``ja3``/``ja3_full`` (``ja3n`` derived later)
``ja3s.hash``/``ja3s.string``             ``ja3s``/``ja3s_full``
``ja4``                                   ``ja4``
``extensions[type=16].values[0]``         ``alpn`` (the first ALPN offered)
``version`` (``"1"``, ``"v2"``, hex)      extra column ``quic_version``
========================================  =============================================

The events folded into another's row are counted (``stats.reasons["quic-folded"]``), so the reader's
invariant still adds up. Suricata logs neither the cipher lists nor the signature algorithms of a QUIC
hello: JA4 is taken as logged and cannot be recomputed (``ja4_r``/``_o``/``_ro`` stay missing).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tlsdetect import schema

__all__ = ["FOLDED", "quic_frame"]

#: ``stats.reasons`` key of the quic events folded into their flow's row.
FOLDED = "quic-folded"
_EXT_ALPN = 16


def _text(obj: dict[str, Any], *path: str) -> str | None:
    for key in path[:-1]:
        sub = obj.get(key)
        obj = sub if isinstance(sub, dict) else {}
    value = obj.get(path[-1])
    return value if isinstance(value, str) and value else None


def _alpn(quic: dict[str, Any]) -> str | None:
    for ext in quic.get("extensions") or ():
        if isinstance(ext, dict) and ext.get("type") == _EXT_ALPN:
            values = ext.get("values")
            if isinstance(values, list) and values and isinstance(values[0], str):
                return values[0]
    return None


def _flow_key(r: dict[str, Any]) -> str:
    if r.get("flow_id") is not None:
        return f"id:{r['flow_id']}"
    ends = sorted([(str(r["src_ip"]), str(r["src_port"])), (str(r["dest_ip"]), str(r["dest_port"]))])
    return f"tuple:{ends}"


def quic_frame(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """One row per QUIC flow of the ``quic`` events (flow keys already checked); and how many were folded."""
    flows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        flows.setdefault(_flow_key(r), []).append(r)
    rows = []
    for events in flows.values():
        quics = [q if isinstance(q := e.get("quic"), dict) else {} for e in events]
        client = next((e for e, q in zip(events, quics, strict=True) if q.keys() & {"ja3", "ja4", "sni"}), events[0])
        cq = quics[events.index(client)]
        server_q = next((q for q in quics if isinstance(q.get("ja3s"), dict)), {})
        version = next((v for q in quics if (v := _text(q, "version")) is not None), None)
        rows.append({
            "ts": min(str(e["timestamp"]) for e in events),
            "conn_id": None if client.get("flow_id") is None else str(client["flow_id"]),
            "client_ip": str(client["src_ip"]), "client_port": client["src_port"],
            "server_ip": str(client["dest_ip"]), "server_port": client["dest_port"],
            "sni": _text(cq, "sni"), "user_agent": _text(cq, "ua"), "alpn": _alpn(cq),
            "ja3": _text(cq, "ja3", "hash"), "ja3_full": _text(cq, "ja3", "string"),
            "ja3s": _text(server_q, "ja3s", "hash"), "ja3s_full": _text(server_q, "ja3s", "string"),
            "ja4": _text(cq, "ja4"), "quic_version": version,
        })
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601", errors="coerce")
    df["source"] = "suricata"
    df["transport"] = "quic"
    has_fp = df[["ja3", "ja3s", "ja4"]].notna().any(axis=1)
    df["fingerprint_origin"] = ["suricata" if h else None for h in has_fp]
    df["quic_version"] = df["quic_version"].astype("string")
    return schema.conform(df), len(records) - len(rows)
