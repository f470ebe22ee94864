"""``scripts/mimic_proxy.py``: the interceptor that copies the client's ClientHello upstream.

Real parts on loopback: Python ``ssl`` clients, a TCP upstream that records what it gets, the proxy
in-process or as a process; the slow test adds ``openssl s_server``, ``curl`` and ``dumpcap`` and
reads the capture with tlsdetect's own reader.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "mimic_proxy.py"


def _load() -> ModuleType:
    """The script as a module, registered in sys.modules (its dataclasses look themselves up there)."""
    spec = importlib.util.spec_from_file_location("mimic_proxy", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mimic_proxy"] = module
    spec.loader.exec_module(module)
    return module


mp = _load()
SNI = "shop.mimic.test"


class BioClient:
    """A real OpenSSL client (Python ssl over memory BIOs), so the test owns every byte it sends."""

    def __init__(self, ctx: ssl.SSLContext | None = None, sni: str = SNI) -> None:
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = (ctx or ssl.create_default_context()).wrap_bio(self.inc, self.out, server_hostname=sni)
        with pytest.raises(ssl.SSLWantReadError):
            self.obj.do_handshake()
        self.hello = self.out.read()

    def finish(self, s: socket.socket) -> None:
        """Go on with the handshake over ``s`` after the hello has been sent."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(self.out.read())
                data = s.recv(65536)
                assert data, "server closed during the handshake"
                self.inc.write(data)
        s.sendall(self.out.read())

    def request(self, s: socket.socket, req: bytes) -> bytes:
        self.obj.write(req)
        s.sendall(self.out.read())
        answer = b""
        while True:
            try:
                chunk = self.obj.read(65536)
                if not chunk:  # the peer's close_notify
                    return answer
                answer += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return answer
            data = s.recv(65536)
            if not data:
                return answer
            self.inc.write(data)


def _split_records(records: bytes, at: int) -> bytes:
    """One handshake record re-framed as two records, cut ``at`` bytes into its payload."""
    head, payload = records[:3], records[5:]
    a, b = payload[:at], payload[at:]
    return head + struct.pack("!H", len(a)) + a + head + struct.pack("!H", len(b)) + b


def test_hello_from_needs_every_byte_and_reads_a_hello_split_over_records() -> None:
    whole = BioClient().hello
    hello = mp.hello_from(whole)
    assert hello.sni == SNI
    assert hello.records == whole
    assert len(hello.body) == len(whole) - 9
    split = _split_records(whole, 50)
    again = mp.hello_from(split + b"\x17\x03\x03")  # bytes after the hello are not part of it
    assert again.records == split
    assert again.body == hello.body
    assert all(mp.hello_from(split[:n]) is None for n in range(len(split)))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a TLS handshake record"),
        (b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x00", "not ClientHello"),
        (b"\x16\x03\x01\x00\x00", "bad record length"),
        (b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", "malformed ClientHello"),
    ],
)
def test_hello_from_names_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(mp.HelloError, match=why):
        mp.hello_from(data)


def test_sockaddr_in_gives_address_and_port() -> None:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 443) + socket.inet_aton("10.1.2.3") + bytes(8)
    assert mp.parse_sockaddr_in(raw) == ("10.1.2.3", 443)
    assert mp.parse_sockaddr_in(struct.pack("=H", socket.AF_INET6) + bytes(14)) is None


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("mimic-ca")
    mp.write_ca(d / "ca.pem", d / "ca.key")
    return d / "ca.pem", d / "ca.key"


def test_leaf_is_signed_by_the_proxy_ca_for_the_sni(ca: tuple[Path, Path], tmp_path: Path) -> None:
    minter = mp.LeafMinter.load(*ca, tmp_path)
    leaf = minter.leaf(SNI)
    ca_cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
    leaf.verify_directly_issued_by(ca_cert)
    assert leaf.issuer == ca_cert.subject
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [SNI]
    assert minter.context(SNI) is minter.context(SNI)  # cached per SNI
    assert minter.context("10.0.0.1") is not minter.context(SNI)


