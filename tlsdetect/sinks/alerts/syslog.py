"""RFC 5424 syslog alert sink: ``syslog+tcp://HOST:PORT`` (octet counting, RFC 6587), ``syslog+tls://`` and ``+udp``.

One message per alert::

    <PRI>1 TIMESTAMP HOSTNAME tlsdetect PROCID TLSALERT [tlsdetect@32473 id=".." verdict=".." ...] MSG

* PRI = facility * 8 + severity; facility ``local0`` unless ``?facility=NAME|NUMBER``; severity 3 (error)
  for ``intercepted``, 4 (warning) for ``suspicious``.
* TIMESTAMP is the connection's START_TIME (RFC 3339, UTC, milliseconds).
* the structured-data element ``tlsdetect@32473`` carries ``id`` (the alert id: a collector dedupes on it),
  ``verdict``, ``score``, ``src``, ``dst``, ``sni``, ``ja3``, ``ja4``, ``peer_issuer``, ``server_issuer``
  and ``reasons`` (codes); PARAM-VALUEs escape ``"``, ``\\`` and ``]`` as RFC 5424 6.3.3 says.
* MSG is one readable sentence (UTF-8, after a BOM as 6.4 asks).
* every value (PARAM-VALUE or in MSG) is first wire text made visible
  (:func:`tlsdetect.sinks.escape.escape_text`): no newline splits a message in a collector's file, no ESC or
  bidi override reaches whoever reads it.

TCP frames are ``LEN SP MESSAGE`` (octet counting), sent over one connection that is reopened when it
breaks; a batch counts as delivered once the kernel took all of it (syslog over TCP has no application
acknowledgement: at-least-once). UDP sends one datagram per message (no framing), cut at
``max_datagram`` bytes. ``syslog+tls://HOST:PORT`` (RFC 5425) sends the same frames over TLS, the collector's
certificate verified (:mod:`tlsdetect.sinks.alerts.syslog_tls` has the options).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tlsdetect.sinks.alerts.spool import SinkError
from tlsdetect.sinks.alerts.syslog_tls import client_context, refused_after_handshake, tls_options
from tlsdetect.sinks.escape import escape_text

__all__ = ["FACILITIES", "SyslogSink", "format_rfc5424", "frame_octet", "parse_octet_frames", "sd_escape"]

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
SEVERITY = {"intercepted": 3, "suspicious": 4}
SD_ID = "tlsdetect@32473"
BOM = "\ufeff"

_SD_PARAMS = (
    ("id", "id"), ("verdict", "verdict"), ("score", "score"), ("sni", "sni"), ("ja3", "ja3"), ("ja4", "ja4"),
    ("client_id", "client_id"), ("peer_issuer", "peer_issuer"), ("server_issuer", "server_issuer"),
)  # fmt: skip


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: ``\\``, ``"`` and ``]`` escaped with a backslash (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str | None, limit: int) -> str:
    """HOSTNAME/APP-NAME/PROCID/MSGID: printable US-ASCII without spaces, ``-`` when empty."""
    text = "".join(c for c in (value or "") if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def _timestamp(ts: Any) -> str:
    if isinstance(ts, str) and ts:
        try:
            when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            when = dt.datetime.now(dt.UTC)
    else:
        when = dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary(alert: Mapping[str, Any]) -> str:
    """One readable sentence about an alert (its values escaped: they came off the wire)."""
    codes = ", ".join(dict.fromkeys(str(r.get("code")) for r in alert.get("reasons") or () if isinstance(r, Mapping)))
    v = {k: escape_text(str(alert.get(k))) for k in ("verdict", "score", "client_ip", "client_port", "server_ip",
                                                      "server_port")}  # fmt: skip
    sni, client = (escape_text(str(alert.get(k) or "-")) for k in ("sni", "client_id"))
    return (
        f"TLS {v['verdict']} (score {v['score']}): {v['client_ip']}:{v['client_port']}"
        f" -> {v['server_ip']}:{v['server_port']} sni={sni} client={client} reasons: {escape_text(codes) or '-'}"
    )


def format_rfc5424(
    alert: Mapping[str, Any],
    *,
    facility: int = 16,
    hostname: str | None = None,
    app: str = "tlsdetect",
    msg: Callable[[Mapping[str, Any]], str] | None = None,
) -> str:
    """One RFC 5424 message (without transport framing)."""
    pri = facility * 8 + SEVERITY.get(str(alert.get("verdict")), 5)
    params = []
    for name, key in _SD_PARAMS:
        value = alert.get(key)
        if value is not None and value != "":
            params.append(f'{name}="{sd_escape(escape_text(str(value)))}"')
    src = f"{alert.get('client_ip')}:{alert.get('client_port')}"
    dst = f"{alert.get('server_ip')}:{alert.get('server_port')}"
    params += [f'src="{sd_escape(escape_text(src))}"', f'dst="{sd_escape(escape_text(dst))}"']
    codes = ",".join(dict.fromkeys(str(r.get("code")) for r in alert.get("reasons") or () if isinstance(r, Mapping)))
    if codes:
        params.append(f'reasons="{sd_escape(escape_text(codes))}"')
    sd = f"[{SD_ID} {' '.join(params)}]"
    host = _header_field(hostname if hostname is not None else socket.gethostname(), 255)
    text = (msg or summary)(alert)
    return (f"<{pri}>1 {_timestamp(alert.get('ts'))} {host} {_header_field(app, 48)} {os.getpid()} TLSALERT {sd} "
            f"{BOM}{text}")  # fmt: skip


def _cut(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of UTF-8, never ending inside a character (a collector would reject it)."""
    return data if len(data) <= limit else data[:limit].decode("utf-8", "ignore").encode("utf-8")


