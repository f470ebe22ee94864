"""Splunk HTTP Event Collector alert sink: ``hec+https://HOST:PORT[/services/collector/event]?token=...``.

One POST per batch, the body the concatenated HEC events ``{"time", "host", "source", "sourcetype",
"index"?, "event"}`` whose ``event`` is the ECS document of :func:`tlsdetect.sinks.alerts.ecs.to_ecs` (so
``event.id`` is there for a search-time dedupe); ``Authorization: Splunk TOKEN``.

Options (query string): ``token`` (else the ``TLSDETECT_HEC_TOKEN`` environment variable, which keeps it
out of the process list), ``index``, ``sourcetype`` (``tlsdetect:alert``), ``source`` (``tlsdetect``),
``ca=PATH`` (a CA bundle to verify the collector with), ``verify=false`` (no certificate check: test
setups only). ``hec+http://`` is plain HTTP. A batch is delivered when HEC answers 2xx. What may pass (connection
refused, timeout, 5xx, 503 "server busy", 429 "too many requests", 408) is a :class:`SinkError` the spool
retries with backoff; any other 4xx (400 "incorrect index" or "invalid data format", 401/403 a missing
or wrong token, 404 a wrong path, 413 a batch too large) would be refused again on every retry and
block the stream behind it, so it is a :class:`SinkRejectedError`: the batch goes to the dead letters with
HEC's answer as the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tlsdetect.sinks.alerts.ecs import to_ecs
from tlsdetect.sinks.alerts.spool import SinkError, SinkRejectedError
from tlsdetect.sinks.files import utc_time

__all__ = ["HecSink", "hec_event"]

DEFAULT_PATH = "/services/collector/event"
#: 4xx answers worth retrying: HEC's back-pressure (429) and a request timeout (408).
RETRY_4XX = frozenset({408, 429})


def _epoch(ts: Any) -> float | None:
    when = utc_time(ts)
    return None if when is None else round(when.timestamp(), 3)


def hec_event(
    alert: Mapping[str, Any],
    *,
    host: str,
    source: str = "tlsdetect",
    sourcetype: str = "tlsdetect:alert",
    index: str | None = None,
) -> dict[str, Any]:
    """One HEC event envelope around the alert's ECS document."""
    out: dict[str, Any] = {"host": host, "source": source, "sourcetype": sourcetype, "event": to_ecs(alert)}
    when = _epoch(alert.get("ts"))
    if when is not None:
        out["time"] = when
    if index:
        out["index"] = index
    return out


class HecSink:
    def __init__(self, spec: str, *, timeout: float = 10.0) -> None:
        url = urlsplit(spec)
        scheme = url.scheme.split("+")[-1]
        if scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"HEC sink: expected hec+https://HOST:PORT/...?token=..., got {spec!r}")
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        token = q.get("token") or os.environ.get("TLSDETECT_HEC_TOKEN")
        if not token:
            raise ValueError("HEC sink: no token (add ?token=... or set TLSDETECT_HEC_TOKEN)")
        self.name = f"hec+{scheme}://{url.hostname}:{url.port or (443 if scheme == 'https' else 80)}{url.path}"
        self.scheme, self.host = scheme, url.hostname
        self.port = url.port or (443 if scheme == "https" else 80)
        self.path = url.path if url.path not in ("", "/") else DEFAULT_PATH
        self.token = token
        self.index = q.get("index")
        self.sourcetype = q.get("sourcetype", "tlsdetect:alert")
        self.source = q.get("source", "tlsdetect")
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        if scheme == "https":
            self.context = ssl.create_default_context(cafile=q.get("ca"))
            if q.get("verify", "true").lower() in ("false", "0", "no"):
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.hostname = socket.gethostname()
        self.sent = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        if not alerts:
            return
        body = "".join(
            json.dumps(hec_event(a, host=self.hostname, source=self.source, sourcetype=self.sourcetype,
                                 index=self.index), ensure_ascii=False, separators=(",", ":"), default=str)
            for a in alerts
        ).encode("utf-8")  # fmt: skip
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=body, headers={
                "Authorization": f"Splunk {self.token}", "Content-Type": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            text = resp.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise SinkError(f"{self.name}: {exc}") from exc
        finally:
            conn.close()
        if 400 <= resp.status < 500 and resp.status not in RETRY_4XX:
            raise SinkRejectedError(f"{self.name}: HTTP {resp.status}: {text[:200]}")
        if not 200 <= resp.status < 300:
            raise SinkError(f"{self.name}: HTTP {resp.status}: {text[:200]}")
        self.sent += len(alerts)

    def close(self) -> None:
        pass
