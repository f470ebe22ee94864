"""Live sources that push records: Envoy's gRPC access-log service and OpenTelemetry logs (gRPC and HTTP).

``--source envoy-als://HOST:PORT`` serves ``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs``;
``otlp://HOST:PORT`` serves ``opentelemetry.proto.collector.logs.v1.LogsService/Export`` over gRPC and
``otlp+http://HOST:PORT`` the same over HTTP (``POST /v1/logs``, protobuf or JSON). Each message becomes
one table of named string cells, a row per record (:mod:`tlsdetect.readers.envoy.als`,
:mod:`tlsdetect.readers.envoy.otlp`; no JSON round trip), handed to the stream's loop as a
:class:`~tlsdetect.stream.source.Source`; the JSON log's key map, scoring, sinks and metrics are the file's.

Delivery: gRPC streams and OTLP exports have **no offsets**, so there is no checkpoint to resume from.
Records are acknowledged to the sender when they are queued here, not when their alerts are delivered: a
crash or restart loses what was queued and not yet scored (at most ``max_lines`` records), and what Envoy
sends while the receiver is down is buffered by Envoy up to the logger's ``buffer_size_bytes`` (16 KiB by
default) and then dropped on Envoy's side (its ``access_logs.grpc_access_log.logs_dropped`` counter). When
scoring falls behind and the queue is full, a gRPC call waits (Envoy's buffer fills: back-pressure), and an
OTLP/HTTP export gets ``503`` with ``Retry-After`` (a collector retries it). Undecodable messages are counted
(:attr:`Receiver.events`) and refused to the sender, never half-read.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from tlsdetect.readers.envoy.als import Entries, als_entries
from tlsdetect.readers.envoy.records import Records
from tlsdetect.stream.checkpoint import Checkpoint
from tlsdetect.stream.follow import Batch

__all__ = ["RECEIVER_SCHEMES", "Receiver", "ReceiverError", "parse_receiver"]

log = logging.getLogger("tlsdetect.stream.loop")

RECEIVER_SCHEMES = ("envoy-als", "otlp", "otlp+http")
MAX_BODY = 16 << 20  # an OTLP/HTTP export larger than this is refused (413), never read into memory


def _otlp_protos() -> Any:
    """OpenTelemetry's generated logs-service module (from xds-protos; untyped, so typed Any here)."""
    return importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")


def _export_records(decoded: Any) -> Records:
    """An export's records: already read by the compiled walk, or mapped from protobuf's message."""
    from tlsdetect.readers.envoy.otlp import otlp_columns

    return decoded if isinstance(decoded, Records) else otlp_columns(decoded)


def _formatted(parts: list[pa.Table | Entries], failed: Callable[[int, Exception], None]) -> list[pa.Table]:
    """Queued parts as tables, each run of ALS entries of one kind formatted as one (see Entries); a run that
    cannot be formatted (a bug) is reported to ``failed`` with its size, never half-kept."""
    out: list[pa.Table] = []
    run: list[Entries] = []
    for part in [*parts, None]:
        if run and not (isinstance(part, Entries) and part.http == run[0].http):
            entries = Entries.concat(run)
            try:
                out.append(entries.table())
            except Exception as exc:  # a bug: counted and named by the receiver
                failed(entries.num_rows, exc)
            run = []
        if isinstance(part, Entries):
            run.append(part)
        elif part is not None:
            out.append(part)
    return out


class ReceiverError(ValueError):
    """A receiver spec that cannot be served (bad form, port in use)."""


