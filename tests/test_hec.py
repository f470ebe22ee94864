"""``sinks/alerts/hec.py``: Splunk HEC events, TLS verification, tokens, and which answers are final."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
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

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.hec import HecSink
from tlsdetect.sinks.alerts.spool import SinkError, SinkRejectedError


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

