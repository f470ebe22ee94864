"""The compiled OTLP walk gives the cells protobuf's path gives, and falls back (never guesses) otherwise."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2", reason="xds-protos")

from google.protobuf.message import DecodeError

from tlsdetect.readers.envoy.otlp_wire import compiled, decode_export, export_records
from tlsdetect.readers.envoy.records import Records

SERVICE: Any = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")

needs_c = pytest.mark.skipif(not compiled(), reason="the compiled walk is not built (no compiler)")


def _export(records: list[list[tuple[str, object]]], times: list[int], *, body: str | None = None) -> bytes:
    req = SERVICE.ExportLogsServiceRequest()
    resource = req.resource_logs.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "envoy"
    scopes = getattr(resource, "scope_logs", None)
    holder = (scopes if scopes is not None else resource.instrumentation_library_logs).add()
    logs = getattr(holder, "log_records", None)
    logs = logs if logs is not None else holder.logs
    for attrs, when in zip(records, times, strict=True):
        log = logs.add()
        log.time_unix_nano = when
        log.severity_text = "INFO"
        if body is not None:
            log.body.string_value = body
        for key, value in attrs:
            a = log.attributes.add()
            a.key = key
            if isinstance(value, int):
                a.value.int_value = value
            elif value is not None:
                a.value.string_value = str(value)
    return bytes(req.SerializeToString())


def _same(data: bytes) -> None:
    fast, slow = export_records(data).table(), export_records(data, fast=False).table()
    assert fast.column_names == slow.column_names
    assert fast.equals(slow)


_keys = st.sampled_from(["ja4", "ja3", "start_time", "downstream_remote_address", "", "sni", "é"])
_texts = st.text(max_size=12)
_records = st.lists(st.lists(st.tuples(_keys, _texts), max_size=6), min_size=0, max_size=5)


@needs_c
@settings(max_examples=100, deadline=None)
@given(_records, st.data())
def test_string_attributes_read_as_protobuf_reads_them(records: list[list[tuple[str, object]]], data: Any) -> None:
    times = data.draw(st.lists(st.sampled_from([0, 1, 1_765_000_000_123_456_789, 2**64 - 1]),
                               min_size=len(records), max_size=len(records)))  # fmt: skip
    raw = _export(records, times)  # type: ignore[arg-type]
    assert isinstance(decode_export(raw), Records)  # the common shape: the compiled walk reads it
    _same(raw)


@needs_c
def test_other_shapes_go_to_protobuf_with_the_same_cells() -> None:
    for raw in (_export([[("response_code", 200), ("sni", "a")]], [0]),  # a number
                _export([[("ja4", None)]], [0]),  # an unset value
                _export([[("sni", "a")]], [0], body='{"ja3": "x"}')):  # a body  # fmt: skip
        assert not isinstance(decode_export(raw), Records)
        _same(raw)


@needs_c
def test_a_key_twice_keeps_the_last_value() -> None:
    raw = _export([[("sni", "a"), ("sni", "b")], [("sni", "c")]], [0, 0])
    assert export_records(raw).dicts() == [{"sni": "b"}, {"sni": "c"}]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused_or_read_never_a_crash(raw: bytes) -> None:
    try:
        slow = export_records(raw, fast=False).table()
    except DecodeError:
        slow = None
    try:
        fast = export_records(raw).table()
    except DecodeError:
        assert slow is None  # refused by protobuf either way
        return
    if slow is not None:  # where protobuf reads it, the walk reads the same
        assert fast.equals(slow)


@settings(max_examples=200, deadline=None)
@given(_records, st.integers(min_value=1, max_value=60))
def test_a_cut_export_is_never_half_read(records: list[list[tuple[str, object]]], cut: int) -> None:
    raw = _export(records, [0] * len(records))  # type: ignore[arg-type]
    short = raw[: max(0, len(raw) - cut)]
    try:
        slow = export_records(short, fast=False).table()
    except DecodeError:
        slow = None
    try:
        fast = export_records(short).table()
    except DecodeError:
        assert slow is None
        return
    assert slow is not None
    assert fast.equals(slow)
