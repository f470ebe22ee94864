"""ArcSight Common Event Format (CEF:0) alerts: ``cef:PATH|-`` (a line per alert), ``cef+syslog+tcp://``/``+udp://``.

``CEF:0|tlsdetect|tlsdetect|VERSION|SIGNATURE|NAME|SEVERITY|EXTENSION`` where SIGNATURE is the strongest
reason code (``interception_ca``, ...), NAME says the verdict and SEVERITY is 9 (intercepted) or 6
(suspicious). Header fields escape ``\\`` and ``|``; extension values escape ``\\``, ``=`` and line breaks
(``\\n``, ``\\r``), as the CEF specification says. Before that, every value is wire text made visible
(:func:`tlsdetect.sinks.escape.escape_text`: control and invisible characters as ``\\xNN``/``\\uNNNN``),
so a CEF parser hands a SIEM that escaped text: no ESC or bidi override reaches a console or a viewer.

Extension keys: ``rt`` (ms since epoch), ``src``/``spt``/``dst``/``dpt``, ``externalId`` (the alert id),
``act`` (verdict), ``reason`` (reason codes), ``cn1`` (score), ``suser`` (client id), ``requestClientApplication``
(User-Agent), ``cs1`` JA4, ``cs2`` JA3, ``cs3`` SNI, ``cs4`` client-certificate issuer, ``cs5`` server-certificate
issuer, ``cs6`` client-certificate SHA-256, each with its ``csNLabel``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tlsdetect import __version__
from tlsdetect.sinks.escape import escape_text
from tlsdetect.sinks.files import utc_time

__all__ = ["CefFileSink", "cef_escape_extension", "cef_escape_header", "format_cef", "write_cef"]

SEVERITY = {"intercepted": 9, "suspicious": 6}
_CUSTOM = (
    ("cs1", "JA4", "ja4"), ("cs2", "JA3", "ja3"), ("cs3", "SNI", "sni"), ("cs4", "ClientCertIssuer", "peer_issuer"),
    ("cs5", "ServerCertIssuer", "server_issuer"), ("cs6", "ClientCertSHA256", "peer_cert_sha256"),
)  # fmt: skip


def cef_escape_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_escape_extension(value: str) -> str:
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def _epoch_ms(ts: Any) -> str | None:
    when = utc_time(ts)
    return None if when is None else str(int(when.timestamp() * 1000))


def format_cef(alert: Mapping[str, Any]) -> str:
    """One CEF:0 record (no syslog header)."""
    reasons = [r for r in alert.get("reasons") or () if isinstance(r, Mapping)]
    codes = list(dict.fromkeys(str(r.get("code")) for r in reasons))
    verdict = str(alert.get("verdict"))
    header = [
        "CEF:0", "tlsdetect", "tlsdetect", __version__, codes[0] if codes else "tls_anomaly",
        f"TLS interception {verdict}", str(SEVERITY.get(verdict, 3)),
    ]  # fmt: skip
    ext: list[tuple[str, Any]] = [
        ("rt", _epoch_ms(alert.get("ts"))), ("src", alert.get("client_ip")), ("spt", alert.get("client_port")),
        ("dst", alert.get("server_ip")), ("dpt", alert.get("server_port")), ("externalId", alert.get("id")),
        ("act", verdict), ("reason", ",".join(codes) or None), ("cn1", alert.get("score")), ("cn1Label", "score"),
        ("suser", alert.get("client_id")), ("requestClientApplication", alert.get("user_agent")),
    ]  # fmt: skip
    for key, label, field in _CUSTOM:
        value = alert.get(field)
        if value is not None and value != "":
            ext += [(key, value), (f"{key}Label", label)]
    body = " ".join(f"{k}={cef_escape_extension(escape_text(str(v)))}" for k, v in ext if v is not None and v != "")
    return "|".join(cef_escape_header(escape_text(h)) if i else h for i, h in enumerate(header)) + "|" + body


def write_cef(alerts: Iterable[Mapping[str, Any]], fh: IO[str]) -> None:
    """Write CEF records, one a line, to an open text stream (what :class:`CefFileSink` appends)."""
    for alert in alerts:
        fh.write(format_cef(alert) + "\n")


class CefFileSink:
    """CEF records, one a line, appended to a file (fsynced per batch) or written to stdout (``-``)."""

    def __init__(self, target: str) -> None:
        self.name = f"cef:{target}"
        self.path = None if target == "-" else Path(target)
        self._fh: IO[str] = sys.stdout if self.path is None else self.path.open("a", encoding="utf-8")
        self.sent = 0

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        import os

        if alerts:
            self._fh.write("".join(format_cef(a) + "\n" for a in alerts))
        self._fh.flush()
        if self.path is not None and alerts:
            os.fsync(self._fh.fileno())
        self.sent += len(alerts)

    def close(self) -> None:
        if self.path is not None:
            self._fh.close()
