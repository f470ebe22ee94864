"""syslog+tls:// (RFC 5425): options, verification of the collector, client certificates; a real rsyslogd (gtls)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.open import open_sink
from tlsdetect.sinks.alerts.spool import SinkError
from tlsdetect.sinks.alerts.syslog import SyslogSink, parse_octet_frames
from tlsdetect.sinks.alerts.syslog_tls import tls_options

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
GTLS = next(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"), None)  # Debian: rsyslog-gnutls
_ID = re.compile(r'\[tlsdetect@32473 id="([0-9a-f]{32})"')


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(d: Path, stem: str, cn: str, issuer: _Issued | None, *, ca: bool = False, server: bool = False) -> _Issued:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    signer_cert, signer_key = issuer if issuer is not None else (None, key)
    b = (
        x509.CertificateBuilder().subject_name(_name(cn))
        .issuer_name(signer_cert.subject if signer_cert is not None else _name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = b.sign(signer_key, hashes.SHA256())
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collector CA with a server certificate (localhost, 127.0.0.1) and a sensor's client certificate;
    a second CA that signed nothing the collector trusts."""
    d = tmp_path_factory.mktemp("pki")
    ca = _issue(d, "ca", "tlsdetect syslog test CA", None, ca=True)
    _issue(d, "server", "localhost", ca, server=True)
    _issue(d, "client", "tlsdetect-sensor", ca)
    other = _issue(d, "other-ca", "another CA", None, ca=True)
    _issue(d, "stranger", "tlsdetect-sensor", other)
    return d


class _Collector:
    """A TLS collector on 127.0.0.1 that keeps every byte it reads; ``need_client_cert`` like x509/certvalid."""

    def __init__(self, pki: Path, *, need_client_cert: bool) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
        self.ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED if need_client_cert else ssl.CERT_NONE
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.got: list[bytes] = []
        self.peers: list[str] = []
        self.hang_up_after_first = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.srv.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    peer = conn.getpeercert()
                    names = [rdn[0] for rdn in peer.get("subject", ())] if peer else []
                    self.peers.append(next((str(a[1]) for a in names if a[0] == "commonName"), "-"))
                    while data := conn.recv(65536):
                        self.got.append(data)
                        if self.hang_up_after_first:
                            self.hang_up_after_first = False
                            conn.unwrap().close()
                            break
            except (OSError, ssl.SSLError):
                raw.close()

    def messages(self, n: int, timeout: float = 5.0) -> list[str]:
        end = time.monotonic() + timeout
        msgs: list[str] = []
        while time.monotonic() < end:
            msgs, _ = parse_octet_frames(b"".join(self.got))
            if len(msgs) >= n:
                break
            time.sleep(0.02)
        return msgs

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def collector(pki: Path) -> Iterator[_Collector]:
    c = _Collector(pki, need_client_cert=False)
    yield c
    c.close()


@pytest.fixture
def strict_collector(pki: Path) -> Iterator[_Collector]:
    c = _Collector(pki, need_client_cert=True)
    yield c
    c.close()


def _alerts(n: int) -> list[dict[str, object]]:
    return [{**ALERT, "id": f"{i:032x}"} for i in range(n)]


def test_frames_arrive_over_verified_tls(pki: Path, collector: _Collector) -> None:
    sink = SyslogSink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}&facility=local3")
    sink.send(_alerts(10))
    sink.send(_alerts(3))  # the same connection, still open (a TLS 1.3 ticket is not a close)
    msgs = collector.messages(13)
    sink.close()
    assert [_ID.search(m)[1] for m in msgs] == [a["id"] for a in _alerts(10) + _alerts(3)]  # type: ignore[index]
    assert all(m.startswith(f"<{19 * 8 + 3}>1 ") for m in msgs)
    assert len(collector.peers) == 1


def test_untrusted_collector_is_a_sink_error(pki: Path, collector: _Collector) -> None:
    sink = SyslogSink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'other-ca.pem'}")
    with pytest.raises(SinkError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
        sink.send(_alerts(1))
    assert collector.messages(1, timeout=0.3) == []


def test_collector_name_is_checked(pki: Path, collector: _Collector) -> None:
    sink = SyslogSink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}&name=siem.example")
    with pytest.raises(SinkError, match="cannot connect"):
        sink.send(_alerts(1))
    ok = SyslogSink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}&name=localhost")
    ok.send(_alerts(1))
    assert len(collector.messages(1)) == 1
    ok.close()


def test_client_certificate_is_presented(pki: Path, strict_collector: _Collector) -> None:
    spec = f"syslog+tls://127.0.0.1:{strict_collector.port}?ca={pki / 'ca.pem'}&cert={pki / 'client.pem'}"
    sink = SyslogSink(spec + f"&key={pki / 'client.key'}")
    sink.send(_alerts(2))
    assert len(strict_collector.messages(2)) == 2
    sink.close()
    assert strict_collector.peers == ["tlsdetect-sensor"]


