"""ALS entries (``envoy.data.accesslog.v3``) read as the Envoy JSON log line of the same connection."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("envoy.data.accesslog.v3.accesslog_pb2", reason="xds-protos (pip install tlsdetect[receivers])")

from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2

from tlsdetect.readers.envoy import parse_envoy_lines
from tlsdetect.readers.envoy.als import address_text, als_columns, als_records
from tlsdetect.readers.envoy.read import parse_envoy_records


def _http_message() -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    entry = msg.http_logs.log_entry.add()
    common = entry.common_properties
    common.start_time.FromJsonString("2026-12-07T10:00:01.250Z")
    common.downstream_remote_address.socket_address.address = "2001:db8::7"
    common.downstream_remote_address.socket_address.port_value = 50123
    common.downstream_local_address.socket_address.address = "10.0.0.5"
    common.downstream_local_address.socket_address.port_value = 443
    common.access_log_type = accesslog_pb2.AccessLogType.DownstreamEnd
    tls = common.tls_properties
    tls.tls_version = accesslog_pb2.TLSProperties.TLSv1_2
    tls.tls_cipher_suite.value = 0xC02F
    tls.tls_sni_hostname = "api.example"
    tls.ja3_fingerprint = "0149f47eabf9a20d0893e2a44e5a6323"
    tls.peer_certificate_properties.subject = "CN=payments,O=corp"
    tls.peer_certificate_properties.issuer = "CN=corp mesh CA,O=corp"
    san = tls.peer_certificate_properties.subject_alt_name.add()
    san.uri = "spiffe://corp/ns/pay/sa/payments"
    common.custom_tags["ja4"] = "t13d1516h2_8daaf6152771_b186095e22b6"
    entry.request.request_method = 1  # GET
    entry.request.user_agent = "curl/8.5.0"
    entry.response.response_code.value = 200
    tcp = msg.tcp_logs  # a message carries one kind: this one is HTTP
    assert not tcp.log_entry
    return msg


def test_http_entry_maps_to_operator_keys() -> None:
    (rec,) = als_records(_http_message())
    assert rec["DOWNSTREAM_REMOTE_ADDRESS"] == "[2001:db8::7]:50123"
    assert rec["DOWNSTREAM_LOCAL_ADDRESS"] == "10.0.0.5:443"
    assert rec["DOWNSTREAM_TLS_VERSION"] == "TLSv1.2"
    assert rec["DOWNSTREAM_TLS_CIPHER"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert rec["START_TIME"] == "2026-12-07T10:00:01.250Z"
    assert rec["ACCESS_LOG_TYPE"] == "DownstreamEnd"
    assert rec["REQ(:METHOD)"] == "GET"
    assert rec["RESPONSE_CODE"] == "200"  # cells are text, as a JSON log line's are read
    assert rec["DOWNSTREAM_PEER_URI_SAN"] == "spiffe://corp/ns/pay/sa/payments"


def test_entry_reads_as_the_same_row_as_a_json_line() -> None:
    """The ALS record (in columns, as the receiver hands it) and the JSON line Envoy's file logger would write
    for it give the same row."""
    als = parse_envoy_records(als_columns(_http_message()).table(), source=Path("als"))
    line = {
        "start_time": "2026-12-07T10:00:01.250Z", "downstream_remote_address": "[2001:db8::7]:50123",
        "downstream_local_address": "10.0.0.5:443", "requested_server_name": "api.example",
        "downstream_tls_version": "TLSv1.2", "downstream_tls_cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ja3": "0149f47eabf9a20d0893e2a44e5a6323", "ja4": "t13d1516h2_8daaf6152771_b186095e22b6",
        "downstream_peer_subject": "CN=payments,O=corp", "downstream_peer_issuer": "CN=corp mesh CA,O=corp",
        "downstream_peer_uri_san": "spiffe://corp/ns/pay/sa/payments", "method": "GET", "user_agent": "curl/8.5.0",
        "response_code": 200, "access_log_type": "DownstreamEnd",
    }  # fmt: skip
    file = parse_envoy_lines(json.dumps(line).encode() + b"\n", source=Path("file"))
    assert len(als) == len(file) == 1
    cols = ["client_ip", "client_port", "server_ip", "server_port", "sni", "tls_version", "ja3", "ja4", "peer_subject",
            "peer_issuer", "user_agent", "ts"]  # fmt: skip
    for col in cols:
        assert str(als[col].iloc[0]) == str(file[col].iloc[0]), col
    assert str(als["client_ip"].iloc[0]) == "2001:db8::7"
    assert str(als["ja3"].iloc[0]) == "0149f47eabf9a20d0893e2a44e5a6323"
    pd.testing.assert_frame_equal(als, file, check_like=True)


def test_many_entries_in_columns_are_the_rows_of_their_lines() -> None:
    """A message of many entries (mixed kinds of value, repeated ciphers and versions, an unset time, one
    custom tag) reads as the JSON lines of the same records, row for row."""
    msg = als_pb2.StreamAccessLogsMessage()
    for i in range(40):
        e = msg.http_logs.log_entry.add()
        c = e.common_properties
        if i % 7:
            c.start_time.FromJsonString(f"2026-12-07T10:00:{i:02d}.{i * 3:03d}Z")
        c.downstream_remote_address.socket_address.address = "2001:db8::1" if i % 2 else f"10.0.0.{i}"
        c.downstream_remote_address.socket_address.port_value = 40000 + i
        c.tls_properties.tls_version = (i % 4) + 1
        c.tls_properties.tls_cipher_suite.value = (0xC02F, 0x1301, 0xFAFA)[i % 3]
        c.tls_properties.tls_sni_hostname = f"h{i % 5}.example" if i % 5 else ""
        if i == 13:
            c.custom_tags["ja4"] = "t13d1516h2_8daaf6152771_b186095e22b6"
        e.request.request_method = (i % 9) + 1
    rows = parse_envoy_records(als_columns(msg).table(), source=Path("als"))
    lines = b"".join(json.dumps(r).encode() + b"\n" for r in als_records(msg))
    pd.testing.assert_frame_equal(rows, parse_envoy_lines(lines, source=Path("als")), check_like=True)
    assert rows["ts"].isna().sum() == 6  # i = 0, 7, ... 35: no time, missing
    assert rows["ja4"].notna().sum() == 1


def test_tcp_entries_and_missing_tls() -> None:
    msg = als_pb2.StreamAccessLogsMessage()
    for port in (1000, 1001):
        e = msg.tcp_logs.log_entry.add()
        e.common_properties.downstream_remote_address.socket_address.address = "192.0.2.1"
        e.common_properties.downstream_remote_address.socket_address.port_value = port
    recs = als_records(msg)
    assert [r["DOWNSTREAM_REMOTE_ADDRESS"] for r in recs] == ["192.0.2.1:1000", "192.0.2.1:1001"]
    assert all("TLS_JA3_FINGERPRINT" not in r and "START_TIME" not in r for r in recs)  # missing, never guessed


def test_empty_message_and_addresses() -> None:
    assert als_records(als_pb2.StreamAccessLogsMessage()) == []
    assert address_text(accesslog_pb2.AccessLogCommon().downstream_remote_address) is None


def test_unknown_cipher_is_hex() -> None:
    msg = _http_message()
    msg.http_logs.log_entry[0].common_properties.tls_properties.tls_cipher_suite.value = 0xFAFA
    (rec,) = als_records(msg)
    assert rec["DOWNSTREAM_TLS_CIPHER"] == "0xFAFA"
