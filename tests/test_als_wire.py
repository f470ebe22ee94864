"""The compiled ALS walk gives the cells the generated classes give; other shapes go to protobuf."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("envoy.service.accesslog.v3.als_pb2", reason="xds-protos")

from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from tlsdetect.readers.envoy.als import Entries
from tlsdetect.readers.envoy.als_wire import decode_message, message_records
from tlsdetect.readers.envoy.otlp_wire import compiled

needs_c = pytest.mark.skipif(not compiled(), reason="the compiled walk is not built (no compiler)")

_text = st.text(max_size=10)
_entry = st.fixed_dictionaries({
    "secs": st.sampled_from([0, 1, 1_765_000_000]), "nanos": st.sampled_from([0, 1_000_000, 999_999_999]),
    "host": st.sampled_from(["", "10.0.0.1", "::1", "fe80::1"]), "port": st.integers(0, 70000),
    "pipe": st.booleans(), "named": st.booleans(), "type": st.integers(0, 12), "version": st.integers(0, 5),
    "cipher": st.none() | st.integers(0, 0xFFFF), "sni": _text, "ja3": _text, "subject": _text,
    "sans": st.lists(st.tuples(st.booleans(), _text), max_size=3), "method": st.integers(0, 10),
    "agent": _text, "status": st.none() | st.integers(0, 600),
})  # fmt: skip


def _message(entries: list[dict[str, Any]], http: bool) -> bytes:
    msg = als_pb2.StreamAccessLogsMessage()
    msg.identifier.log_name = "test"
    logs = msg.http_logs.log_entry if http else msg.tcp_logs.log_entry
    for d in entries:
        e = logs.add()
        c = e.common_properties
        c.start_time.seconds, c.start_time.nanos = d["secs"], d["nanos"]
        c.downstream_remote_address.socket_address.address = d["host"]
        c.downstream_remote_address.socket_address.port_value = d["port"] % 65536
        if d["named"]:
            c.downstream_remote_address.socket_address.named_port = "https"
        if d["pipe"]:
            c.downstream_local_address.pipe.path = "/run/envoy.sock"
        else:
            c.downstream_local_address.socket_address.address = "127.0.0.1"
            c.downstream_local_address.socket_address.port_value = 443
        c.access_log_type = d["type"]
        t = c.tls_properties
        t.tls_version, t.tls_sni_hostname, t.ja3_fingerprint = d["version"], d["sni"], d["ja3"]
        if d["cipher"] is not None:
            t.tls_cipher_suite.value = d["cipher"]
        t.peer_certificate_properties.subject = d["subject"]
        for uri, value in d["sans"]:
            san = t.peer_certificate_properties.subject_alt_name.add()
            if uri:
                san.uri = value
            else:
                san.dns = value
        if http:
            e.request.request_method, e.request.user_agent = d["method"], d["agent"]
            if d["status"] is not None:
                e.response.response_code.value = d["status"]
    return bytes(msg.SerializeToString())


def _same(raw: bytes) -> None:
    fast, slow = message_records(raw).table(), message_records(raw, fast=False).table()
    assert fast.column_names == slow.column_names
    assert fast.equals(slow)


@needs_c
@settings(max_examples=100, deadline=None)
@given(st.lists(_entry, max_size=4), st.booleans())
def test_entries_read_as_the_generated_classes_read_them(entries: list[dict[str, Any]], http: bool) -> None:
    raw = _message(entries, http)
    assert isinstance(decode_message(raw), Entries)
    _same(raw)


@needs_c
def test_custom_tags_go_to_protobuf() -> None:
    msg = als_pb2.StreamAccessLogsMessage()
    e = msg.http_logs.log_entry.add()
    e.common_properties.custom_tags["ja4"] = "t13d1516h2_8daaf6152771_b186095e22b6"
    raw = bytes(msg.SerializeToString())
    assert not isinstance(decode_message(raw), Entries)
    assert message_records(raw).dicts()[0]["ja4"] == "t13d1516h2_8daaf6152771_b186095e22b6"


@needs_c
@given(st.lists(_entry, min_size=1, max_size=5), st.integers(0, 5), st.integers(0, 5))
@settings(max_examples=50, deadline=None)
def test_sliced_and_joined_entries_format_as_the_whole(entries: list[dict[str, Any]], a: int, b: int) -> None:
    got = decode_message(_message(entries, True))
    assert isinstance(got, Entries)
    cut = min(a, got.num_rows)
    joined = Entries.concat([got.slice(0, cut), got.slice(cut)])
    assert joined.num_rows == got.num_rows
    assert joined.table().equals(got.table())
    assert got.slice(cut, b).num_rows == min(b, got.num_rows - cut)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused_or_read_never_a_crash(raw: bytes) -> None:
    try:
        slow = message_records(raw, fast=False).table()
    except DecodeError:
        slow = None
    try:
        fast = message_records(raw).table()
    except DecodeError:
        assert slow is None
        return
    if slow is not None:
        assert fast.equals(slow)


def test_custom_tags_keep_their_entry_through_slices_and_joins() -> None:
    from tlsdetect.readers.envoy.als import als_entries

    msg = als_pb2.StreamAccessLogsMessage()
    for i in range(3):
        e = msg.http_logs.log_entry.add()
        e.common_properties.tls_properties.tls_sni_hostname = f"s{i}.test"
        if i != 1:
            e.common_properties.custom_tags["ja4"] = f"ja4-{i}"
    whole = als_entries(msg)
    assert [r.get("ja4") for r in whole.records().dicts()] == ["ja4-0", None, "ja4-2"]
    for cut in range(4):
        joined = Entries.concat([whole.slice(0, cut), whole.slice(cut)])
        assert joined.table().equals(whole.table())
    assert whole.slice(2).records().dicts() == [{"REQUESTED_SERVER_NAME": "s2.test", "ja4": "ja4-2"}]