def test_missing_client_certificate_is_a_sink_error(pki: Path, strict_collector: _Collector) -> None:
    """TLS 1.3: the collector's refusal comes after the handshake; the sink waits for it instead of losing a batch."""
    sink = SyslogSink(f"syslog+tls://127.0.0.1:{strict_collector.port}?ca={pki / 'ca.pem'}")
    with pytest.raises(SinkError, match="after the handshake"):
        sink.send(_alerts(1))
    sink.close()
    assert strict_collector.messages(1, timeout=0.3) == []


def test_reconnects_after_the_collector_closes(pki: Path, collector: _Collector) -> None:
    """A collector that restarts closes its side (close_notify): the next send sees it and reconnects."""
    collector.hang_up_after_first = True
    sink = SyslogSink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}")
    sink.send(_alerts(1))
    assert len(collector.messages(1)) == 1
    time.sleep(0.2)  # the close reaches the sensor
    sink.send(_alerts(2))
    msgs = collector.messages(3)
    sink.close()
    assert len(msgs) == 3
    assert len(collector.peers) == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cafile=x", "unknown option"),
        ("key=/k.pem", "key= needs cert="),
        ("ca=/nonexistent/ca.pem", "cannot load the TLS files"),
    ],
)
def test_bad_options_are_one_line_errors(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyslogSink(f"syslog+tls://127.0.0.1:6514?{query}")


def test_options_defaults() -> None:
    opts = tls_options({"cert": ["/c.pem"]}, "siem.example")
    assert (opts.ca, opts.cert, opts.key, opts.name) == (None, "/c.pem", "/c.pem", "siem.example")


def test_open_sink_knows_tls_specs(pki: Path, tmp_path: Path, collector: _Collector) -> None:
    sink = open_sink(f"syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}", tmp_path)
    cef = open_sink(f"cef+syslog+tls://127.0.0.1:{collector.port}?ca={pki / 'ca.pem'}", tmp_path)
    assert sink.name.startswith("syslog+tls://")
    assert cef.name.startswith("cef+syslog+tls://")
    sink.close()
    cef.close()


@pytest.fixture
def rsyslog_tls(tmp_path: Path, pki: Path) -> Iterator[tuple[int, Path]]:
    """A real rsyslogd with its GnuTLS driver on a free port: TLS only, client certificates required
    (``x509/certvalid``), writing each message's raw text to a file."""
    if GTLS is None or not Path(RSYSLOGD).is_file():
        pytest.fail("rsyslogd with its GnuTLS driver is needed (Debian: rsyslog rsyslog-gnutls)")
    d = tmp_path / "rsyslog"
    d.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = d / "messages.log"
    conf = d / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{d}" defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{pki / "ca.pem"}"\n'
        f'       defaultNetstreamDriverCertFile="{pki / "server.pem"}" '
        f'defaultNetstreamDriverKeyFile="{pki / "server.key"}")\n'
        'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")\n'
        f'input(type="imtcp" port="{port}" address="127.0.0.1")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'*.* action(type="omfile" file="{out}" template="raw" asyncWriting="off" flushOnTXEnd="on")\n'
    )
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(d / "rsyslogd.pid")],
                            stdout=subprocess.DEVNULL, stderr=(d / "stderr").open("wb"))  # fmt: skip
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, (d / "stderr").read_text()
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ids(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    end = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < end:
        found = _ID.findall(path.read_text()) if path.exists() else []
        if len(found) >= n:
            break
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_real_rsyslog_gnutls_receives_every_alert(pki: Path, rsyslog_tls: tuple[int, Path]) -> None:
    port, out = rsyslog_tls
    spec = f"syslog+tls://127.0.0.1:{port}?ca={pki / 'ca.pem'}&cert={pki / 'client.pem'}&key={pki / 'client.key'}"
    sink = SyslogSink(spec)
    alerts = _alerts(50)
    sink.send(alerts[:25])
    sink.send(alerts[25:])
    assert _ids(out, 50) == [a["id"] for a in alerts]
    sink.close()


@pytest.mark.slow
def test_real_rsyslog_refuses_a_stranger_certificate(pki: Path, rsyslog_tls: tuple[int, Path]) -> None:
    """A sensor whose certificate the collector does not trust loses nothing silently: every later send fails."""
    port, out = rsyslog_tls
    spec = f"syslog+tls://127.0.0.1:{port}?ca={pki / 'ca.pem'}&cert={pki / 'stranger.pem'}&key={pki / 'stranger.key'}"
    sink = SyslogSink(spec)
    errors = 0
    for i in range(5):
        try:
            sink.send(_alerts(1))
        except SinkError:
            errors += 1
        time.sleep(0.2 if i == 0 else 0)
    sink.close()
    assert _ids(out, 1, timeout=1.0) == []
    assert errors == 5