def parse_receiver(spec: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a receiver spec, None when ``spec`` is not one; a bad one raises."""
    scheme, sep, _ = spec.partition("://")
    if not sep or scheme not in RECEIVER_SCHEMES:
        return None
    url = urlsplit(spec)
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.hostname or port is None or url.path not in ("", "/"):
        raise ReceiverError(f"{spec!r}: expected {scheme}://HOST:PORT")
    return scheme, url.hostname, port


class Receiver:
    """A push source: server threads queue each message's records as one table; the loop reads them as a
    :class:`~tlsdetect.stream.source.Source` without offsets (``key`` "")."""

    live = True
    ended = False
    key = ""

    def __init__(self, spec: str, *, max_lines: int = 100_000) -> None:
        parsed = parse_receiver(spec)
        if parsed is None:
            raise ReceiverError(f"{spec!r}: expected one of {', '.join(s + '://HOST:PORT' for s in RECEIVER_SCHEMES)}")
        self.scheme, self.host, port = parsed
        self.max_lines = max_lines
        self.events: list[str] = []
        self.offset = 0
        self.line = 0
        self.received = 0  # records queued
        self.refused = 0  # messages that could not be decoded
        self._tables: deque[pa.Table | Entries] = deque()  # ALS entries are formatted per batch (Entries)
        self._queued = 0  # records in _tables
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self.port = self._start(port)
        self.file = f"{self.scheme}://{self.host}:{self.port}"

    # -- the servers
    def _start(self, port: int) -> int:
        if self.scheme == "otlp+http":
            return self._start_http(port)
        import grpc

        server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="receiver"))
        if self.scheme == "envoy-als":
            from envoy.service.accesslog.v3 import als_pb2

            from tlsdetect.readers.envoy.als_wire import decode_message

            def stream_logs(requests: Iterable[Any], context: Any) -> Any:
                for message in requests:
                    self.put(message if isinstance(message, Entries) else self._read_entries(message, context))
                return als_pb2.StreamAccessLogsResponse()

            handler = grpc.stream_unary_rpc_method_handler(
                stream_logs, request_deserializer=self._decoder(decode_message),
                response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
            )  # fmt: skip
            service, method = "envoy.service.accesslog.v3.AccessLogService", "StreamAccessLogs"
        else:
            from tlsdetect.readers.envoy.otlp_wire import decode_export

            otlp = _otlp_protos()

            def export(request: Any, context: Any) -> Any:
                self.put(self._mapped(_export_records, request, context))
                return otlp.ExportLogsServiceResponse()

            handler = grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=self._decoder(decode_export),
                response_serializer=otlp.ExportLogsServiceResponse.SerializeToString,
            )  # fmt: skip
            service, method = "opentelemetry.proto.collector.logs.v1.LogsService", "Export"
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            raise ReceiverError(f"{self.scheme}://{self.host}:{port}: cannot listen: {exc}") from None
        if bound == 0:
            raise ReceiverError(f"{self.scheme}://{self.host}:{port}: cannot listen (in use?)")
        server.start()
        self._grpc = server
        return int(bound)

    def _mapped(self, mapping: Callable[[Any], Records], message: Any, context: Any) -> pa.Table:
        """The records of a message; a message the mapping cannot read is refused to the sender and counted."""
        try:
            return mapping(message).table()
        except Exception as exc:  # a bug or a message shape we do not know: the sender keeps it, we say so
            with self._cond:
                self.refused += 1
                self.events.append(f"{self.scheme}: a message could not be mapped ({type(exc).__name__}): refused")
            import grpc

            context.abort(grpc.StatusCode.INTERNAL, f"tlsdetect could not read this message: {type(exc).__name__}")
            raise  # abort raises; this keeps type checkers sure the function never returns here

    def _read_entries(self, message: Any, context: Any) -> Entries:
        """A decoded ALS message's entries (custom tags, or no compiled walk); one that cannot be read is refused
        to the sender and counted."""
        try:
            return als_entries(message)
        except Exception as exc:  # a bug or a message shape we do not know: the sender keeps it, we say so
            with self._cond:
                self.refused += 1
                self.events.append(f"{self.scheme}: a message could not be mapped ({type(exc).__name__}): refused")
            import grpc

            context.abort(grpc.StatusCode.INTERNAL, f"tlsdetect could not read this message: {type(exc).__name__}")
            raise

    def _decoder(self, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        def decode(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:  # protobuf's DecodeError and friends: refused to the sender, counted
                with self._cond:
                    self.refused += 1
                    self.events.append(f"{self.scheme}: a message that is not a valid protobuf was refused")
                raise

        return decode

    def _start_http(self, port: int) -> int:
        from google.protobuf import json_format

        from tlsdetect.readers.envoy.otlp import json_names, otlp_json
        from tlsdetect.readers.envoy.otlp_wire import decode_export

        otlp = _otlp_protos()
        names = json_names(importlib.import_module("opentelemetry.proto.logs.v1.logs_pb2"))

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # requests are not stderr news
                pass

            def _answer(self, code: int, body: bytes = b"", *, retry: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/v1/logs":
                    return self._answer(404, b'{"error": "POST /v1/logs"}')
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return self._answer(411, b'{"error": "Content-Length required"}')
                if not 0 <= length <= MAX_BODY:
                    return self._answer(413, b'{"error": "export too large"}')
                data = self.rfile.read(length)
                kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                try:
                    request = otlp.ExportLogsServiceRequest()
                    if kind == "application/json":
                        doc = otlp_json(json.loads(data.decode("utf-8")), *names)
                        json_format.ParseDict(doc, request, ignore_unknown_fields=True, max_recursion_depth=32)
                    elif kind == "application/x-protobuf":
                        request = decode_export(data)
                    else:
                        return self._answer(415, b'{"error": "application/x-protobuf or application/json"}')
                except Exception:  # a body that is not an export: refused, counted
                    with receiver._cond:
                        receiver.refused += 1
                        receiver.events.append("otlp+http: an export that could not be decoded was refused")
                    return self._answer(400, b'{"error": "not an OTLP logs export"}')
                try:
                    records = _export_records(request).table()
                except Exception:  # a bug or a shape we do not know: the sender keeps it, we say so
                    with receiver._cond:
                        receiver.refused += 1
                        receiver.events.append("otlp+http: an export could not be mapped: refused")
                    return self._answer(500, b'{"error": "tlsdetect could not read this export"}')
                if not receiver.put(records, wait=False):
                    return self._answer(503, b'{"error": "busy"}', retry=True)
                return self._answer(200, b"{}")

        try:
            self._http = ThreadingHTTPServer((self.host, port), Handler)
        except OSError as exc:
            raise ReceiverError(f"otlp+http://{self.host}:{port}: cannot listen: {exc.strerror or exc}") from None
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True, name="otlp-http").start()
        return int(self._http.server_address[1])

    # -- the queue
    def put(self, records: pa.Table | Entries, *, wait: bool = True) -> bool:
        """Queue one message's records; when full, wait for room (``wait``) or refuse the lot (False)."""
        n = records.num_rows
        if not n:
            return True
        with self._cond:
            while self._queued + n > self.max_lines and self._tables and not self._closed:
                if not wait:
                    return False
                self._cond.wait(0.5)
            self._tables.append(records)
            self._queued += n
            self._bytes += records.nbytes
            self.received += n
            self._cond.notify_all()
        return True

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(0, 0, "", self.offset, self.line)

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        """The records queued so far (at most ``max_lines``, a message split if need be); None when none yet."""
        with self._cond:
            if not self._tables or max_lines <= 0:
                return None
            taken: list[pa.Table | Entries] = []
            n = 0
            while self._tables and n < max_lines:
                table = self._tables.popleft()
                if n + table.num_rows > max_lines:
                    keep = max_lines - n
                    self._tables.appendleft(table.slice(keep))
                    table = table.slice(0, keep)
                taken.append(table)
                n += table.num_rows
            self._queued -= n
            size = sum(t.nbytes for t in taken)
            self._bytes = max(0, self._bytes - size)
            self._cond.notify_all()
        tables = _formatted(taken, self._unformatted)
        if not tables:
            return None
        records = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        first = self.line + 1
        self.offset += size
        self.line += n
        return Batch(b"", first, self.file, self.checkpoint, n, records=records)

    def _unformatted(self, n: int, exc: Exception) -> None:
        with self._cond:
            self.refused += 1
            self.events.append(f"{self.scheme}: {n} records could not be formatted ({type(exc).__name__}): lost")

    def lag_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
