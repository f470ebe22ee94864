#!/usr/bin/env python3
"""A uTLS-style intercepting proxy that copies the client's ClientHello upstream (issue 16 item 4).

Why this exists: the evaluation corpus needs an interceptor that defeats client-side detection.
mitmproxy is caught because its upstream ClientHello is its own (another JA3/JA4 than the client's);
this proxy sends the client's EXACT ClientHello record bytes upstream, so the fingerprints of the
upstream hello are those of the client.  Detection must then come from the server's side.

What it does per connection: peek (MSG_PEEK, nothing consumed) until the whole ClientHello
handshake message is there (it may be split over TCP segments and TLS records; capped size and
time), take the SNI, forward the records that carry the hello to the original destination, read the
server's answer until the server stops or goes quiet, and close that socket.  Meanwhile it finishes
the client's handshake itself with Python ``ssl`` (server side) and a leaf for the SNI signed by its
own CA (minted once per SNI), reads the HTTP request and answers ``200`` with a body naming the SNI.

What a sensor sees (honest limits):
- upstream leg (proxy -> server): the client's ClientHello byte for byte (same JA3/JA4/JA4_o), the
  real server's ServerHello and first flight, then the proxy closing the socket.  The handshake
  never completes: the proxy has the key shares but not their private keys, so no application data.
- client leg (client -> proxy): the real client's hello, and a ServerHello, certificate chain
  (clear in TLS 1.2, encrypted in TLS 1.3) and flight from OpenSSL via Python ``ssl`` with the
  proxy's CA as issuer: JA3S, flight sizes and issuer differ from the real server's.

Transparent mode: the destination is ``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` after an iptables
REDIRECT; ``--upstream HOST:PORT`` forces it (tests, no iptables).  One thread per connection; one
JSON log line per connection; SIGTERM/SIGINT stop it cleanly.  A client that hangs up or sends
garbage gives a log line with a named ``result``, never a traceback.

Usage:
  python scripts/mimic_proxy.py --new-ca --ca-cert ca.pem --ca-key ca.key   # write a CA, exit
  python scripts/mimic_proxy.py --listen 0.0.0.0:8443 --ca-cert ca.pem --ca-key ca.key [--log F]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import select
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tlsdetect.wire.tls import TLSParseError, parse_client_hello

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
HELLO_CAP = 64 * 1024  # bytes of records we accept for one ClientHello
HELLO_TIMEOUT = 5.0  # seconds to wait for the whole ClientHello
CLIENT_TIMEOUT = 10.0  # seconds per client read/handshake step
UPSTREAM_CAP = 256 * 1024
DEFAULT_CA_NAME = "tlsdetect Mimic Proxy CA"


class HelloError(ValueError):
    """The client's first bytes are not a complete, well-formed ClientHello (the message says why)."""


@dataclass(frozen=True)
class Hello:
    """A ClientHello as the client sent it: the record bytes that carry it, and its parsed SNI."""

    records: bytes
    body: bytes
    sni: str | None