class RecordingUpstream:
    """A TCP server that records what each connection sends, answers ``reply`` and hangs up."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.got: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                data = b""
                try:
                    while not data or select_ready(conn, 0.3):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.got.append(data)
                conn.sendall(self.reply)


def select_ready(conn: socket.socket, wait: float) -> bool:
    import select

    return bool(select.select([conn], [], [], wait)[0])


@pytest.fixture
def proxy(ca: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[Any, RecordingUpstream, Path]]:
    upstream = RecordingUpstream(b"\x16\x03\x03" + b"server answer")
    log = tmp_path / "proxy.log"
    px = mp.Proxy(("127.0.0.1", 0), mp.LeafMinter.load(*ca, tmp_path), ("127.0.0.1", upstream.port), log,
                  upstream_idle=2.0)
    px.bind()
    t = threading.Thread(target=px.serve, daemon=True)
    t.start()
    yield px, upstream, log
    px.stop.set()
    t.join(timeout=5)
    upstream.sock.close()
    assert not t.is_alive()


def _log(path: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return [json.loads(x) for x in lines]
        time.sleep(0.05)
    raise AssertionError(f"expected {n} log lines in {path}")


def test_upstream_gets_the_clients_exact_hello_and_the_client_gets_the_proxys_answer(
    proxy: tuple[Any, RecordingUpstream, Path], ca: tuple[Path, Path]
) -> None:
    px, upstream, log = proxy
    client = BioClient(ssl.create_default_context(cafile=str(ca[0])))
    sent = _split_records(client.hello, 40)
    with socket.create_connection(px.sock.getsockname(), timeout=5) as s:
        s.sendall(sent[:30])  # two records over two TCP segments
        time.sleep(0.2)
        s.sendall(sent[30:])
        client.finish(s)
        answer = client.request(s, b"GET /x HTTP/1.1\r\nHost: " + SNI.encode() + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert SNI.encode() in answer
    issuer = x509.load_der_x509_certificate(client.obj.getpeercert(binary_form=True) or b"").issuer
    assert issuer == x509.load_pem_x509_certificate(ca[0].read_bytes()).subject
    [rec] = _log(log, 1)
    assert upstream.got == [sent]  # byte for byte, both records, nothing of the proxy's own
    assert rec["result"] == "answered"
    assert rec["sni"] == SNI
    assert rec["hello_bytes"] == len(sent)
    assert rec["upstream_read"] == len(upstream.reply)
    assert rec["upstream_end"] == "closed"


def test_clients_that_hang_up_or_talk_nonsense_get_a_named_result_not_a_traceback(
    proxy: tuple[Any, RecordingUpstream, Path], ca: tuple[Path, Path], recwarn: pytest.WarningsRecorder
) -> None:
    px, upstream, log = proxy
    half = BioClient().hello[:60]
    for data in (b"", b"GET / HTTP/1.1\r\n\r\n", half):
        with socket.create_connection(px.sock.getsockname(), timeout=5) as s:
            s.sendall(data)
    with socket.create_connection(px.sock.getsockname(), timeout=5) as s:  # whole hello, then gone
        s.sendall(BioClient().hello)
    recs = _log(log, 4)
    by_reason = sorted((r["result"], r.get("reason", "")) for r in recs)
    results = [r for r, _ in by_reason]
    assert results[:3] == ["bad-hello"] * 3
    assert results[3] in ("client-tls-error", "client-gone")
    assert any("before its ClientHello" in why for _, why in by_reason)
    assert any("closed mid-ClientHello after 60 bytes" in why for _, why in by_reason)
    assert any("not a TLS handshake record" in why for _, why in by_reason)
    assert len(upstream.got) == 1  # only the complete hello went upstream
    assert not [w for w in recwarn if "Thread" in str(w.category)]


def test_cli_writes_a_ca_then_serves_until_sigterm(tmp_path: Path) -> None:
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    made = subprocess.run([sys.executable, str(SCRIPT), "--new-ca", "--ca-cert", str(cert), "--ca-key", str(key)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert made.returncode == 0
    assert key.stat().st_mode & 0o077 == 0
    cmd = [sys.executable, str(SCRIPT), "--listen", "127.0.0.1:0", "--ca-cert", str(cert), "--ca-key", str(key)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "listening on 127.0.0.1:" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err
    bad = subprocess.run([*cmd[:-1], str(cert)], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2
    assert "cannot load the CA" in bad.stderr


TOOLS = ("openssl", "curl", "dumpcap")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.mark.slow
@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}")
def test_capture_shows_the_clients_fingerprint_upstream_and_the_proxys_ca_to_the_client(
    ca: tuple[Path, Path], tmp_path: Path
) -> None:
    """curl -> proxy -> openssl s_server on loopback, captured; tlsdetect reads both legs."""
    from tlsdetect.readers.inputs import Inputs

    mp.write_ca(tmp_path / "real-ca.pem", tmp_path / "real-ca.key", cn="Real Server CA")
    real_minter = mp.LeafMinter.load(tmp_path / "real-ca.pem", tmp_path / "real-ca.key", tmp_path)
    real_cert, real_key = tmp_path / "real.pem", tmp_path / "real.key"
    real_cert.write_bytes(real_minter.leaf(SNI).public_bytes(serialization.Encoding.PEM))
    real_key.write_bytes(real_minter.leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    real, px = _free_port(), _free_port()
    pcap = tmp_path / "mimic.pcapng"
    procs: list[subprocess.Popen[Any]] = [
        subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"tcp port {real} or tcp port {px}", "-w", str(pcap)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{real}", "-cert", str(real_cert), "-key",
                          str(real_key), "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, str(SCRIPT), "--listen", f"127.0.0.1:{px}", "--ca-cert", str(ca[0]),
                          "--ca-key", str(ca[1]), "--upstream", f"127.0.0.1:{real}", "--upstream-idle", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True),
    ]
    try:
        deadline = time.monotonic() + 10
        while not (pcap.exists() and pcap.stat().st_size >= 24) and time.monotonic() < deadline:
            time.sleep(0.1)
        _wait_port(real)
        _wait_port(px)
        time.sleep(0.3)
        curl = ["curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--max-time", "10"]
        via = subprocess.run([*curl, "--cacert", str(ca[0]), "--resolve", f"{SNI}:{px}:127.0.0.1",
                              f"https://{SNI}:{px}/"], capture_output=True, text=True, timeout=20, check=False)
        direct = subprocess.run([*curl, "-k", "--resolve", f"{SNI}:{real}:127.0.0.1", f"https://{SNI}:{real}/"],
                                capture_output=True, text=True, timeout=20, check=False)
        time.sleep(1.5)  # the proxy's upstream read ends after 0.5 s of quiet; let the FINs reach dumpcap
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT if p is procs[0] else signal.SIGTERM)
        for p in procs:
            p.wait(timeout=10)
    assert via.returncode == 0, via.stderr
    assert f"intercepted {SNI}" in via.stdout
    assert direct.returncode == 0, direct.stderr
    out = procs[2].stdout.read() if procs[2].stdout else ""
    logs = [json.loads(x) for x in out.splitlines()]
    [log] = [x for x in logs if x["result"] == "answered"]  # the others are _wait_port's probes
    assert {x["result"] for x in logs} <= {"answered", "bad-hello"}
    assert log["upstream_read"] > 0

    df = Inputs([str(pcap)]).read_all()
    to_proxy = df[df["server_port"] == px]
    to_real = df[df["server_port"] == real].sort_values("ts")
    assert len(to_proxy) == 1
    assert len(to_real) == 2  # the proxy's mimicked hello, then curl's direct connection
    client_leg, upstream_leg, direct_leg = to_proxy.iloc[0], to_real.iloc[0], to_real.iloc[1]
    for col in ("ja3", "ja3_full", "ja4", "ja4_o"):
        assert upstream_leg[col] == client_leg[col], col
    assert "tlsdetect Mimic Proxy CA" in str(client_leg["server_issuer"])
    assert "Real Server CA" in str(direct_leg["server_issuer"])
    assert "Real Server CA" in str(upstream_leg["server_issuer"])  # the server's answer, seen upstream
    assert upstream_leg["ja3s"] == direct_leg["ja3s"]
    differs = client_leg["ja3s"] != direct_leg["ja3s"]
    if "server_flight" in df and direct_leg["server_flight"] is not None:
        differs = differs or list(client_leg["server_flight"]) != list(direct_leg["server_flight"])
    assert differs, "the proxy's own handshake looks like the real server's"
