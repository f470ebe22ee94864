"""Envoy's gRPC access-log service (ALS) entries as the records an Envoy JSON log line holds.

``envoy.access_loggers.http_grpc`` and ``tcp_grpc`` stream ``HTTPAccessLogEntry``/``TCPAccessLogEntry``
messages (``envoy.data.accesslog.v3``) instead of formatted lines. Each becomes a dict keyed by the Envoy
command operators (``DOWNSTREAM_REMOTE_ADDRESS``, ``TLS_JA3_FINGERPRINT``, ...), printed as the file
logger prints them, so the one Envoy mapping (:mod:`tlsdetect.readers.envoy.keys`) reads both: a file line
and an ALS entry of the same connection give the same row.

What the proto carries (Envoy 1.40, ``AccessLogCommon.tls_properties``): TLS version, cipher suite, SNI,
the peer certificate's subject, issuer and SANs, and JA3. It has **no JA4**, no certificate digest or
serial and no connection id: those columns are missing, never guessed. ``custom_tags`` (literal, header,
environment or metadata tags in the logger's ``common_config``) are passed through under their own names,
so a tag named ``ja4`` or ``client_id`` fills that column. For JA4 and certificate digests over the wire,
use the OpenTelemetry logger (:mod:`tlsdetect.readers.envoy.otlp`), whose attributes are formatter strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tlsdetect.wire.ciphers import cipher_name

__all__ = ["TLS_VERSIONS", "address_text", "als_records"]

#: ``TLSProperties.TLSVersion`` -> what ``%DOWNSTREAM_TLS_VERSION%`` prints.
TLS_VERSIONS = {1: "TLSv1", 2: "TLSv1.1", 3: "TLSv1.2", 4: "TLSv1.3"}
_METHODS = {1: "GET", 2: "HEAD", 3: "POST", 4: "PUT", 5: "DELETE", 6: "CONNECT", 7: "OPTIONS", 8: "TRACE",
            9: "PATCH"}  # fmt: skip


def address_text(address: Any) -> str | None:
    """An ``envoy.config.core.v3.Address`` as ``%DOWNSTREAM_REMOTE_ADDRESS%`` prints it (``[v6]:port``)."""
    if address is None or not address.HasField("socket_address"):
        return None
    sock = address.socket_address
    host = str(sock.address)
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{int(sock.port_value)}"


def _timestamp(ts: Any) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    when = dt.datetime.fromtimestamp(ts.seconds, dt.UTC) + dt.timedelta(microseconds=ts.nanos // 1000)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _common(common: Any, type_names: dict[int, str]) -> dict[str, object]:
    rec: dict[str, object] = {}

    def put(key: str, value: object) -> None:
        if value is not None and value != "":
            rec[key] = value

    put("START_TIME", _timestamp(common.start_time))
    put("DOWNSTREAM_REMOTE_ADDRESS", address_text(common.downstream_remote_address))
    put("DOWNSTREAM_LOCAL_ADDRESS", address_text(common.downstream_local_address))
    put("ACCESS_LOG_TYPE", type_names.get(int(common.access_log_type)))
    if common.HasField("tls_properties"):
        tls = common.tls_properties
        put("REQUESTED_SERVER_NAME", tls.tls_sni_hostname)
        put("DOWNSTREAM_TLS_VERSION", TLS_VERSIONS.get(int(tls.tls_version)))
        if tls.HasField("tls_cipher_suite"):
            code = int(tls.tls_cipher_suite.value)
            put("DOWNSTREAM_TLS_CIPHER", cipher_name(code) or f"0x{code:04X}")
        put("TLS_JA3_FINGERPRINT", tls.ja3_fingerprint)
        if tls.HasField("peer_certificate_properties"):
            peer = tls.peer_certificate_properties
            put("DOWNSTREAM_PEER_SUBJECT", peer.subject)
            put("DOWNSTREAM_PEER_ISSUER", peer.issuer)
            uris = [san.uri for san in peer.subject_alt_name if san.WhichOneof("san") == "uri"]
            put("DOWNSTREAM_PEER_URI_SAN", ",".join(uris))
    for name, value in common.custom_tags.items():
        put(str(name), str(value))
    return rec


def als_records(message: Any) -> list[dict[str, object]]:
    """The records of one ``StreamAccessLogsMessage`` (its HTTP or its TCP entries), in order."""
    from envoy.data.accesslog.v3 import accesslog_pb2

    type_names = {v.number: v.name for v in accesslog_pb2.AccessLogType.DESCRIPTOR.values if v.number}
    out: list[dict[str, object]] = []
    kind = message.WhichOneof("log_entries")
    if kind == "http_logs":
        for entry in message.http_logs.log_entry:
            rec = _common(entry.common_properties, type_names)
            method = _METHODS.get(int(entry.request.request_method))
            if method:
                rec["REQ(:METHOD)"] = method
            if entry.request.user_agent:
                rec["REQ(USER-AGENT)"] = entry.request.user_agent
            if entry.response.HasField("response_code"):
                rec["RESPONSE_CODE"] = int(entry.response.response_code.value)
            out.append(rec)
    elif kind == "tcp_logs":
        out.extend(_common(entry.common_properties, type_names) for entry in message.tcp_logs.log_entry)
    return out
