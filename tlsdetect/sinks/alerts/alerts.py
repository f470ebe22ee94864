"""Alerts: the flagged rows of a scored table as plain, JSON-ready dicts, each with a stable id.

The stream's sinks and ``score -f ecs|cef`` (:func:`write_alerts`) render these.

Alert ids
---------
``id`` = the first 32 hex digits of SHA-256 over the *connection* as the line records it: START_TIME,
client ip:port, server ip:port, Envoy connection id, JA4, JA3, client-certificate SHA-256 and SNI.
It does not depend on the file, offset or rotation, so a replay after a crash (or of a rotated copy)
yields the same ids; a sink or collector dedupes on it (``event.id`` in ECS, ``id`` in the syslog
structured data, ``externalId`` in CEF).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import IO, Any

import pandas as pd

from tlsdetect.sinks import files
from tlsdetect.sinks.files import _plain

__all__ = ["ALERT_FIELDS", "ID_FIELDS", "alert_id", "alerts_of", "write_alerts"]

#: What the alert id hashes: the connection, never where it was read from.
ID_FIELDS = ("ts", "client_ip", "client_port", "server_ip", "server_port", "conn_id", "ja4", "ja3",
             "peer_cert_sha256", "sni")  # fmt: skip
#: The scored columns an alert carries (those present), in this order; then ``id`` and ``file``.
ALERT_FIELDS = (
    "ts", "client_ip", "client_port", "server_ip", "server_port", "conn_id", "sni", "tls_version", "ja3", "ja4",
    "ja3s", "sh_cipher", "resumed", "server_flight_bytes", "peer_subject", "peer_issuer", "peer_cert_sha256",
    "peer_uri_san", "server_subject",
    "server_issuer", "server_cert_sha256", "user_agent", "client_id", "issuer_class", "known_product", "score",
    "verdict", "reasons", "compared",
)  # fmt: skip


def alert_id(values: Sequence[Any]) -> str:
    """The stable id of one connection (see the module docstring)."""
    text = "\x1f".join("" if v is None else str(v) for v in values)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def alerts_of(scored: pd.DataFrame, file: str | None = None) -> list[dict[str, Any]]:
    """Alerts (plain dicts, JSON-ready) of the scored rows whose verdict is not ``ok``."""
    flagged = scored[(scored["verdict"].astype(str) != "ok").to_numpy()]
    if flagged.empty:
        return []
    cols = [c for c in ALERT_FIELDS if c in flagged.columns]
    out: list[dict[str, Any]] = []
    for row in flagged[cols].itertuples(index=False):
        rec = {c: _plain(v) for c, v in zip(cols, row, strict=True)}
        rec["id"] = alert_id([rec.get(k) for k in ID_FIELDS])
        if isinstance(rec.get("score"), float):
            rec["score"] = round(rec["score"], 1)
        if file is not None:
            rec["file"] = file
        out.append(rec)
    return out


def write_alerts(alerts: Sequence[Mapping[str, Any]], fmt: str, fh: IO[str]) -> None:
    """Alerts (:func:`alerts_of`) as the stream's sinks render them, one a line.

    ``fmt`` is ``ecs`` or ``cef``.

    The same rendering functions as ``stream --sink jsonl:``/``cef:``, so a batch run loads into the
    index the stream feeds, with the same ``event.id``/``externalId`` for the same connection.
    """
    if fmt == "ecs":
        from tlsdetect.sinks.alerts.ecs import write_jsonl

        write_jsonl(alerts, fh)
    elif fmt == "cef":
        from tlsdetect.sinks.alerts.cef import write_cef

        write_cef(alerts, fh)
    else:
        raise ValueError(f"unknown alert format {fmt!r}; choose one of {', '.join(files.ALERT_FORMATS)}")
    fh.flush()