def hello_from(buf: bytes) -> Hello | None:
    """The ClientHello at the start of ``buf``, or None while more bytes are needed.

    Handles a hello fragmented over several handshake records.  Raises HelloError for a stream
    that is not TLS or not a ClientHello, so the caller stops waiting at once.
    """
    msg = bytearray()
    pos = 0
    while True:
        if len(buf) < pos + 5:
            return None
        ctype, major, length = buf[pos], buf[pos + 1], struct.unpack("!H", buf[pos + 3 : pos + 5])[0]
        if ctype != 0x16 or major != 3:
            raise HelloError(f"not a TLS handshake record (first bytes {buf[pos:pos + 5].hex()})")
        if length == 0 or length > 16384 + 2048:
            raise HelloError(f"bad record length {length}")
        if len(buf) < pos + 5 + length:
            return None
        msg += buf[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if msg[0] != 1:
            raise HelloError(f"first handshake message is type {msg[0]}, not ClientHello")
        if len(msg) >= 4:
            need = 4 + int.from_bytes(msg[1:4], "big")
            if len(msg) >= need:
                body = bytes(msg[4:need])
                try:
                    sni = parse_client_hello(body).sni
                except TLSParseError as exc:
                    raise HelloError(f"malformed ClientHello: {exc}") from None
                return Hello(records=bytes(buf[:pos]), body=body, sni=sni)


def peek_hello(sock: socket.socket, cap: int = HELLO_CAP, timeout: float = HELLO_TIMEOUT) -> Hello:
    """Wait until the client's whole ClientHello is readable, without consuming it."""
    deadline = time.monotonic() + timeout
    hangup = select.poll()  # POLLRDHUP sees the peer's FIN even while peeked bytes wait unread
    hangup.register(sock, select.POLLRDHUP)
    last = -1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HelloError(f"no complete ClientHello within {timeout:g} s")
        sock.settimeout(left)
        try:
            buf = sock.recv(cap, socket.MSG_PEEK)
        except TimeoutError:
            raise HelloError(f"no complete ClientHello within {timeout:g} s") from None
        if not buf:
            raise HelloError("client closed before its ClientHello")
        hello = hello_from(buf)
        if hello is not None:
            return hello
        if len(buf) >= cap:
            raise HelloError(f"ClientHello larger than {cap} bytes")
        # peek returns at once while data waits: pause for the next segment, or see the hang-up
        if len(buf) == last and hangup.poll(10):
            raise HelloError(f"client closed mid-ClientHello after {len(buf)} bytes")
        last = len(buf)


def original_dst(sock: socket.socket) -> tuple[str, int] | None:
    """Where the client meant to go before an iptables REDIRECT; None without netfilter."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    return parse_sockaddr_in(raw)


def parse_sockaddr_in(raw: bytes) -> tuple[str, int] | None:
    """``struct sockaddr_in`` bytes as (address, port); None if not AF_INET."""
    if len(raw) < 8 or struct.unpack("=H", raw[:2])[0] != socket.AF_INET:
        return None
    return socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0]


def forward_hello(dest: tuple[str, int], records: bytes, idle: float, total: float) -> tuple[int, str]:
    """Send the client's hello records to ``dest``, read the answer until quiet; (bytes read, result)."""
    got = 0
    with socket.create_connection(dest, timeout=total) as up:
        up.sendall(records)
        deadline = time.monotonic() + total
        while got < UPSTREAM_CAP:
            wait = min(idle, deadline - time.monotonic())
            if wait <= 0 or not select.select([up], [], [], wait)[0]:
                return got, "quiet"
            try:
                chunk = up.recv(65536)
            except ConnectionResetError:
                return got, "reset"
            if not chunk:
                return got, "closed"
            got += len(chunk)
    return got, "cap"


# --- certificates ---------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsdetect mimic")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), org])


def write_ca(cert_path: Path, key_path: Path, cn: str = DEFAULT_CA_NAME) -> None:
    """A fresh self-signed CA (P-256) as PEM files; the key file is made private (0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(b"")
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class LeafMinter:
    """Leaf certificates for a host name, signed by the proxy's CA, one SSLContext per name (cached)."""

    ca_cert: x509.Certificate
    ca_key: CertificateIssuerPrivateKeyTypes
    workdir: Path
    leaf_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, cert: Path, key: Path, workdir: Path) -> LeafMinter:
        ca_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{key}: not an EC or RSA private key")
        return cls(x509.load_pem_x509_certificate(cert.read_bytes()), ca_key, workdir)

    def leaf(self, host: str) -> x509.Certificate:
        """A leaf for ``host`` (a DNS name or an IP address), valid for a year from yesterday."""
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        now = dt.datetime.now(dt.UTC)
        ca_ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.ca_cert.subject)
            .public_key(self.leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def context(self, host: str) -> ssl.SSLContext:
        """The server-side context presenting a leaf for ``host`` plus the CA certificate."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                pem = self.leaf(host).public_bytes(serialization.Encoding.PEM)
                pem += self.ca_cert.public_bytes(serialization.Encoding.PEM)
                n = len(self._contexts)
                chain, key = self.workdir / f"leaf{n}.pem", self.workdir / f"leaf{n}.key"
                chain.write_bytes(pem)
                key.write_bytes(
                    self.leaf_key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.set_alpn_protocols(["http/1.1"])
                ctx.load_cert_chain(chain, key)
                self._contexts[host] = ctx
            return ctx


# --- the proxy ------------------------------------------------------------------------------


def _read_request(tls: ssl.SSLSocket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = tls.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def http_answer(sni: str | None) -> bytes:
    """The proxy's own reply to any request: 200 and a body naming the SNI it intercepted."""
    body = f"mimic proxy intercepted {sni or '(no SNI)'}\n".encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


@dataclass
class Proxy:
    """Accepts clients, mimics their hello upstream and answers them itself."""

    listen: tuple[str, int]
    minter: LeafMinter
    upstream: tuple[str, int] | None = None
    log_file: Path | None = None
    upstream_idle: float = 1.0
    upstream_total: float = 5.0
    stop: threading.Event = field(default_factory=threading.Event)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    sock: socket.socket | None = None

    def bind(self) -> tuple[str, int]:
        """Open the listening socket; returns the bound address (port 0 picks a free one)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.listen)
        s.listen(128)
        s.settimeout(0.2)
        self.sock = s
        host, port = s.getsockname()
        return str(host), int(port)

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        with self._log_lock:
            print(line, flush=True)
            if self.log_file is not None:
                with self.log_file.open("a") as fh:
                    fh.write(line + "\n")

    def serve(self) -> None:
        """Accept until :attr:`stop` is set, then wait briefly for the open connections."""
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        while not self.stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            t = threading.Thread(target=self.handle, args=(conn, addr), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        self.sock.close()
        for t in self._threads:
            t.join(timeout=2.0)

    def destination(self, conn: socket.socket) -> tuple[str, int] | None:
        if self.upstream is not None:
            return self.upstream
        dst = original_dst(conn)
        if dst is None or dst == conn.getsockname():  # not redirected: forwarding would loop to us
            return None
        return dst

    def handle(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        """One client: never raises; every outcome is a named ``result`` in the log line."""
        rec: dict[str, Any] = {"ts": dt.datetime.now(dt.UTC).isoformat(), "client": f"{addr[0]}:{addr[1]}"}
        up: dict[str, Any] = {}
        worker: threading.Thread | None = None
        try:
            dest = self.destination(conn)
            rec["dest"] = f"{dest[0]}:{dest[1]}" if dest else None
            hello = peek_hello(conn)
            rec["sni"] = hello.sni
            rec["hello_bytes"] = len(hello.records)
            if dest is not None:
                worker = threading.Thread(target=self._upstream, args=(dest, hello.records, up), daemon=True)
                worker.start()
            ctx = self.minter.context(hello.sni or (dest[0] if dest else conn.getsockname()[0]))
            conn.settimeout(CLIENT_TIMEOUT)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                rec["client_tls"] = tls.version()
                rec["request"] = _read_request(tls).split(b"\r\n", 1)[0].decode("latin-1")[:200]
                tls.sendall(http_answer(hello.sni))
                with contextlib.suppress(OSError, ssl.SSLError):
                    tls.unwrap()
            rec["result"] = "answered" if dest else "answered-no-destination"
        except HelloError as exc:
            rec["result"], rec["reason"] = "bad-hello", str(exc)
        except ssl.SSLError as exc:
            rec["result"], rec["reason"] = "client-tls-error", exc.reason or str(exc)
        except TimeoutError:
            rec["result"] = "client-timeout"
        except OSError as exc:
            rec["result"], rec["reason"] = "client-gone", exc.strerror or type(exc).__name__
        finally:
            conn.close()
            if worker is not None:
                worker.join(timeout=self.upstream_total + 1.0)
            rec.update(up)
            self.log(rec)

    def _upstream(self, dest: tuple[str, int], records: bytes, out: dict[str, Any]) -> None:
        try:
            got, how = forward_hello(dest, records, self.upstream_idle, self.upstream_total)
            out.update(upstream_read=got, upstream_end=how)
        except OSError as exc:
            out.update(upstream_read=0, upstream_end=f"error: {exc.strerror or type(exc).__name__}")


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--listen", type=_hostport, default=("0.0.0.0", 8443), help="HOST:PORT to accept on")
    p.add_argument("--ca-cert", type=Path, required=True, help="PEM CA certificate that signs the leaves")
    p.add_argument("--ca-key", type=Path, required=True, help="PEM private key of that CA")
    p.add_argument("--new-ca", action="store_true", help="write a fresh CA to --ca-cert/--ca-key and exit")
    p.add_argument("--upstream", type=_hostport, help="force the destination (default: SO_ORIGINAL_DST)")
    p.add_argument("--upstream-idle", type=float, default=1.0, help="seconds of server silence that end the read")
    p.add_argument("--log", type=Path, help="append one JSON line per connection to this file")
    args = p.parse_args(argv)
    if args.new_ca:
        write_ca(args.ca_cert, args.ca_key)
        print(f"wrote {args.ca_cert} and {args.ca_key}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mimic-proxy-") as work:
        try:
            minter = LeafMinter.load(args.ca_cert, args.ca_key, Path(work))
        except (OSError, ValueError) as exc:
            print(f"mimic_proxy: cannot load the CA: {exc}", file=sys.stderr)
            return 2
        proxy = Proxy(args.listen, minter, args.upstream, args.log, upstream_idle=args.upstream_idle)
        try:
            host, port = proxy.bind()
        except OSError as exc:
            print(f"mimic_proxy: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}", file=sys.stderr)
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: proxy.stop.set())
        print(f"mimic_proxy listening on {host}:{port}", file=sys.stderr, flush=True)
        proxy.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
