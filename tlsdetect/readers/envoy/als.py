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

Speed: the entries' fields are read into one list per operator (the only per-entry Python: protobuf
attribute access), then timestamps, addresses, versions and ciphers are formatted over whole columns
(Arrow kernels; a cipher's name once per distinct code) into
:class:`~tlsdetect.readers.envoy.records.Records`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.records import Records
from tlsdetect.wire.ciphers import cipher_name

__all__ = ["TLS_VERSIONS", "address_text", "als_columns", "als_records"]

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


def _addresses(hosts: list[str], ports: list[int]) -> pa.Array:
    """``host:port`` / ``[v6]:port`` over a column; an empty host is missing."""
    host = pa.array(hosts, type=pa.string())
    bracketed = pc.binary_join_element_wise("[", host, "]", "")
    host = pc.if_else(pc.match_substring(host, ":"), bracketed, host)
    text = pc.binary_join_element_wise(host, pc.cast(pa.array(ports, type=pa.int64()), pa.string()), ":")
    return pc.if_else(pc.equal(pc.utf8_length(pa.array(hosts, type=pa.string())), 0), pa.scalar(None, pa.string()),
                      text)  # fmt: skip


def _timestamps(seconds: list[int], nanos: list[int]) -> pa.Array:
    """ISO 8601 UTC with milliseconds (``2026-12-07T10:00:00.123Z``) over a column; an unset time is missing."""
    sec = np.asarray(seconds, dtype=np.int64)
    ms = sec * 1000 + np.asarray(nanos, dtype=np.int64) // 1_000_000
    ts = pa.array(ms, type=pa.timestamp("ms", tz="UTC"), mask=(sec == 0) & (np.asarray(nanos) == 0))
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")


def _mapped(codes: list[int], names: dict[int, str]) -> pa.Array:
    """Each code's name (missing when it has none), looked up once per distinct code."""
    arr = np.asarray(codes, dtype=np.int64)
    uniq, inverse = np.unique(arr, return_inverse=True)
    values = pa.array([names.get(int(u)) for u in uniq], type=pa.string())
    return values.take(pa.array(inverse.astype(np.int32)))


def _cipher_names(codes: list[int]) -> pa.Array:
    """``%DOWNSTREAM_TLS_CIPHER%`` of each suite code (-1: none), once per distinct code."""
    names = {int(c): cipher_name(int(c)) or f"0x{int(c):04X}" for c in set(codes) if c >= 0}
    return _mapped(codes, names)


_COMMON = ("START_TIME", "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS", "ACCESS_LOG_TYPE",
           "REQUESTED_SERVER_NAME", "DOWNSTREAM_TLS_VERSION", "DOWNSTREAM_TLS_CIPHER", "TLS_JA3_FINGERPRINT",
           "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_PEER_ISSUER", "DOWNSTREAM_PEER_URI_SAN")  # fmt: skip


def als_columns(message: Any) -> Records:
    """The records of one ``StreamAccessLogsMessage`` (its HTTP or its TCP entries), in order, as columns."""
    from envoy.data.accesslog.v3 import accesslog_pb2

    kind = message.WhichOneof("log_entries")
    entries = message.http_logs.log_entry if kind == "http_logs" else message.tcp_logs.log_entry if kind else []
    secs: list[int] = []
    nanos: list[int] = []
    r_host: list[str] = []
    r_port: list[int] = []
    l_host: list[str] = []
    l_port: list[int] = []
    log_type: list[int] = []
    sni: list[str] = []
    version: list[int] = []
    cipher: list[int] = []
    ja3: list[str] = []
    subject: list[str] = []
    issuer: list[str] = []
    uri_san: list[str] = []
    method: list[int] = []
    agent: list[str] = []
    status: list[str | None] = []
    tags: list[tuple[int, Any]] = []
    http = kind == "http_logs"
    for i, entry in enumerate(entries):
        common = entry.common_properties
        start = common.start_time
        secs.append(start.seconds)
        nanos.append(start.nanos)
        sock = common.downstream_remote_address.socket_address
        r_host.append(sock.address)
        r_port.append(sock.port_value)
        sock = common.downstream_local_address.socket_address
        l_host.append(sock.address)
        l_port.append(sock.port_value)
        log_type.append(common.access_log_type)
        tls = common.tls_properties
        sni.append(tls.tls_sni_hostname)
        version.append(tls.tls_version)
        cipher.append(tls.tls_cipher_suite.value if tls.HasField("tls_cipher_suite") else -1)
        ja3.append(tls.ja3_fingerprint)
        peer = tls.peer_certificate_properties
        subject.append(peer.subject)
        issuer.append(peer.issuer)
        sans = peer.subject_alt_name
        uri_san.append(",".join(s.uri for s in sans if s.WhichOneof("san") == "uri") if len(sans) else "")
        if len(common.custom_tags):
            tags.append((i, common.custom_tags))
        if http:
            method.append(entry.request.request_method)
            agent.append(entry.request.user_agent)
            response = entry.response
            status.append(str(response.response_code.value) if response.HasField("response_code") else None)
    rec = Records(len(secs))
    if not rec.rows:
        return rec
    type_names = {v.number: v.name for v in accesslog_pb2.AccessLogType.DESCRIPTOR.values if v.number}
    cols: dict[str, pa.Array] = {
        "START_TIME": _timestamps(secs, nanos),
        "DOWNSTREAM_REMOTE_ADDRESS": _addresses(r_host, r_port),
        "DOWNSTREAM_LOCAL_ADDRESS": _addresses(l_host, l_port),
        "ACCESS_LOG_TYPE": _mapped(log_type, type_names),
        "REQUESTED_SERVER_NAME": pa.array(sni, type=pa.string()),
        "DOWNSTREAM_TLS_VERSION": _mapped(version, TLS_VERSIONS),
        "DOWNSTREAM_TLS_CIPHER": _cipher_names(cipher),
        "TLS_JA3_FINGERPRINT": pa.array(ja3, type=pa.string()),
        "DOWNSTREAM_PEER_SUBJECT": pa.array(subject, type=pa.string()),
        "DOWNSTREAM_PEER_ISSUER": pa.array(issuer, type=pa.string()),
        "DOWNSTREAM_PEER_URI_SAN": pa.array(uri_san, type=pa.string()),
    }
    if http:
        cols["REQ(:METHOD)"] = _mapped(method, _METHODS)
        cols["REQ(USER-AGENT)"] = pa.array(agent, type=pa.string())
        cols["RESPONSE_CODE"] = pa.array(status, type=pa.string())
    rec.arrays = {k: _empty_null(v) for k, v in cols.items()}
    for i, custom in tags:  # rare: literal, header, environment or metadata tags under their own names
        for name, value in custom.items():
            rec.put(i, str(name), str(value) or None)
    return rec


def _empty_null(arr: pa.Array) -> pa.Array:
    """An empty text is no value (what the file logger leaves out or prints as ``-``)."""
    return pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), arr)


def als_records(message: Any) -> list[dict[str, str]]:
    """The records of one ``StreamAccessLogsMessage`` as dicts of their non-empty values (tests, text)."""
    return als_columns(message).dicts()
