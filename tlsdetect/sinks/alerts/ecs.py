"""Alerts as Elastic Common Schema documents, and the JSON-lines alert sink (``jsonl:PATH|-``).

An *alert* (see :func:`tlsdetect.sinks.alerts.alerts.alerts_of`) is a flat dict of one scored connection whose
verdict is not ``ok``. :func:`to_ecs` maps it to an ECS 8.x document (nested objects):

==================================================  ==============================================
ECS field                                           from
==================================================  ==============================================
``@timestamp``                                      ``ts`` (the connection's START_TIME)
``event.id``                                        ``id`` (the alert id: stable per connection)
``event.kind`` / ``category`` / ``type``            ``alert`` / ``["network"]`` / ``["connection"]``
``event.action``, ``event.risk_score``              ``verdict``, ``score``
``event.severity``                                  73 intercepted, 47 suspicious
``event.reason``                                    the reason codes, comma-separated
``source.ip`` / ``source.port``                     ``client_ip`` / ``client_port``
``destination.ip`` / ``destination.port``           ``server_ip`` / ``server_port``
``tls.version`` / ``tls.version_protocol``          ``tls_version`` (``1.3`` / ``tls``; ``1.2`` / ``dtls``;
                                                    ``3.0`` / ``ssl``)
``tls.cipher``                                      ``sh_cipher``: the IANA name of the suite the server chose
                                                    (``TLS_AES_128_GCM_SHA256``), ``0x...`` for one not in
                                                    :data:`tlsdetect.wire.ciphers.IANA_NAMES`
``tls.resumed``                                     ``resumed`` (the session was resumed)
``tls.client.ja3``                                  ``ja3`` (as Envoy logs it, see readers.envoy)
``tls.client.server_name``                          ``sni``
``tls.client.x509.subject.distinguished_name``      ``peer_subject`` (client certificate)
``tls.client.x509.issuer.distinguished_name``       ``peer_issuer``
``tls.client.hash.sha256``                          ``peer_cert_sha256``
``tls.server.x509.subject.distinguished_name``      ``server_subject`` (upstream certificate)
``tls.server.x509.issuer.distinguished_name``       ``server_issuer``
``tls.server.hash.sha256``                          ``server_cert_sha256``
``tls.server.ja3s``                                 ``ja3s`` (of the ServerHello)
``user_agent.original``                             ``user_agent``
``log.file.path``                                   the access log the line came from
``observer.vendor`` / ``observer.product``          ``tlsdetect``
==================================================  ==============================================

Custom fields (ECS has no JA4 field; custom fields live under the ``tlsdetect`` namespace so they never
collide with a future ECS name): ``tlsdetect.ja4`` (JA4 of the ClientHello, Envoy's value),
``tlsdetect.client_id`` (SPIFFE ID, certificate subject or IP), ``tlsdetect.verdict``,
``tlsdetect.issuer_class``, ``tlsdetect.known_product``, ``tlsdetect.compared``,
``tlsdetect.server_flight_bytes`` (size of the server's first flight after its hello) and
``tlsdetect.reasons`` (the list of ``{code, detail, expected, observed}``).

Missing values are left out, never written as ``null``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tlsdetect.dotted import flatten
from tlsdetect.wire.ciphers import cipher_name

__all__ = ["ECS_VERSION", "JsonlSink", "flatten", "to_ecs"]

ECS_VERSION = "8.11.0"
SEVERITY = {"intercepted": 73, "suspicious": 47}
#: ``tls_version`` prefix -> ECS ``tls.version_protocol`` (DTLS before TLS: the longer prefix first).
_PROTOCOLS = (("DTLSv", "dtls"), ("TLSv", "tls"), ("SSLv", "ssl"))
#: (ECS dotted name, alert key)
_FIELDS: tuple[tuple[str, str], ...] = (
    ("@timestamp", "ts"),
    ("event.id", "id"),
    ("event.action", "verdict"),
    ("event.risk_score", "score"),
    ("source.ip", "client_ip"),
    ("source.port", "client_port"),
    ("destination.ip", "server_ip"),
    ("destination.port", "server_port"),
    ("tls.client.ja3", "ja3"),
    ("tls.client.server_name", "sni"),
    ("tls.client.x509.subject.distinguished_name", "peer_subject"),
    ("tls.client.x509.issuer.distinguished_name", "peer_issuer"),
    ("tls.client.hash.sha256", "peer_cert_sha256"),
    ("tls.server.x509.subject.distinguished_name", "server_subject"),
    ("tls.server.x509.issuer.distinguished_name", "server_issuer"),
    ("tls.server.hash.sha256", "server_cert_sha256"),
    ("tls.server.ja3s", "ja3s"),
    ("tls.resumed", "resumed"),
    ("user_agent.original", "user_agent"),
    ("log.file.path", "file"),
    ("tlsdetect.ja4", "ja4"),
    ("tlsdetect.client_id", "client_id"),
    ("tlsdetect.verdict", "verdict"),
    ("tlsdetect.issuer_class", "issuer_class"),
    ("tlsdetect.known_product", "known_product"),
    ("tlsdetect.compared", "compared"),
    ("tlsdetect.server_flight_bytes", "server_flight_bytes"),
    ("tlsdetect.reasons", "reasons"),
)


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".") if dotted != "@timestamp" else [dotted]
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def to_ecs(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert as a nested ECS document (missing values omitted)."""
    doc: dict[str, Any] = {
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "alert", "category": ["network"], "type": ["connection"], "module": "tlsdetect",
                  "dataset": "tlsdetect.alert"},
        "observer": {"vendor": "tlsdetect", "product": "tlsdetect", "type": "ids"},
    }  # fmt: skip
    for dotted, key in _FIELDS:
        value = alert.get(key)
        if value is not None and value != "":
            _put(doc, dotted, value)
    verdict = alert.get("verdict")
    if verdict in SEVERITY:
        doc["event"]["severity"] = SEVERITY[str(verdict)]
    codes = [str(r.get("code")) for r in alert.get("reasons") or () if isinstance(r, Mapping)]
    if codes:
        doc["event"]["reason"] = ", ".join(dict.fromkeys(codes))
    cipher = cipher_name(alert.get("sh_cipher"))
    if cipher is not None:
        _put(doc, "tls.cipher", cipher)
    version = alert.get("tls_version")
    if isinstance(version, str):
        for prefix, protocol in _PROTOCOLS:
            if version.startswith(prefix) and len(version) > len(prefix):
                number = version[len(prefix):]
                _put(doc, "tls.version", f"{number}.0" if number.isdigit() else number)
                _put(doc, "tls.version_protocol", protocol)
                break
    return doc


