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

__all__ = ["TLS_VERSIONS", "Entries", "address_text", "als_columns", "als_entries", "als_records", "entry_columns"]

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


def _addresses(hosts: list[str], ports: np.ndarray[Any, Any]) -> pa.Array:
    """``host:port`` / ``[v6]:port`` over a column; an empty host is missing."""
    host = pa.array(hosts, type=pa.string())
    bracketed = pc.binary_join_element_wise("[", host, "]", "")
    host = pc.if_else(pc.match_substring(host, ":"), bracketed, host)
    text = pc.binary_join_element_wise(host, pc.cast(pa.array(ports, type=pa.int64()), pa.string()), ":")
    return pc.if_else(pc.equal(pc.utf8_length(pa.array(hosts, type=pa.string())), 0), pa.scalar(None, pa.string()),
                      text)  # fmt: skip


def _timestamps(seconds: np.ndarray[Any, Any], nanos: np.ndarray[Any, Any]) -> pa.Array:
    """ISO 8601 UTC with milliseconds (``2026-12-07T10:00:00.123Z``) over a column; an unset time is missing."""
    sec = np.asarray(seconds, dtype=np.int64)
    ms = sec * 1000 + np.asarray(nanos, dtype=np.int64) // 1_000_000
    ts = pa.array(ms, type=pa.timestamp("ms", tz="UTC"), mask=(sec == 0) & (np.asarray(nanos) == 0))
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")


def _mapped(codes: np.ndarray[Any, Any], names: dict[int, str]) -> pa.Array:
    """Each code's name (missing when it has none), looked up once per distinct code."""
    arr = np.asarray(codes, dtype=np.int64)
    uniq, inverse = np.unique(arr, return_inverse=True)
    values = pa.array([names.get(int(u)) for u in uniq], type=pa.string())
    return values.take(pa.array(inverse.astype(np.int32)))


def _cipher_names(codes: np.ndarray[Any, Any]) -> pa.Array:
    """``%DOWNSTREAM_TLS_CIPHER%`` of each suite code (-1: none), once per distinct code."""
    names = {int(c): cipher_name(int(c)) or f"0x{int(c):04X}" for c in np.unique(codes) if c >= 0}
    return _mapped(codes, names)


_COMMON = ("START_TIME", "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS", "ACCESS_LOG_TYPE",
           "REQUESTED_SERVER_NAME", "DOWNSTREAM_TLS_VERSION", "DOWNSTREAM_TLS_CIPHER", "TLS_JA3_FINGERPRINT",
           "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_PEER_ISSUER", "DOWNSTREAM_PEER_URI_SAN")  # fmt: skip


def als_columns(message: Any) -> Records:
    """The records of one decoded ``StreamAccessLogsMessage`` (its HTTP or its TCP entries), in order, as columns.

    A serialized message without custom tags is read without the generated classes by
    :func:`tlsdetect.readers.envoy.als_wire.message_records`, into the same :func:`entry_columns`.
    """
    return als_entries(message).records()


def als_entries(message: Any) -> Entries:
    """The entries of one decoded ``StreamAccessLogsMessage``, read but not formatted (see :class:`Entries`)."""
    kind = message.WhichOneof("log_entries")
    entries = message.http_logs.log_entry if kind == "http_logs" else message.tcp_logs.log_entry if kind else []
    ints: list[list[int]] = [[] for _ in range(9)]
    secs, nanos, r_port, l_port, log_type, version, cipher, method, status = ints
    texts: list[list[str]] = [[] for _ in range(8)]
    r_host, l_host, sni, ja3, subject, issuer, uri_san, agent = texts
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
            status.append(response.response_code.value if response.HasField("response_code") else -1)
        else:  # a TCP entry has no request: the columns are left out (entry_columns)
            method.append(0)
            agent.append("")
            status.append(-1)
    tagged = [(i, {str(k): str(v) for k, v in custom.items()}) for i, custom in tags]
    return Entries(len(secs), http, np.array(ints, dtype=np.int64).reshape(9, -1), texts, tagged)


class Entries:
    """ALS entries read but not yet formatted (:func:`entry_columns`): a receiver queues these and formats
    each micro-batch once, since formatting costs ~60 Arrow kernel calls whatever the size, and Envoy sends
    small messages (its logger flushes every 16 KiB: ~40 entries)."""

    def __init__(self, n: int, http: bool, ints: np.ndarray[Any, Any], texts: list[list[str]],
                 tags: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.num_rows, self.http, self.ints, self.texts = n, http, ints, texts
        #: custom tags (literal, header, environment or metadata tags) by entry: put under their own names
        self.tags = tags or []

    @property
    def nbytes(self) -> int:
        return int(self.ints.nbytes) + sum(len(t) for col in self.texts for t in col)

    def slice(self, offset: int, length: int | None = None) -> Entries:
        end = self.num_rows if length is None else min(self.num_rows, offset + length)
        tags = [(i - offset, t) for i, t in self.tags if offset <= i < end]
        return Entries(max(0, end - offset), self.http, self.ints[:, offset:end], [c[offset:end] for c in self.texts],
                       tags)  # fmt: skip

    @staticmethod
    def concat(parts: list[Entries]) -> Entries:
        """Entries of one kind (HTTP or TCP) one after another."""
        if len(parts) == 1:
            return parts[0]
        texts = [[t for p in parts for t in p.texts[i]] for i in range(8)]
        starts = np.cumsum([0, *(p.num_rows for p in parts)])
        tags = [(int(at) + i, t) for p, at in zip(parts, starts, strict=False) for i, t in p.tags]
        return Entries(sum(p.num_rows for p in parts), parts[0].http, np.concatenate([p.ints for p in parts], axis=1),
                       texts, tags)  # fmt: skip

    def records(self) -> Records:
        rec = entry_columns(self.num_rows, self.http, self.ints, self.texts)
        for i, custom in self.tags:  # rare: literal, header, environment or metadata tags under their own names
            for name, value in custom.items():
                rec.put(i, name, value or None)
        return rec

    def table(self) -> pa.Table:
        return self.records().table()


def entry_columns(n: int, http: bool, ints: np.ndarray[Any, Any], texts: list[list[str]]) -> Records:
    """``n`` entries' records from their fields: ``ints`` (9 rows: start seconds and nanos, remote and local
    port, log type, TLS version, cipher suite or -1, request method, response code or -1) and ``texts``
    (remote and local host, SNI, JA3, peer subject and issuer, URI SANs joined by ",", user agent)."""
    from envoy.data.accesslog.v3 import accesslog_pb2

    rec = Records(n)
    if not n:
        return rec
    secs, nanos, r_port, l_port, log_type, version, cipher, method, status = ints
    r_host, l_host, sni, ja3, subject, issuer, uri_san, agent = texts
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
        text = pc.cast(pa.array(status, type=pa.int64()), pa.string())
        cols["RESPONSE_CODE"] = pc.if_else(pc.less(pa.array(status), 0), pa.scalar(None, pa.string()), text)
    rec.arrays = {k: _empty_null(v) for k, v in cols.items()}
    return rec


def _empty_null(arr: pa.Array) -> pa.Array:
    """An empty text is no value (what the file logger leaves out or prints as ``-``)."""
    return pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), arr)


def als_records(message: Any) -> list[dict[str, str]]:
    """The records of one ``StreamAccessLogsMessage`` as dicts of their non-empty values (tests, text)."""
    return als_columns(message).dicts()
