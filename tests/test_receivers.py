"""Receivers Envoy pushes to: gRPC ALS, OTLP over gRPC and HTTP; real clients, hostile requests, back-pressure."""

from __future__ import annotations

import http.client
import importlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

grpc = pytest.importorskip("grpc", reason="pip install tlsdetect[receivers]")
pytest.importorskip("envoy.service.accesslog.v3.als_pb2", reason="xds-protos")

from envoy.service.accesslog.v3 import als_pb2  # noqa: E402

from tests.test_envoy_otlp import _request  # noqa: E402
from tlsdetect.stream.receivers import MAX_BODY, Receiver, ReceiverError, parse_receiver  # noqa: E402

SERVICE: Any = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")


@pytest.fixture
def als() -> Iterator[Receiver]:
    r = Receiver("envoy-als://127.0.0.1:0")
    yield r
    r.close()


def _lines(r: Receiver) -> list[dict[str, Any]]:
    """The records of what the receiver queued, as dicts of their non-empty cells."""
    batch = r.read(10_000)
    if batch is None:
        return []
    assert batch.records is not None
    assert batch.data == b""
    assert batch.lines == batch.records.num_rows
    return [{k: v for k, v in row.items() if v is not None} for row in batch.records.to_pylist()]


def _als_message(ports: range) -> Any:
    msg = als_pb2.StreamAccessLogsMessage()
    msg.identifier.log_name = "test"
    for port in ports:
        e = msg.tcp_logs.log_entry.add()
        e.common_properties.downstream_remote_address.socket_address.address = "192.0.2.9"
        e.common_properties.downstream_remote_address.socket_address.port_value = port
    return msg


def test_parse_receiver() -> None:
    assert parse_receiver("envoy-als://127.0.0.1:9001") == ("envoy-als", "127.0.0.1", 9001)
    assert parse_receiver("otlp+http://[::1]:4318") == ("otlp+http", "::1", 4318)
    assert parse_receiver("envoy:/var/log/a.log") is None
    for bad in ("otlp://127.0.0.1", "otlp://127.0.0.1:99999", "envoy-als://:9", "otlp://h:1/path"):
        with pytest.raises(ReceiverError):
            parse_receiver(bad)


def test_als_stream_delivers_every_entry_in_order(als: Receiver) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{als.port}") as ch:
        call = ch.stream_unary("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
                               request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
                               response_deserializer=als_pb2.StreamAccessLogsResponse.FromString)  # fmt: skip
        call(iter([_als_message(range(1000, 1003)), _als_message(range(1003, 1005))]), timeout=10)
    got = _lines(als)
    assert [g["DOWNSTREAM_REMOTE_ADDRESS"] for g in got] == [f"192.0.2.9:{p}" for p in range(1000, 1005)]
    assert als.received == 5
    assert als.read(10) is None  # read once
    assert als.line == 5


def test_als_garbage_is_refused_and_counted(als: Receiver) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{als.port}") as ch:
        call = ch.stream_unary("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)  # fmt: skip
        with pytest.raises(grpc.RpcError):
            call(iter([b"\xff\xff\xff\xff garbage"]), timeout=10)
    assert als.refused == 1
    assert als.received == 0
    assert any("not a valid protobuf" in e for e in als.events)


def test_otlp_grpc_export() -> None:
    r = Receiver("otlp://127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{r.port}") as ch:
            call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                  request_serializer=SERVICE.ExportLogsServiceRequest.SerializeToString,
                                  response_deserializer=SERVICE.ExportLogsServiceResponse.FromString)  # fmt: skip
            call(_request({"ja4": "t13d", "downstream_remote_address": "10.1.1.1:5"}), timeout=10)
        assert _lines(r) == [{"ja4": "t13d", "downstream_remote_address": "10.1.1.1:5"}]
    finally:
        r.close()


@pytest.fixture
def otlp_http() -> Iterator[Receiver]:
    r = Receiver("otlp+http://127.0.0.1:0", max_lines=4)
    yield r
    r.close()


def _post(r: Receiver, body: bytes, kind: str = "application/x-protobuf", path: str = "/v1/logs",
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    conn.request("POST", path, body=body, headers={"Content-Type": kind, **(headers or {})})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders())