def _tail_ids(path: Path, tail_bytes: int) -> set[str]:
    """``event.id`` of the documents in the last ``tail_bytes`` of an existing JSONL file."""
    try:
        size = path.stat().st_size
    except OSError:
        return set()
    ids: set[str] = set()
    with path.open("rb") as fh:
        fh.seek(max(0, size - tail_bytes))
        data = fh.read()
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first one is cut
    for raw in lines:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("event"), dict) and isinstance(doc["event"].get("id"), str):
            ids.add(doc["event"]["id"])
    return ids


def _drop_partial_line(path: Path) -> None:
    """A document cut by a crash (no newline yet) was never acknowledged: cut it, it is sent again."""
    try:
        with path.open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            back = min(size, 1 << 20)
            fh.seek(size - back)
            cut = fh.read(back).rfind(b"\n")
            fh.truncate(size - back + cut + 1 if cut >= 0 else (0 if back == size else size))
    except FileNotFoundError:
        return


class JsonlSink:
    """ECS documents, one JSON object a line, to a file (appended, fsynced per batch) or ``-`` (stdout).

    A file sink can dedupe: at start it reads the alert ids in the file's last ``dedupe_tail_bytes``
    and skips an alert it already holds, so the replay of an unacknowledged batch after a crash
    writes no duplicate. (Stdout cannot; it is at-least-once.)
    """

    def __init__(self, target: str, *, dedupe_tail_bytes: int = 32 << 20) -> None:
        self.name = f"jsonl:{target}"
        self.path = None if target == "-" else Path(target)
        self._seen: set[str] = set()
        self._fh: IO[str]
        if self.path is None:
            self._fh = sys.stdout
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _drop_partial_line(self.path)
            self._seen = _tail_ids(self.path, dedupe_tail_bytes)
            self._fh = self.path.open("a", encoding="utf-8")
        self.sent = 0

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        lines = []
        for alert in alerts:
            aid = str(alert.get("id"))
            if aid in self._seen:
                continue
            if self.path is not None:
                self._seen.add(aid)
            lines.append(json.dumps(to_ecs(alert), ensure_ascii=False, separators=(",", ":"), default=str))
        if lines:
            self._fh.write("\n".join(lines) + "\n")
        self._fh.flush()
        if self.path is not None and lines:
            os.fsync(self._fh.fileno())
        self.sent += len(lines)
        if len(self._seen) > 1_000_000:  # only a replay right after start needs them
            self._seen.clear()

    def close(self) -> None:
        if self.path is not None:
            self._fh.close()
        else:
            self._fh.flush()


def write_jsonl(alerts: Iterable[Mapping[str, Any]], fh: IO[str]) -> None:
    """Write ECS documents to an open text stream (no dedupe)."""
    for alert in alerts:
        fh.write(json.dumps(to_ecs(alert), ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