def frame_octet(message: str) -> bytes:
    """RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG`` (length in bytes)."""
    data = message.encode("utf-8")
    return str(len(data)).encode() + b" " + data


def parse_octet_frames(data: bytes) -> tuple[list[str], bytes]:
    """Split an octet-counted stream into messages; returns (messages, incomplete rest)."""
    out: list[str] = []
    pos = 0
    while True:
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        length_text = data[pos:sp]
        if not length_text.isdigit():
            raise ValueError(f"not an octet-counted frame at byte {pos}: {data[pos : pos + 20]!r}")
        end = sp + 1 + int(length_text)
        if end > len(data):
            break
        out.append(data[sp + 1 : end].decode("utf-8"))
        pos = end
    return out, data[pos:]


class SyslogSink:
    """RFC 5424 messages over TCP or TLS (octet counting) or UDP. ``spec``: ``syslog+tcp://host:port?facility=local0``.

    ``formatter`` makes the MSG part (CEF over syslog passes :func:`tlsdetect.sinks.alerts.cef.format_cef`).
    """

    def __init__(
        self,
        spec: str,
        *,
        formatter: Callable[[Mapping[str, Any]], str] | None = None,
        timeout: float = 5.0,
        max_datagram: int = 8192,
        accept_wait: float = 0.5,
    ) -> None:
        url = urlsplit(spec)
        scheme = url.scheme.split("+")[-1]
        if scheme not in ("tcp", "tls", "udp") or not url.hostname or not url.port:
            raise ValueError(f"syslog sink: expected syslog+tcp://, +tls:// or +udp://HOST:PORT, got {spec!r}")
        self.name = spec.split("?", maxsplit=1)[0]
        self.transport = scheme
        self.address = (url.hostname, url.port)
        query = parse_qs(url.query)
        self._tls: tuple[ssl.SSLContext, str] | None = None
        if scheme == "tls":
            options = tls_options(query, url.hostname)
            self._tls = (client_context(options), options.name)
        fac = query.get("facility", ["local0"])[0]
        self.facility = int(fac) if fac.isdigit() else FACILITIES[fac]
        self.formatter = formatter
        self.timeout = timeout
        self.max_datagram = max_datagram
        self.accept_wait = accept_wait
        self._sock: socket.socket | None = None
        self.sent = 0

    def _message(self, alert: Mapping[str, Any]) -> str:
        return format_rfc5424(alert, facility=self.facility, msg=self.formatter)

    def _connect(self) -> socket.socket:
        if self._sock is not None and self.transport != "udp" and self._peer_closed(self._sock):
            self._drop()
        if self._sock is None:
            try:
                if self.transport == "tcp":
                    self._sock = socket.create_connection(self.address, timeout=self.timeout)
                elif self._tls is not None:
                    raw = socket.create_connection(self.address, timeout=self.timeout)
                    try:
                        tls = self._tls[0].wrap_socket(raw, server_hostname=self._tls[1])
                    except (OSError, ssl.SSLError):
                        raw.close()
                        raise
                    refused = refused_after_handshake(tls, self.accept_wait)
                    if refused is not None:
                        with contextlib.suppress(OSError):
                            tls.close()
                        raise SinkError(f"{self.name}: {refused}")
                    self._sock = tls
                else:
                    family = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0][0]
                    self._sock = socket.socket(family, socket.SOCK_DGRAM)
                    self._sock.settimeout(self.timeout)
                    self._sock.connect(self.address)
            except OSError as exc:
                raise SinkError(f"{self.name}: cannot connect: {exc}") from exc
        return self._sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """A TCP peer that closed (or reset) shows as readable with nothing to read.

        Over TLS, readable may also be a TLS 1.3 session ticket (no application data): a non-blocking read
        that wants more says the connection is open; end of stream or a close_notify says it closed.
        """
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if not isinstance(sock, ssl.SSLSocket):
                return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            before = sock.gettimeout()
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""  # a collector sends nothing: a byte is ignored
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
            finally:
                sock.settimeout(before)
        except (OSError, ValueError):
            return True

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        if not alerts:
            return
        sock = self._connect()
        try:
            if self.transport != "udp":
                sock.sendall(b"".join(frame_octet(self._message(a)) for a in alerts))
            else:
                for a in alerts:
                    sock.send(_cut(self._message(a).encode("utf-8"), self.max_datagram))
        except OSError as exc:
            self._drop()
            raise SinkError(f"{self.name}: send failed: {exc}") from exc
        self.sent += len(alerts)

    def close(self) -> None:
        self._drop()