def test_otlp_http_protobuf_and_json(otlp_http: Receiver) -> None:
    assert _post(otlp_http, _request({"sni": "a.example"}).SerializeToString())[0] == 200
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1765000000000000000", "traceId": "5b8efff798038103d269b633813fc60c",
         "attributes": [{"key": "sni", "value": {"stringValue": "b.example"}}]}]}]}]}  # fmt: skip
    assert _post(otlp_http, json.dumps(doc).encode(), "application/json; charset=utf-8")[0] == 200
    got = _lines(otlp_http)
    assert [g["sni"] for g in got] == ["a.example", "b.example"]
    assert got[1]["START_TIME"] == "2025-12-06T05:46:40.000Z"


@pytest.mark.parametrize(
    ("body", "kind", "path", "status"),
    [
        (b"{}", "application/json", "/v1/traces", 404),
        (b"\xff\xfe garbage", "application/x-protobuf", "/v1/logs", 400),
        (b"not json", "application/json", "/v1/logs", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "/v1/logs", 400),  # deeply nested
        (b'{"resourceLogs": 5}', "application/json", "/v1/logs", 400),
        (b"x", "text/plain", "/v1/logs", 415),
    ],
)
def test_otlp_http_hostile_requests(otlp_http: Receiver, body: bytes, kind: str, path: str, status: int) -> None:
    assert _post(otlp_http, body, kind, path)[0] == status
    assert otlp_http.received == 0


def test_otlp_http_refused_bodies_are_counted(otlp_http: Receiver) -> None:
    _post(otlp_http, b"\xff\xfe garbage")
    assert otlp_http.refused == 1
    assert any("could not be decoded" in e for e in otlp_http.events)


def test_otlp_http_lying_or_huge_length(otlp_http: Receiver) -> None:
    with socket.create_connection(("127.0.0.1", otlp_http.port), timeout=10) as s:
        s.sendall(f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        assert b" 413 " in s.recv(200)
    with socket.create_connection(("127.0.0.1", otlp_http.port), timeout=10) as s:
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert b" 413 " in s.recv(200)
    with socket.create_connection(("127.0.0.1", otlp_http.port), timeout=10) as s:
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 411 " in s.recv(200)


def test_otlp_http_back_pressure_is_503_with_retry_after(otlp_http: Receiver) -> None:
    body = _request({"sni": "a"}).SerializeToString()
    statuses = [_post(otlp_http, body) for _ in range(6)]
    assert [s for s, _ in statuses[:4]] == [200] * 4  # max_lines=4
    assert statuses[4][0] == 503
    assert statuses[4][1].get("Retry-After") == "1"
    assert len(_lines(otlp_http)) == 4  # the loop reads: room again
    assert _post(otlp_http, body)[0] == 200


def test_port_in_use_is_a_receiver_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ReceiverError, match="cannot listen"):
            Receiver(f"otlp+http://127.0.0.1:{port}")


def test_queued_entries_and_tables_keep_their_order_across_a_split(als: Receiver) -> None:
    """ALS entries are formatted per batch (Entries), OTLP/tagged records arrive as tables: a batch that
    mixes them, or cuts a message, keeps every record once and in order."""
    import numpy as np
    import pyarrow as pa

    from tlsdetect.readers.envoy.als import Entries

    def entries(first_port: int, n: int) -> Entries:  # what the compiled walk queues, built by hand
        ints = np.zeros((9, n), dtype=np.int64)
        ints[2] = np.arange(first_port, first_port + n)
        ints[6] = ints[8] = -1
        texts = [["10.0.0.1"] * n, *([[""] * n] * 7)]
        return Entries(n, True, ints, texts)

    table = pa.table({"DOWNSTREAM_REMOTE_ADDRESS": ["10.0.0.2:1", "10.0.0.2:2"]})
    for part in (entries(100, 3), table, entries(200, 2), entries(300, 4)):
        assert als.put(part)
    first, second = als.read(6), als.read(100)
    assert first is not None
    assert second is not None
    assert (first.lines, second.lines) == (6, 5)
    assert (first.first_line, second.first_line) == (1, 7)
    got = [a for b in (first, second) for a in b.records.column("DOWNSTREAM_REMOTE_ADDRESS").to_pylist()]
    assert got == ["10.0.0.1:100", "10.0.0.1:101", "10.0.0.1:102", "10.0.0.2:1", "10.0.0.2:2", "10.0.0.1:200",
                   "10.0.0.1:201", "10.0.0.1:300", "10.0.0.1:301", "10.0.0.1:302", "10.0.0.1:303"]  # fmt: skip
