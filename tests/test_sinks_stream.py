"""Formats of the stream's alert sinks: ECS names, RFC 5424 + octet counting parsed back, CEF escaping, Splunk HEC."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tlsdetect.sinks.alerts.cef import CefFileSink, cef_escape_extension, cef_escape_header, format_cef
from tlsdetect.sinks.alerts.ecs import JsonlSink, flatten, to_ecs
from tlsdetect.sinks.alerts.hec import HecSink
from tlsdetect.sinks.alerts.spool import SinkError, SinkRejectedError, Spooled
from tlsdetect.sinks.alerts.syslog import SyslogSink, format_rfc5424, frame_octet, parse_octet_frames, sd_escape

ALERT: dict[str, Any] = {
    "id": "0123456789abcdef0123456789abcdef",
    "ts": "2026-11-26T17:08:00.484Z",
    "client_ip": "10.1.2.3",
    "client_port": 40000,
    "server_ip": "10.9.9.9",
    "server_port": 443,
    "conn_id": "7",
    "sni": "api.example.test",
    "tls_version": "TLSv1.3",
    "ja3": "0cce74b0d9b7f8528fb2181588d23793",
    "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4",
    "peer_subject": "CN=svc,O=Example",
    "peer_issuer": 'CN=mitmproxy,O=mitm|proxy "x"] = \\ y',
    "peer_cert_sha256": "ab" * 32,
    "server_issuer": "CN=Example Internal CA,O=Example",
    "server_subject": "CN=backend",
    "user_agent": "curl/8.5.0",
    "client_id": "spiffe://example/ns/a/sa/b",
    "issuer_class": "interception",
    "known_product": "mitmproxy",
    "score": 95.0,
    "verdict": "intercepted",
    "reasons": [{"code": "interception_ca", "detail": "a\nb", "expected": None, "observed": "CN=mitmproxy"}],
    "compared": "baseline",
    "file": "/var/log/envoy/access.log",
}

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+)"
    r" (?P<msgid>\S+) (?P<sd>\[.*?(?<!\\)\]) \ufeff(?P<msg>.*)$",
    re.S,
)


def sd_params(sd: str) -> dict[str, str]:
    """Parse back one SD-ELEMENT's PARAM-VALUEs (undoing RFC 5424 escaping)."""
    body = sd[1:-1]
    sd_id, _, rest = body.partition(" ")
    assert sd_id == "tlsdetect@32473"
    out = {}
    for m in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', rest):
        out[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
    return out


# ------------------------------------------------------------------------------------------------ ECS


def test_ecs_field_names() -> None:
    flat = flatten(to_ecs(ALERT))
    assert flat["tls.client.ja3"] == ALERT["ja3"]
    assert flat["tls.server.x509.issuer.distinguished_name"] == ALERT["server_issuer"]
    assert flat["tls.client.x509.issuer.distinguished_name"] == ALERT["peer_issuer"]
    assert flat["tls.client.x509.subject.distinguished_name"] == ALERT["peer_subject"]
    assert flat["tls.client.hash.sha256"] == ALERT["peer_cert_sha256"]
    assert flat["tls.client.server_name"] == "api.example.test"
    assert flat["tls.version"] == "1.3"
    assert flat["tls.version_protocol"] == "tls"
    assert flat["tlsdetect.ja4"] == ALERT["ja4"]  # the documented custom field
    assert flat["source.ip"] == "10.1.2.3"
    assert flat["source.port"] == 40000
    assert flat["destination.port"] == 443
    assert flat["event.id"] == ALERT["id"]
    assert flat["event.kind"] == "alert"
    assert flat["event.reason"] == "interception_ca"
    assert flat["@timestamp"] == ALERT["ts"]
    assert flat["user_agent.original"] == "curl/8.5.0"
    assert flat["tlsdetect.reasons"][0]["code"] == "interception_ca"
    assert "tls.client.ja4" not in flat


def test_ecs_omits_missing() -> None:
    flat = flatten(to_ecs({**ALERT, "ja3": None, "sni": "", "server_issuer": None}))
    assert "tls.client.ja3" not in flat
    assert "tls.client.server_name" not in flat
    assert not any(k.startswith("tls.server.x509.issuer") for k in flat)


def test_jsonl_sink_dedupes_on_restart(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    sink = JsonlSink(str(out))
    sink.send([ALERT, {**ALERT, "id": "b" * 32}])
    sink.close()
    again = JsonlSink(str(out))  # a replay after a crash
    again.send([{**ALERT, "id": "b" * 32}, {**ALERT, "id": "c" * 32}])
    again.close()
    ids = [json.loads(line)["event"]["id"] for line in out.read_text().splitlines()]
    assert ids == [ALERT["id"], "b" * 32, "c" * 32]


# --------------------------------------------------------------------------------------------- syslog


def test_rfc5424_format_parsed_back() -> None:
    msg = format_rfc5424(ALERT, facility=16, hostname="host one")
    m = RFC5424.match(msg)
    assert m is not None, msg
    assert int(m["pri"]) == 16 * 8 + 3  # local0.err for intercepted
    assert m["ts"] == "2026-11-26T17:08:00.484Z"
    assert m["host"] == "hostone"  # no spaces in HOSTNAME
    assert m["app"] == "tlsdetect"
    assert m["msgid"] == "TLSALERT"
    params = sd_params(m["sd"])
    assert params["id"] == ALERT["id"]
    assert params["peer_issuer"] == ALERT["peer_issuer"]  # '"', ']' and '\' escaped and recovered
    assert params["src"] == "10.1.2.3:40000"
    assert params["dst"] == "10.9.9.9:443"
    assert params["reasons"] == "interception_ca"
    assert params["ja4"] == ALERT["ja4"]
    assert "intercepted" in m["msg"]
    suspicious = RFC5424.match(format_rfc5424({**ALERT, "verdict": "suspicious"}, facility=4))
    assert suspicious is not None
    assert int(suspicious["pri"]) == 4 * 8 + 4


def test_sd_escape() -> None:
    assert sd_escape('a"b]c\\d') == 'a\\"b\\]c\\\\d'


def test_octet_counting_roundtrip() -> None:
    msgs = [format_rfc5424({**ALERT, "id": f"{i:032x}", "sni": "ü.example"}, hostname="h") for i in range(5)]
    stream = b"".join(frame_octet(m) for m in msgs)
    first = frame_octet(msgs[0])
    assert first.startswith(str(len(msgs[0].encode())).encode() + b" <")
    got, rest = parse_octet_frames(stream[:-3])
    assert got == msgs[:4]
    got2, rest2 = parse_octet_frames(rest + stream[-3:])
    assert got2 == msgs[4:]
    assert rest2 == b""
    with pytest.raises(ValueError, match="octet"):
        parse_octet_frames(b"x12 abc")


@pytest.fixture
def tcp_receiver() -> Iterator[tuple[int, list[bytes]]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    srv.close()


def test_syslog_tcp_sink_frames(tcp_receiver: tuple[int, list[bytes]]) -> None:
    port, got = tcp_receiver
    sink = SyslogSink(f"syslog+tcp://127.0.0.1:{port}?facility=local3")
    alerts = [{**ALERT, "id": f"{i:032x}"} for i in range(20)]
    sink.send(alerts)
    sink.close()
    import time

    end = time.monotonic() + 5
    msgs: list[str] = []
    while time.monotonic() < end:
        msgs, _ = parse_octet_frames(b"".join(got))
        if len(msgs) == 20:
            break
        time.sleep(0.05)
    assert [sd_params(RFC5424.match(m)["sd"])["id"] for m in msgs] == [a["id"] for a in alerts]  # type: ignore[index]
    assert all(m.startswith(f"<{19 * 8 + 3}>1 ") for m in msgs)


def test_syslog_udp_sink() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    sink = SyslogSink(f"syslog+udp://127.0.0.1:{rx.getsockname()[1]}")
    sink.send([ALERT, {**ALERT, "id": "f" * 32}])
    datagrams = [rx.recv(65535).decode() for _ in range(2)]
    rx.close()
    assert not datagrams[0][0].isdigit()  # no octet count over UDP
    assert [sd_params(RFC5424.match(d)["sd"])["id"] for d in datagrams] == [ALERT["id"], "f" * 32]  # type: ignore[index]


def test_syslog_tcp_down_is_sink_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = SyslogSink(f"syslog+tcp://127.0.0.1:{port}", timeout=1)
    with pytest.raises(SinkError):
        sink.send([ALERT])


# ------------------------------------------------------------------------------------------------ CEF


def test_cef_escaping() -> None:
    assert cef_escape_header("a|b\\c") == "a\\|b\\\\c"
    assert cef_escape_extension("a=b\\c\nd\re") == "a\\=b\\\\c\\nd\\re"
    rec = format_cef({**ALERT, "reasons": [{"code": "known|bad"}], "sni": "x=y\nz"})
    header = re.split(r"(?<!\\)\|", rec)
    assert header[:4] == ["CEF:0", "tlsdetect", "tlsdetect", header[3]]
    assert header[4] == "known\\|bad"
    assert header[5] == "TLS interception intercepted"
    assert header[6] == "9"
    ext = "|".join(header[7:])  # pipes need no escape in the extension
    assert "\n" not in rec
    pairs = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", ext))
    assert pairs["cs3"] == "x\\=y\\nz"
    assert pairs["cs4"] == cef_escape_extension(ALERT["peer_issuer"])
    assert pairs["externalId"] == ALERT["id"]
    assert pairs["src"] == "10.1.2.3"
    assert pairs["spt"] == "40000"
    assert pairs["rt"] == str(int(dt.datetime(2026, 11, 26, 17, 8, 0, 484000, tzinfo=dt.UTC).timestamp() * 1000))
    assert pairs["cs1Label"] == "JA4"


def test_cef_file_sink(tmp_path: Path) -> None:
    sink = CefFileSink(str(tmp_path / "a.cef"))
    sink.send([ALERT])
    sink.close()
    assert (tmp_path / "a.cef").read_text().startswith("CEF:0|tlsdetect|")


# ------------------------------------------------------------------------------ batch writers (score)


def test_write_alerts_renders_as_the_stream_sinks_do(tmp_path: Path) -> None:
    """issue 14 item 8: ``score -f ecs``/``-f cef`` write what ``stream --sink jsonl:``/``cef:`` write."""
    import io

    from tlsdetect.sinks.files import ALERT_FORMATS, write_alerts

    other = {**ALERT, "id": "f" * 32, "verdict": "suspicious", "score": 40.0}
    streamed = {}
    for name, sink in (("ecs", JsonlSink(str(tmp_path / "a.jsonl"))), ("cef", CefFileSink(str(tmp_path / "a.cef")))):
        sink.send([ALERT, other])
        sink.close()
        streamed[name] = (tmp_path / ("a.jsonl" if name == "ecs" else "a.cef")).read_text(encoding="utf-8")
    for fmt in ALERT_FORMATS:
        buf = io.StringIO()
        write_alerts([ALERT, other], fmt, buf)
        assert buf.getvalue() == streamed[fmt]
    assert [json.loads(line)["event"]["id"] for line in streamed["ecs"].splitlines()] == [ALERT["id"], "f" * 32]
    with pytest.raises(ValueError, match="unknown alert format"):
        write_alerts([ALERT], "syslog", io.StringIO())


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s"])
def test_iso_utc_is_the_text_jsonl_writes(unit: str) -> None:
    """issue 14 item 9: CSV's vectorised ``ts`` text equals JSON lines' per value (ISO 8601 UTC, ``Z``)."""
    import pandas as pd

    from tlsdetect.sinks.files import _plain, iso_utc

    times = pd.Series(pd.to_datetime([
        "2016-01-28T18:37:10.545976Z", "2016-01-28T18:37:10Z", "2016-01-28T18:37:10.545976123Z",
        "2016-01-28T18:37:10.5Z", "1960-01-01T00:00:00.25Z", "1969-12-31T23:59:59.999999999Z", None,
    ], format="ISO8601", utc=True)).dt.as_unit("ns")
    times = times.dt.floor({"ns": "ns", "us": "us", "ms": "ms", "s": "s"}[unit]).dt.as_unit(unit)
    got = iso_utc(times).tolist()
    assert got == [_plain(t) for t in times]
    assert got[-1] is None
    assert all(t.endswith("Z") and " " not in t for t in got[:-1])


# ------------------------------------------------------------------------------------------------ HEC


def _pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (as scripts/envoy_logs.make_pki does, with an IP SAN)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tlsdetect HEC test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hec")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "hec.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "hec.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "ca.crt", d / "hec.crt", d / "hec.key"


class HecStub:
    """A real HTTPS server answering like Splunk HEC; keeps what it was sent."""

    def __init__(self, tmp: Path, token: str = "s3cret") -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.ca, crt, key = _pki(tmp)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stub.requests.append((self.path, dict(self.headers), body))
                ok = self.headers.get("Authorization") == f"Splunk {token}" and stub.status == 200
                status = stub.status if stub.status != 200 else (200 if ok else 403)
                reply = b'{"text":"Success","code":0}' if status == 200 else b'{"text":"Invalid token","code":4}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hec(tmp_path: Path) -> Iterator[HecStub]:
    stub = HecStub(tmp_path / "pki")
    yield stub
    stub.close()


def _events(body: bytes) -> list[dict[str, Any]]:
    dec = json.JSONDecoder()
    text, pos, out = body.decode(), 0, []
    while pos < len(text):
        obj, pos = dec.raw_decode(text, pos)
        out.append(obj)
    return out


def test_hec_payload_verified_with_ca(hec: HecStub) -> None:
    sink = HecSink(f"hec+https://127.0.0.1:{hec.port}?token=s3cret&index=sec&ca={hec.ca}")
    sink.send([ALERT, {**ALERT, "id": "e" * 32}])
    path, headers, body = hec.requests[0]
    assert path == "/services/collector/event"
    assert headers["Authorization"] == "Splunk s3cret"
    events = _events(body)
    assert [e["event"]["event"]["id"] for e in events] == [ALERT["id"], "e" * 32]
    assert events[0]["sourcetype"] == "tlsdetect:alert"
    assert events[0]["index"] == "sec"
    assert events[0]["time"] == pytest.approx(dt.datetime(2026, 11, 26, 17, 8, 0, 484000, tzinfo=dt.UTC).timestamp())
    assert events[0]["event"]["tls"]["client"]["ja3"] == ALERT["ja3"]
    assert sink.sent == 2


def test_hec_verify_false_and_errors(hec: HecStub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SinkError):  # the stub's CA is not trusted by default
        HecSink(f"hec+https://127.0.0.1:{hec.port}?token=s3cret").send([ALERT])
    monkeypatch.setenv("TLSDETECT_HEC_TOKEN", "s3cret")
    sink = HecSink(f"hec+https://127.0.0.1:{hec.port}/services/collector/event?verify=false")
    sink.send([ALERT])
    assert len(hec.requests) == 1
    with pytest.raises(SinkError, match="403"):
        HecSink(f"hec+https://127.0.0.1:{hec.port}?token=wrong&verify=false").send([ALERT])
    hec.status = 503
    with pytest.raises(SinkError, match="503"):
        sink.send([ALERT])


def test_hec_needs_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLSDETECT_HEC_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token"):
        HecSink("hec+https://127.0.0.1:8088")


class PlainHec:
    """A real plain-HTTP server on 127.0.0.1 answering every POST with the next status of ``statuses``
    (the last one repeats), with HEC's JSON bodies; keeps the status it answered each request with."""

    BODIES: ClassVar[dict[int, bytes]] = {
        200: b'{"text":"Success","code":0}', 400: b'{"text":"Incorrect index","code":7}',
        403: b'{"text":"Invalid token","code":4}', 429: b'{"text":"Too many requests","code":9}',
        503: b'{"text":"Server is busy","code":9}',
    }  # fmt: skip

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.answered: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        hec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = hec.statuses[min(len(hec.answered), len(hec.statuses) - 1)]
                hec.answered.append(status)
                hec.auth.append(self.headers.get("Authorization"))
                if status == 200:
                    hec.events.extend(_events(body))
                reply = hec.BODIES[status]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.spec = f"hec+http://127.0.0.1:{self.port}?token=t0ken"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "for_good"), [(403, True), (400, True), (429, False), (503, False)])
def test_hec_4xx_refused_for_good_429_5xx_retryable(status: int, for_good: bool) -> None:
    """issue 14 item 13: a 4xx other than 429 is a SinkRejectedError (dead letters), 429/5xx a SinkError (retry)."""
    hec = PlainHec(status)
    try:
        with pytest.raises(SinkError, match=f"HTTP {status}: .*{json.loads(PlainHec.BODIES[status])['text']}") as err:
            HecSink(hec.spec).send([ALERT])
    finally:
        hec.close()
    assert isinstance(err.value, SinkRejectedError) is for_good
    assert hec.answered == [status]


def test_hec_refused_batches_leave_the_spool(tmp_path: Path) -> None:
    """issue 14 item 13: behind the spool, a 403/400 batch is set aside with its reason (not retried, not
    spooled); a 503 or 429 batch is spooled and retried until HEC takes it; a spooled batch HEC then refuses
    for good leaves the spool too."""
    hec = PlainHec(403, 400, 503, 429, 200, 503, 400, 200)
    try:
        sp = Spooled(HecSink(hec.spec), tmp_path / "spool", backoff_min=0.0, backoff_max=0.0)
        sp.send([{**ALERT, "id": "1" * 32}])  # 403
        sp.send([{**ALERT, "id": "2" * 32}])  # 400
        assert [(len(a), r.split(": ", 1)[1][:8]) for a, r in sp.take_rejected()] == [(1, "HTTP 403"), (1, "HTTP 400")]
        assert sp.spooled_batches == 0
        assert not sp.down
        sp.send([{**ALERT, "id": "3" * 32}])  # 503: spooled
        assert sp.spooled_batches == 1
        assert sp.down
        assert sp.drain(force=True) is False  # 429: still spooled
        assert sp.spooled_batches == 1
        assert sp.drain(force=True) is True  # 200
        sp.send([{**ALERT, "id": "4" * 32}])  # 503: spooled
        assert sp.drain(force=True) is True  # 400: refused for good, out of the spool
        sp.send([{**ALERT, "id": "5" * 32}])  # 200
        assert [r.split(": ", 1)[1][:8] for _, r in sp.take_rejected()] == ["HTTP 400"]
    finally:
        hec.close()
    assert hec.answered == [403, 400, 503, 429, 200, 503, 400, 200]
    assert [e["event"]["event"]["id"] for e in hec.events] == ["3" * 32, "5" * 32]
    assert sp.spooled_batches == 0
    assert sp.rejected_alerts == 3
