"""OTLP log records from Envoy's OpenTelemetry access logger read as Envoy JSON log records."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2", reason="xds-protos")

from tlsdetect.readers.envoy.otlp import any_value, json_names, otlp_json, otlp_records

SERVICE: Any = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
LOGS: Any = importlib.import_module("opentelemetry.proto.logs.v1.logs_pb2")
COMMON: Any = importlib.import_module("opentelemetry.proto.common.v1.common_pb2")
SCOPE, RECORDS = json_names(LOGS)


def _request(attrs: dict[str, object], body: str | None = None, ts_ns: int = 0) -> Any:
    req = SERVICE.ExportLogsServiceRequest()
    resource = req.resource_logs.add()
    scope = getattr(resource, "scope_logs", None)
    scope = scope if scope is not None else resource.instrumentation_library_logs
    holder = scope.add()
    records = getattr(holder, "log_records", None)
    records = records if records is not None else holder.logs
    log = records.add()
    log.time_unix_nano = ts_ns
    if body is not None:
        log.body.string_value = body
    for key, value in attrs.items():
        kv = log.attributes.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = str(value)
    return req


def test_attributes_are_the_record() -> None:
    req = _request({"ja4": "t13d1516h2_8daaf6152771_b186095e22b6", "response_code": 200, "tls": True})
    (rec,) = otlp_records(req)
    # cells are text, as a JSON log line's cells are read (200 -> "200", true -> "true")
    assert rec == {"ja4": "t13d1516h2_8daaf6152771_b186095e22b6", "response_code": "200", "tls": "true"}


def test_body_json_is_merged_and_attributes_win() -> None:
    req = _request({"sni": "b.example"}, body=json.dumps({"sni": "a.example", "ja3": "x" * 32}))
    (rec,) = otlp_records(req)
    assert rec == {"sni": "b.example", "ja3": "x" * 32}


def test_body_text_is_not_a_record_and_time_falls_back() -> None:
    ns = 1_765_000_000_123_456_789
    (rec,) = otlp_records(_request({"sni": "a"}, body="127.0.0.1:1 a", ts_ns=ns))
    assert rec == {"sni": "a", "START_TIME": "2025-12-06T05:46:40.123Z"}
    (with_start,) = otlp_records(_request({"start_time": "2026-01-01T00:00:00.000Z"}, ts_ns=ns))
    assert "START_TIME" not in with_start


def test_records_with_different_keys_keep_every_key() -> None:
    """Each record's own keys, in columns: a key the first record lacks is kept (and an empty string, or a
    record without attributes, is no value)."""
    req = _request({"sni": "a"})
    logs = req.resource_logs[0]
    holder = getattr(logs, "scope_logs", None) or logs.instrumentation_library_logs
    records = getattr(holder[0], "log_records", None) or holder[0].logs
    second = records.add()
    for key, value in (("ja4", "t13d"), ("sni", ""), ("START_TIME", "")):
        kv = second.attributes.add()
        kv.key, kv.value.string_value = key, value
    second.time_unix_nano = 1_765_000_000_000_000_000
    records.add()
    assert otlp_records(req) == [{"sni": "a"}, {"ja4": "t13d", "START_TIME": "2025-12-06T05:46:40.000Z"}, {}]


def test_any_value_kinds() -> None:
    v = COMMON.AnyValue()
    assert any_value(v) is None
    v.bytes_value = b"\x01\xff"
    assert any_value(v) == "01ff"
    v = COMMON.AnyValue()
    v.array_value.values.add().int_value = 3
    v.array_value.values.add().string_value = "s"
    assert any_value(v) == [3, "s"]


def test_otlp_json_renames_to_the_module_names() -> None:
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "00ff", "attributes": [
        {"key": "sni", "value": {"stringValue": "a.example"}}]}]}]}]}  # fmt: skip
    out = otlp_json(doc, SCOPE, RECORDS)
    from google.protobuf import json_format

    req = SERVICE.ExportLogsServiceRequest()
    json_format.ParseDict(out, req, ignore_unknown_fields=True)
    assert otlp_records(req) == [{"sni": "a.example"}]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceLogs", "scopeLogs", "logRecords", "logs", "traceId", "x"]), inner, max_size=3),
    max_leaves=20,
)  # fmt: skip


@given(_json)
def test_otlp_json_never_raises(doc: object) -> None:
    otlp_json(doc, SCOPE, RECORDS)
