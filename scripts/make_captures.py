#!/usr/bin/env python3
"""Make tlsdetect's own sample captures from real TLS stacks on loopback.

Why this exists: the detector needs small, redistributable captures whose
provenance is fully known.  Rather than copying third-party pcaps, this script
builds a throw-away PKI, starts ``openssl s_server`` instances on 127.0.0.1,
records loopback traffic with ``dumpcap`` (or ``tcpdump``) and drives real
client stacks (OpenSSL, curl, Python ``ssl``, GnuTLS, Node.js, Java) against
them.  It also produces the awkward cases a parser must survive: a ClientHello
split across two TCP segments, TLS behind an HTTP CONNECT preamble, and mutual
TLS with both Certificate messages in clear (TLS 1.2).

So that the README's first command shows what the detector is for, it also
records interception (``intercepted.pcapng``): the same clients through a real
mitmproxy that forges certificates with its own CA (TLS 1.2 on the client leg,
so the forged issuer is in clear), and an mTLS client presenting a certificate
from a look-alike of the sample root (same DN, another key).

Everything it learns about each connection (stack, version, ports, SNI,
requested/negotiated TLS version, ground-truth label, notes) goes to
``docs/captures/MANIFEST.json`` so tests can compare detector output against
ground truth.  The sample mesh CA (the root and its issuing intermediate,
public certificates only) goes to ``baselines/sample-mesh-ca.pem``; no private
key is ever kept.

Usage:  python3 scripts/make_captures.py [--out pcaps]

Only the standard library is used; the real tools it drives are openssl,
dumpcap/tcpdump, curl, gnutls-cli, node, mitmdump (``.tools/mitmproxy``, made
by ``scripts/setup.sh``) and (optionally) java.  tshark is used only for the
optional self-check at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
BASE_SNI = "sample.tlsdetect.test"
PAYLOAD_NAME = "hello.txt"
PAYLOAD = b"hello from the tlsdetect sample server\n"
SPLIT_AT = 100  # byte offset at which the split ClientHello is cut
SPLIT_PAUSE = 0.2  # seconds between the two halves, so they are 2 segments
CLIENT_TIMEOUT = 60.0
CLIENT_GAP = 0.25  # seconds between consecutive client connections
REQUIRED_TOOLS = ("openssl", "curl", "gnutls-cli", "node")
REPO = Path(__file__).resolve().parents[1]
MITMDUMP = REPO / ".tools" / "mitmproxy" / "bin" / "mitmdump"
DEFAULT_MANIFEST = REPO / "docs" / "captures" / "MANIFEST.json"
DEFAULT_MESH_CA = REPO / "baselines" / "sample-mesh-ca.pem"
#: Captures of traffic believed clean: what ``baselines/sample`` is fitted on.
CLEAN_CAPTURES = ("tls13_stacks", "tls12_stacks", "edge_cases")


class CaptureError(RuntimeError):
    """A required step failed; the message says what and why."""


class OptionalStackError(CaptureError):
    """An optional stack (Java) failed; its capture group is redone without it."""


# --------------------------------------------------------------------------
# small process helpers
# --------------------------------------------------------------------------


def run(cmd: list[str]) -> str:
    """Run a short setup command and return stdout; raise with stderr on failure."""
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise CaptureError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout


@dataclass
class ToolResult:
    """Exit status and decoded output of one client tool run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + "\n" + self.stderr


def run_client_tool(
    cmd: list[str],
    *,
    stdin_data: bytes = b"",
    hold_stdin: bool = False,
    timeout: float = CLIENT_TIMEOUT,
) -> ToolResult:
    """Run a client tool, feeding it ``stdin_data``.

    ``hold_stdin`` keeps stdin open until the tool exits on its own: some
    interactive clients (gnutls-cli) hang up as soon as stdin hits EOF and
    would never read the server's response.  Output goes to temp files, not
    pipes, so a chatty tool can never deadlock us.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err)
        assert proc.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin_data)
                proc.stdin.flush()
            if not hold_stdin:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CaptureError(f"timed out after {timeout}s: {' '.join(cmd)}") from None
        finally:
            if proc.poll() is None:  # timeout, Ctrl-C or SIGTERM: never orphan a client
                proc.kill()
                proc.wait()
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
        out.seek(0)
        err.seek(0)
        return ToolResult(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop a background process politely, then firmly; never leave it behind."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``predicate`` until true; the readiness checks below all use this."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise CaptureError(f"timed out waiting for {what}")


def free_port() -> int:
    """Ask the kernel for an unused high port on the loopback address."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def shown(cmd: list[str]) -> str:
    """A command line for the manifest, with temp-dir paths cut to file names."""
    return " ".join(Path(a).name if a.startswith("/") else a for a in cmd)


def http_get(sni: str, port: int) -> bytes:
    """The tiny HTTP request every client sends, so captures hold app data."""
    return f"GET /{PAYLOAD_NAME} HTTP/1.0\r\nHost: {sni}:{port}\r\n\r\n".encode()


def stack_sni(label: str) -> str:
    """Per-stack SNI; the server leaf has a wildcard SAN so all of them verify."""
    return f"{label}.{BASE_SNI}"


# --------------------------------------------------------------------------
# tools and versions
# --------------------------------------------------------------------------


def require_tools(capture_tool: str) -> str:
    """Fail loudly, before anything starts, if a required tool is missing.

    Returns the capture tool that will be used (dumpcap preferred: it can
    write pcapng; tcpdump writes classic pcap only).
    """
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if capture_tool == "auto":
        capture_tool = "dumpcap" if shutil.which("dumpcap") else "tcpdump"
    if shutil.which(capture_tool) is None:
        missing.append(capture_tool)
    if missing:
        raise CaptureError(
            "required tool(s) not found on PATH: "
            + ", ".join(missing)
            + "\n(Debian: apt-get install openssl curl gnutls-bin nodejs dumpcap tcpdump)"
        )
    if not os.access(MITMDUMP, os.X_OK):
        raise CaptureError(f"mitmdump not found at {MITMDUMP} (run: bash scripts/setup.sh)")
    return capture_tool


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else "unknown"


def detect_versions(java_enabled: bool) -> dict[str, str]:
    """Version strings recorded in the manifest for every stack."""
    versions = {
        "openssl": first_line(run(["openssl", "version"])),
        "curl": first_line(run(["curl", "--version"])),
        "python": f"Python {sys.version.split()[0]} ({ssl.OPENSSL_VERSION})",
        "gnutls": first_line(run(["gnutls-cli", "--version"])),
        "node": first_line(
            run(["node", "-p", "`node ${process.version} (OpenSSL ${process.versions.openssl})`"])
        ),
    }
    if java_enabled and shutil.which("java"):
        proc = subprocess.run(["java", "-version"], check=False, capture_output=True, text=True)
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        versions["java"] = "; ".join(lines[:2]) if lines else "unknown"
    versions["mitmproxy"] = first_line(run([str(MITMDUMP), "--version"]))
    return versions


# --------------------------------------------------------------------------
# throw-away PKI
# --------------------------------------------------------------------------

OPENSSL_CNF = f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{BASE_SNI},DNS:*.{BASE_SNI}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    """Paths of the throw-away PKI (keys never leave the temp dir)."""

    root_cert: Path
    inter_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    lookalike_root: Path  # the root's DN with another key: an attacker's copy of the sample root
    impostor_cert: Path  # the client leaf's subject, issued by the look-alike root
    impostor_key: Path


def gen_key(path: Path, algorithm: str) -> None:
    """RSA-2048 for the CAs, ECDSA P-256 for the leaves (small handshakes)."""
    opts = ["rsa_keygen_bits:2048"] if algorithm == "RSA" else ["ec_paramgen_curve:P-256"]
    run(["openssl", "genpkey", "-algorithm", algorithm, "-pkeyopt", opts[0], "-out", str(path)])


def issue_cert(d: Path, name: str, subject: str, section: str, issuer: str | None) -> None:
    """Create ``name.pem`` signed by ``issuer`` (or self-signed when None)."""
    cnf, key, cert, csr = d / "openssl.cnf", d / f"{name}.key", d / f"{name}.pem", d / f"{name}.csr"
    serial = "0x" + os.urandom(8).hex()
    if issuer is None:
        run(
            [
                "openssl",
                "req",
                "-config",
                str(cnf),
                "-x509",
                "-new",
                "-key",
                str(key),
                "-subj",
                subject,
                "-extensions",
                section,
                "-days",
                "3650",
                "-sha256",
                "-set_serial",
                serial,
                "-out",
                str(cert),
            ]
        )
        return
    run(["openssl", "req", "-config", str(cnf), "-new", "-key", str(key), "-subj", subject, "-out", str(csr)])
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(d / f"{issuer}.pem"),
            "-CAkey",
            str(d / f"{issuer}.key"),
            "-set_serial",
            serial,
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            str(cnf),
            "-extensions",
            section,
            "-out",
            str(cert),
        ]
    )


def make_pki(d: Path) -> Pki:
    """Root CA -> intermediate CA -> server leaf and mTLS client leaf."""
    (d / "openssl.cnf").write_text(OPENSSL_CNF)
    specs = [
        ("root", "RSA", "/O=tlsdetect/CN=tlsdetect Sample Root CA", "v3_root", None),
        ("inter", "RSA", "/O=tlsdetect/CN=tlsdetect Sample Intermediate CA", "v3_inter", "root"),
        ("server", "EC", f"/O=tlsdetect/CN={BASE_SNI}", "v3_server", "inter"),
        ("client", "EC", "/O=tlsdetect/CN=tlsdetect sample client", "v3_client", "inter"),
        ("lookalike", "RSA", "/O=tlsdetect/CN=tlsdetect Sample Root CA", "v3_root", None),
        ("impostor", "EC", "/O=tlsdetect/CN=tlsdetect sample client", "v3_client", "lookalike"),
    ]
    for name, alg, subject, section, issuer in specs:
        gen_key(d / f"{name}.key", alg)
        issue_cert(d, name, subject, section, issuer)
    return Pki(
        d / "root.pem",
        d / "inter.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "lookalike.pem",
        d / "impostor.pem",
        d / "impostor.key",
    )


def describe_cert(path: Path) -> dict[str, str]:
    """Subject/issuer/fingerprint so tests can match certificates seen on the wire."""
    out = run(
        [
            "openssl",
            "x509",
            "-in",
            str(path),
            "-noout",
            "-subject",
            "-issuer",
            "-startdate",
            "-enddate",
            "-fingerprint",
            "-sha256",
            "-nameopt",
            "RFC2253",
        ]
    )
    info: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        info[key.strip().lower().replace(" ", "_")] = value.strip()
    ext = run(["openssl", "x509", "-in", str(path), "-noout", "-ext", "subjectKeyIdentifier,authorityKeyIdentifier"])
    ids = {}
    for name, label in (("ski", "Subject"), ("akid", "Authority")):
        if m := re.search(label + r" Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-Fa-f:]+)", ext):
            ids[name] = m.group(1).replace(":", "").lower()
    return {
        "subject": info.get("subject", ""),
        "issuer": info.get("issuer", ""),
        "not_before": info.get("notbefore", ""),
        "not_after": info.get("notafter", ""),
        "sha256": info.get("sha256_fingerprint", "").replace(":", "").lower(),
        **{k: v for k, v in ids.items() if v},
    }


# --------------------------------------------------------------------------
# servers: openssl s_server and a tiny CONNECT proxy
# --------------------------------------------------------------------------


@dataclass
class ServerInfo:
    """What the manifest says about one server."""

    role: str
    port: int
    tls_versions: str
    command: str
    captured: bool = True


@contextlib.contextmanager
def openssl_server(
    pki: Pki,
    work: Path,
    role: str,
    *,
    tls12_only: bool = False,
    mtls: bool = False,
    captured: bool = True,
    ca_file: Path | None = None,
) -> Iterator[ServerInfo]:
    """Run ``openssl s_server -WWW`` on a free loopback port for the block's duration.

    -WWW serves ``hello.txt`` from a doc root, keeping responses tiny; the
    full chain (leaf + intermediate) is sent via -cert_chain.  Readiness is
    the "ACCEPT" line s_server prints once it listens, so no probe
    connection ever touches the port.
    """
    docroot = work / "docroot"
    docroot.mkdir(exist_ok=True)
    (docroot / PAYLOAD_NAME).write_bytes(PAYLOAD)
    port = free_port()
    cmd = [
        "openssl",
        "s_server",
        "-accept",
        f"{HOST}:{port}",
        "-cert",
        str(pki.server_cert),
        "-key",
        str(pki.server_key),
        "-cert_chain",
        str(pki.inter_cert),
        "-CAfile",
        str(ca_file or pki.root_cert),
        "-WWW",
        "-alpn",
        "http/1.1",
    ]
    if tls12_only:
        cmd.append("-tls1_2")
    if mtls:
        cmd += ["-Verify", "1", "-verify_return_error"]
    log = work / f"server-{role}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=docroot, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: proc.poll() is not None or b"ACCEPT" in log.read_bytes(), f"s_server {role} to listen"
        )
        if proc.poll() is not None:
            raise CaptureError(f"s_server {role} exited early:\n{log.read_text()}")
        yield ServerInfo(
            role, port, "TLSv1.2 only" if tls12_only else "TLSv1.2-TLSv1.3", shown(cmd), captured
        )
    finally:
        stop_process(proc)


class ConnectProxy:
    """Minimal HTTP CONNECT proxy on loopback, one tunnel at a time.

    Why hand-written: it keeps the script dependency-free and lets us pin the
    tunnel to a single upstream port on 127.0.0.1 (any other target is
    refused), so nothing can leave loopback.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, name="connect-proxy", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.listener.close()

    def _serve(self) -> None:
        accept_loop(self.listener, self.stopping, self._handle)

    def _handle(self, client: socket.socket) -> None:
        with client:
            try:
                self._tunnel(client)
            except (OSError, ValueError, CaptureError) as exc:  # caller re-raises these
                self.errors.append(repr(exc))

    def _tunnel(self, client: socket.socket) -> None:
        client.settimeout(CLIENT_TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 16384:
                raise CaptureError("proxy: incomplete CONNECT request")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not host.endswith(BASE_SNI) or int(port) != self.upstream_port:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            raise CaptureError(f"proxy: refused {method} {target}")
        with socket.create_connection((HOST, self.upstream_port), timeout=10) as upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            relay(client, upstream)


def accept_loop(listener: socket.socket, stopping: threading.Event, handle: Callable[[socket.socket], None]) -> None:
    """Hand each accepted connection to ``handle`` until ``stopping`` is set or the listener closes.

    The listener has a short timeout so ``stopping`` is looked at between accepts; the proxies and
    relays of the capture scripts share this loop and differ only in what ``handle`` does.
    """
    while not stopping.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        handle(client)


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways, propagating half-closes, until both sides finish."""
    peers = {a: b, b: a}
    open_reads = {a, b}
    while open_reads:
        readable, _, _ = select.select(list(open_reads), [], [], CLIENT_TIMEOUT)
        if not readable:
            raise CaptureError("proxy: tunnel idle timeout")
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                with contextlib.suppress(OSError):
                    peers[sock].sendall(data)
            else:
                open_reads.discard(sock)
                with contextlib.suppress(OSError):
                    peers[sock].shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------
# mitmproxy: a real interception proxy (also driven by make_eval_corpus.py)
# --------------------------------------------------------------------------

MITM_ADDON = '''\
"""Generated by scripts/make_captures.py: forward the client's SNI upstream, log every upstream TLS leg."""
import json
import time

LOG = {log!r}


class UpstreamLog:
    def server_connect(self, data):
        if data.client.sni:  # a transparent interceptor forwards the client's SNI
            data.server.sni = data.client.sni

    def tls_established_server(self, data):
        c = data.conn
        with open(LOG, "a") as fh:
            fh.write(json.dumps({{"ts": time.time(), "sockname": list(c.sockname[:2]), "sni": c.sni,
                                 "tls_version": c.tls_version,
                                 "alpn_offers": [a.decode() for a in c.alpn_offers or ()]}}) + "\\n")


addons = [UpstreamLog()]
'''


def listening(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (read from /proc, no probe connection)."""
    needle = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return any(p[1] == needle and p[3] == "0A" for p in (ln.split() for ln in fh.readlines()[1:]))


@contextlib.contextmanager
def mitmdump(confdir: Path, log: Path, upstream_port: int, addon: Path, extra: tuple[str, ...] = ()) -> Iterator[int]:
    """mitmdump as a reverse proxy to ``127.0.0.1:upstream_port`` for the block; yields its port.

    It terminates each client's TLS with a certificate forged for the client's SNI and signed
    by its own CA (made in ``confdir`` on first start: ``mitmproxy-ca-cert.pem`` is the public
    certificate clients are told to trust), and opens its own TLS connection upstream.  The
    lazy strategy connects upstream only once the client's request has arrived.
    """
    port = free_port()
    cmd = [
        str(MITMDUMP),
        "--mode",
        f"reverse:https://{HOST}:{upstream_port}@{port}",
        "--listen-host",
        HOST,
        "--set",
        f"confdir={confdir}",
        "--set",
        "connection_strategy=lazy",
        *extra,
        "-s",
        str(addon),
        "--flow-detail",
        "1",
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or listening(port), "mitmdump to listen", timeout=60)
        if proc.poll() is not None:
            raise CaptureError(f"mitmdump exited early:\n{log.read_text()[-2000:]}")
        wait_for((confdir / "mitmproxy-ca-cert.pem").is_file, "mitmproxy's CA")
        yield port
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------
# packet capture
# --------------------------------------------------------------------------


@contextlib.contextmanager
def packet_capture(path: Path, ports: list[int], tool: str, fmt: str, work: Path) -> Iterator[str]:
    """Capture loopback TCP traffic for ``ports`` into ``path`` while the block runs (see
    :func:`bpf_capture`). Yields the BPF filter used (for the manifest)."""
    bpf = f"host {HOST} and (" + " or ".join(f"tcp port {p}" for p in ports) + ")"
    with bpf_capture(path, bpf, work, tool=tool, fmt=fmt):
        yield bpf


@contextlib.contextmanager
def bpf_capture(path: Path, bpf: str, work: Path, tool: str = "dumpcap", fmt: str = "pcapng") -> Iterator[None]:
    """Capture loopback traffic matching ``bpf`` into ``path`` while the block runs.

    Readiness: dumpcap/tcpdump write the file header only after the BPF
    filter is attached, so an existing, non-empty file means "listening".
    Stop: wait briefly, then SIGINT so the tool flushes every packet.
    """
    if tool == "dumpcap":
        cmd = ["dumpcap", "-q", "-i", "lo", "-f", bpf, "-w", str(path)]
        if fmt == "pcap":
            cmd.insert(1, "-P")
    else:  # tcpdump writes classic pcap, full packets (-s 0), flushed per packet (-U)
        cmd = ["tcpdump", "-i", "lo", "-n", "-s", "0", "-U", "-Z", "root", "-w", str(path), bpf]
    log = work / f"capture-{path.stem}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: proc.poll() is not None or (path.exists() and path.stat().st_size >= 24),
            f"{tool} to start capturing",
        )
        if proc.poll() is not None:
            raise CaptureError(f"{tool} exited early (need root/CAP_NET_RAW?):\n{log.read_text()}")
        time.sleep(0.3)
        yield
        time.sleep(0.7)  # let the last FIN/ACKs reach the capture buffer
    finally:
        stop_process(proc, signal.SIGINT)
    if proc.returncode not in (0, None, -signal.SIGINT):
        raise CaptureError(f"{tool} failed ({proc.returncode}):\n{log.read_text()}")


# --- a minimal pcap/pcapng reader: only to learn client ports from SYNs ---


def _iter_pcap(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """Yield (timestamp, linktype, frame) from classic pcap bytes."""
    magic = data[:4]
    endian = {
        b"\xd4\xc3\xb2\xa1": "<",
        b"\xa1\xb2\xc3\xd4": ">",
        b"\x4d\x3c\xb2\xa1": "<",
        b"\xa1\xb2\x3c\x4d": ">",
    }[magic]
    frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, sub, incl, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        yield sec + sub * frac, linktype, data[off + 16 : off + 16 + incl]
        off += 16 + incl


def _iter_pcapng(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """Yield (timestamp, linktype, frame) from pcapng bytes (SHB/IDB/EPB only)."""
    endian, off = "<", 0
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    while off + 12 <= len(data):
        btype = struct.unpack(endian + "I", data[off : off + 4])[0]
        if data[off : off + 4] == b"\x0a\x0d\x0d\x0a":  # section header: (re)learn byte order
            endian = "<" if data[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, interfaces = 0x0A0D0D0A, []
        blen = struct.unpack(endian + "I", data[off + 4 : off + 8])[0]
        body = data[off + 8 : off + blen - 4]
        if btype == 1:  # interface description
            linktype = struct.unpack(endian + "H", body[:2])[0]
            tick, opt = 1e-6, 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack(endian + "HH", body[opt : opt + 4])
                if code == 0:
                    break
                if code == 9:  # if_tsresol
                    v = body[opt + 4]
                    tick = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
                opt += 4 + (olen + 3) // 4 * 4
            interfaces.append((linktype, tick))
        elif btype == 6:  # enhanced packet
            iface, hi, lo, caplen, _ = struct.unpack(endian + "IIIII", body[:20])
            linktype, tick = interfaces[iface]
            yield ((hi << 32) | lo) * tick, linktype, body[20 : 20 + caplen]
        off += blen


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """Strip the link layer; return the IPv4 packet or None."""
    if linktype == 1 and frame[12:14] == b"\x08\x00":  # Ethernet (dumpcap on lo)
        return frame[14:]
    if linktype == 113 and frame[14:16] == b"\x08\x00":  # Linux cooked
        return frame[16:]
    if linktype == 276 and frame[0:2] == b"\x08\x00":  # Linux cooked v2
        return frame[20:]
    if linktype in (101, 228) and frame[:1] and frame[0] >> 4 == 4:  # raw IPv4
        return frame
    if linktype in (0, 108) and frame[4:5] and frame[4] >> 4 == 4:  # BSD loopback
        return frame[4:]
    return None


def tcp_syns(path: Path) -> list[tuple[float, int, int]]:
    """(timestamp, client port, server port) of every initial SYN in a capture."""
    data = path.read_bytes()
    packets = _iter_pcapng(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else _iter_pcap(data)
    syns = []
    for ts, linktype, frame in packets:
        ip = _ip_payload(linktype, frame)
        if not ip or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4 :]
        sport, dport = struct.unpack("!HH", tcp[:4])
        flags = tcp[13]
        if flags & 0x02 and not flags & 0x10:  # SYN without ACK
            syns.append((ts, sport, dport))
    return syns


# --------------------------------------------------------------------------
# connection records and clients
# --------------------------------------------------------------------------


@dataclass(kw_only=True)
class Connection:
    """One client connection as recorded in MANIFEST.json (field order = JSON order)."""

    tcp_stream: int | None = None  # Wireshark's tcp.stream numbering (first-SYN order)
    scenario: str  # "plain", "split-client-hello", "http-connect", "mtls", "mitmproxy-*", "mtls-lookalike-ca"
    label: str = "clean"  # ground truth: "clean" or "intercepted"
    stack: str
    stack_version: str
    client: str
    client_ip: str = HOST
    client_port: int | None = None
    server_ip: str = HOST
    server_port: int
    sni: str
    tls_version_requested: str
    tls_version_negotiated: str
    alpn_offered: list[str]
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    def manifest(self) -> dict[str, object]:
        d = asdict(self)
        del d["started"], d["ended"]
        return d


@dataclass
class Env:
    """Shared state for one run: PKI, scratch dir, versions, skipped stacks."""

    pki: Pki
    work: Path
    versions: dict[str, str]
    java_enabled: bool
    skipped: list[dict[str, str]] = field(default_factory=list)
    certs: dict[str, dict[str, str]] = field(default_factory=dict)  # more certificates for the manifest


@dataclass
class ClientRun:
    """What a client function reports about the connection it just made."""

    client: str
    requested: str
    negotiated: str
    alpn: list[str]
    client_port: int | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


def expect_payload(stack: str, text: str) -> None:
    """Every client must have received the HTTP body, proving app data flowed."""
    if PAYLOAD.decode().strip() not in text:
        raise CaptureError(f"{stack}: HTTP response body not received:\n{text[-2000:]}")


def search(pattern: str, text: str, stack: str) -> str:
    m = re.search(pattern, text)
    if not m:
        raise CaptureError(f"{stack}: could not find /{pattern}/ in output:\n{text[-2000:]}")
    return m.group(1)


def client_openssl(env: Env, port: int, sni: str, tls12: bool, extra: tuple[str, ...] = ()) -> ClientRun:
    """openssl s_client with SNI and ALPN h2,http/1.1, verifying the chain."""
    flag = "-tls1_2" if tls12 else "-tls1_3"
    cmd = [
        "openssl",
        "s_client",
        "-connect",
        f"{HOST}:{port}",
        "-servername",
        sni,
        "-alpn",
        "h2,http/1.1",
        "-CAfile",
        str(env.pki.root_cert),
        "-verify_hostname",
        sni,
        "-verify_return_error",
        "-ign_eof",
        flag,
        *extra,
    ]
    res = run_client_tool(cmd, stdin_data=http_get(sni, port))
    # mitmproxy closes without a close_notify: s_client exits 1 after the whole response arrived
    eof_after_body = PAYLOAD.decode().strip() in res.stdout and "unexpected eof while reading" in res.stderr
    if res.returncode != 0 and not eof_after_body:
        raise CaptureError(f"openssl s_client failed:\n{res.text[-2000:]}")
    expect_payload("openssl", res.stdout)
    version = search(r"New, (TLSv1\.\d), Cipher", res.stdout, "openssl")
    return ClientRun(shown(cmd), "TLSv1.2 only" if tls12 else "TLSv1.3 only", version, ["h2", "http/1.1"])


def client_curl(env: Env, port: int, sni: str, tls12: bool, proxy_port: int | None = None) -> ClientRun:
    """curl with --resolve (or through a CONNECT proxy) and --cacert."""
    url = f"https://{sni}:{port}/{PAYLOAD_NAME}"
    cmd = ["curl", "-sS", "-v", "--cacert", str(env.pki.root_cert), "-o", "-"]
    if proxy_port is None:
        cmd += ["--resolve", f"{sni}:{port}:{HOST}"]
    else:
        cmd += ["--proxy", f"http://{HOST}:{proxy_port}"]
    if tls12:
        cmd += ["--tlsv1.2", "--tls-max", "1.2"]
    cmd.append(url)
    res = run_client_tool(cmd)
    if res.returncode != 0:
        raise CaptureError(f"curl failed:\n{res.text[-2000:]}")
    expect_payload("curl", res.stdout)
    version = search(r"SSL connection using (TLSv1\.\d)", res.stderr, "curl")
    return ClientRun(
        shown(cmd), "TLSv1.2 only" if tls12 else "default (up to TLSv1.3)", version, ["h2", "http/1.1"]
    )


def python_context(env: Env, tls12: bool) -> ssl.SSLContext:
    """Stdlib default client context, ALPN like http.client sends it."""
    ctx = ssl.create_default_context(cafile=str(env.pki.root_cert))
    ctx.set_alpn_protocols(["http/1.1"])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def read_to_eof(sock: ssl.SSLSocket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def client_python(env: Env, port: int, sni: str, tls12: bool) -> ClientRun:
    """Python stdlib ``ssl`` client (SSLSocket), run in-process."""
    ctx = python_context(env, tls12)
    raw = socket.socket()
    raw.settimeout(CLIENT_TIMEOUT)
    raw.bind((HOST, 0))
    raw.connect((HOST, port))
    local_port = raw.getsockname()[1]
    with ctx.wrap_socket(raw, server_hostname=sni) as tls:
        version = tls.version() or "?"
        tls.sendall(http_get(sni, port))
        body = read_to_eof(tls)
    expect_payload("python", body.decode("utf-8", "replace"))
    return ClientRun(
        "python ssl.create_default_context().wrap_socket()",
        "TLSv1.2 only" if tls12 else "default (up to TLSv1.3)",
        version,
        ["http/1.1"],
        local_port,
    )


def client_gnutls(env: Env, port: int, sni: str, tls12: bool) -> ClientRun:
    """gnutls-cli with --sni-hostname and CA verification, default priorities."""
    cmd = [
        "gnutls-cli",
        "--x509cafile",
        str(env.pki.root_cert),
        "--port",
        str(port),
        "--sni-hostname",
        sni,
        "--verify-hostname",
        sni,
    ]
    if tls12:
        cmd += ["--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"]
    cmd.append(HOST)
    # gnutls-cli hangs up on stdin EOF, so stdin stays open until the server closes.
    res = run_client_tool(cmd, stdin_data=http_get(sni, port), hold_stdin=True)
    expect_payload("gnutls", res.stdout)
    version = "TLSv" + search(r"\(TLS(1\.\d)-", res.text, "gnutls")
    return ClientRun(shown(cmd), "TLSv1.2 only" if tls12 else "default (up to TLSv1.3)", version, [])


NODE_CLIENT = r"""
const https = require('https'), fs = require('fs');
const [host, port, sni, maxVersion, caFile, path] = process.argv.slice(1);
let protocol = null, localPort = null;
const req = https.request({
  host, port: Number(port), path, servername: sni, agent: false,
  ca: fs.readFileSync(caFile), maxVersion,
  headers: { Host: `${sni}:${port}` },
}, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => { body += d; });
  res.on('end', () => console.log(JSON.stringify({ protocol, localPort, status: res.statusCode, body })));
});
req.on('socket', (s) => s.on('secureConnect', () => {
  protocol = s.getProtocol();
  localPort = s.localPort;
}));
req.on('error', (e) => { console.error(e); process.exit(1); });
req.end();
"""


def client_node(env: Env, port: int, sni: str, tls12: bool) -> ClientRun:
    """Node.js ``https.request`` (default Node TLS settings, no ALPN)."""
    max_version = "TLSv1.2" if tls12 else "TLSv1.3"
    cmd = [
        "node",
        "-e",
        NODE_CLIENT,
        HOST,
        str(port),
        sni,
        max_version,
        str(env.pki.root_cert),
        f"/{PAYLOAD_NAME}",
    ]
    res = run_client_tool(cmd)
    if res.returncode != 0:
        raise CaptureError(f"node failed:\n{res.text[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    expect_payload("node", out["body"])
    return ClientRun(
        f"node https.request({{servername, maxVersion: '{max_version}'}})",
        "TLSv1.2 only" if tls12 else "default (up to TLSv1.3)",
        out["protocol"],
        [],
        out["localPort"],
    )


JAVA_CLIENT = r"""
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.List;
import javax.net.ssl.*;

public class TlsdetectJavaClient {
    public static void main(String[] a) throws Exception {
        String host = a[0], sni = a[2], proto = a[3], caFile = a[4];
        int port = Integer.parseInt(a[1]);
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(caFile)) {
            ks.setCertificateEntry("root", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        Socket raw = new Socket();
        raw.bind(new InetSocketAddress(host, 0));
        raw.connect(new InetSocketAddress(host, port), 10000);
        System.out.println("LOCALPORT " + raw.getLocalPort());
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(raw, sni, port, true);
        SSLParameters p = s.getSSLParameters();
        p.setServerNames(List.of(new SNIHostName(sni)));
        p.setEndpointIdentificationAlgorithm("HTTPS");
        if (!proto.equals("default")) p.setProtocols(new String[] {proto});
        s.setSSLParameters(p);
        s.startHandshake();
        System.out.println("PROTOCOL " + s.getSession().getProtocol());
        OutputStream out = s.getOutputStream();
        out.write(("GET /" + a[5] + " HTTP/1.0\r\nHost: " + sni + ":" + port + "\r\n\r\n")
                  .getBytes(StandardCharsets.US_ASCII));
        out.flush();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        s.getInputStream().transferTo(body);
        System.out.println(body.toString(StandardCharsets.UTF_8));
        s.close();
    }
}
"""


def client_java(env: Env, port: int, sni: str, tls12: bool) -> ClientRun:
    """Java 17 single-file program using SSLSocket (optional stack)."""
    src = env.work / "TlsdetectJavaClient.java"
    src.write_text(JAVA_CLIENT)
    proto = "TLSv1.2" if tls12 else "default"
    cmd = ["java", str(src), HOST, str(port), sni, proto, str(env.pki.root_cert), PAYLOAD_NAME]
    try:
        res = run_client_tool(cmd, timeout=120)
        if res.returncode != 0:
            raise CaptureError(f"java exited {res.returncode}:\n{res.text[-1500:]}")
        expect_payload("java", res.stdout)
        version = search(r"PROTOCOL (TLSv1\.\d)", res.stdout, "java")
        local_port = int(search(r"LOCALPORT (\d+)", res.stdout, "java"))
    except CaptureError as exc:
        raise OptionalStackError(str(exc)) from exc
    return ClientRun(
        f"java TlsdetectJavaClient.java (SSLSocket, protocols={proto})",
        "TLSv1.2 only" if tls12 else "default (up to TLSv1.3)",
        version,
        [],
        local_port,
    )


def client_python_split_hello(env: Env, port: int, sni: str) -> ClientRun:
    """Python ``SSLObject`` over MemoryBIOs, ClientHello sent in two TCP segments.

    Why MemoryBIO: it hands us the exact ClientHello record bytes, so we can
    write them to a TCP_NODELAY socket in two ``send()`` calls with a pause in
    between.  The rest of the handshake and the HTTP exchange are normal.
    """
    ctx = python_context(env, tls12=False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    sock = socket.socket()
    sock.settimeout(CLIENT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, 0))
    with sock:
        sock.connect((HOST, port))
        local_port = sock.getsockname()[1]
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        if len(hello) <= SPLIT_AT:
            raise CaptureError(f"ClientHello only {len(hello)} bytes, cannot split at {SPLIT_AT}")
        sock.sendall(hello[:SPLIT_AT])
        time.sleep(SPLIT_PAUSE)
        sock.sendall(hello[SPLIT_AT:])

        def pump() -> bool:
            """Flush pending TLS output, then feed one read from the socket."""
            if pending := outgoing.read():
                sock.sendall(pending)
            data = sock.recv(65536)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
            return bool(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not pump():
                    raise CaptureError("split-hello: server closed during handshake") from None
        version = tls.version() or "?"
        tls.write(http_get(sni, port))
        body = b""
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                if not pump():
                    break
                continue
            except ssl.SSLZeroReturnError:
                break
            if not chunk:  # SSLObject.read() returns b"" after close_notify
                break
            body += chunk
        with contextlib.suppress(ssl.SSLError):
            tls.unwrap()  # answer the server's close_notify, like SSLSocket would
        if pending := outgoing.read():
            sock.sendall(pending)
    expect_payload("python split-hello", body.decode("utf-8", "replace"))
    return ClientRun(
        "python ssl.SSLObject via MemoryBIO (manual socket I/O)",
        "default (up to TLSv1.3)",
        version,
        ["http/1.1"],
        local_port,
        [
            (
                f"ClientHello split over 2 TCP segments at byte {SPLIT_AT} "
                f"(record length {len(hello)}, {SPLIT_PAUSE}s pause, TCP_NODELAY)"
            )
        ],
        {"client_hello_segments": 2, "split_at_byte": SPLIT_AT, "client_hello_record_bytes": len(hello)},
    )


ClientFn = Callable[[Env, int, str, bool], ClientRun]
STACK_CLIENTS: list[tuple[str, ClientFn]] = [
    ("openssl", client_openssl),
    ("curl", client_curl),
    ("python", client_python),
    ("gnutls", client_gnutls),
    ("node", client_node),
    ("java", client_java),
]


def record(
    env: Env,
    stack: str,
    sni: str,
    server_port: int,
    fn: Callable[[], ClientRun],
    *,
    expected_version: str,
    scenario: str = "plain",
) -> Connection:
    """Run one client, time-stamp it and check the negotiated version."""
    time.sleep(CLIENT_GAP)  # keeps connections apart in time, for humans and port matching
    started = time.time()
    run_info = fn()
    ended = time.time()
    if run_info.negotiated != expected_version:
        raise CaptureError(f"{stack}: negotiated {run_info.negotiated}, expected {expected_version}")
    print(f"    {stack:8s} {sni:34s} -> {run_info.negotiated}")
    return Connection(
        scenario=scenario,
        stack=stack,
        stack_version=env.versions.get(stack, "unknown"),
        client=run_info.client,
        client_port=run_info.client_port,
        server_port=server_port,
        sni=sni,
        tls_version_requested=run_info.requested,
        tls_version_negotiated=run_info.negotiated,
        alpn_offered=run_info.alpn,
        notes=run_info.notes,
        details=run_info.details,
        started=started,
        ended=ended,
    )


def assign_client_ports(capture: Path, conns: list[Connection]) -> None:
    """Match each connection to its SYN by server port and time window.

    Clients run strictly one after another, so the single SYN towards the
    connection's server port inside its run window is its own.  Ports that a
    client reported itself are cross-checked.  Also numbers the TCP streams
    the way Wireshark does (order of first packet).
    """
    syns = tcp_syns(capture)
    for conn in conns:
        hits = [s for s in syns if s[2] == conn.server_port and conn.started <= s[0] <= conn.ended]
        if len(hits) != 1:
            raise CaptureError(
                f"{capture.name}: expected 1 SYN for {conn.stack} -> :{conn.server_port}, found {len(hits)}"
            )
        if conn.client_port not in (None, hits[0][1]):
            raise CaptureError(
                f"{conn.stack}: client reported port {conn.client_port}, capture shows {hits[0][1]}"
            )
        conn.client_port = hits[0][1]
    if len(syns) != len(conns):
        raise CaptureError(f"{capture.name}: {len(syns)} TCP connections captured, {len(conns)} expected")
    order = sorted(syns)
    for conn in conns:
        conn.tcp_stream = next(i for i, s in enumerate(order) if s[1] == conn.client_port)
    conns.sort(key=lambda c: c.tcp_stream or 0)


# --------------------------------------------------------------------------
# capture groups
# --------------------------------------------------------------------------


@dataclass
class CaptureResult:
    """One finished capture file plus everything the manifest says about it."""

    path: Path
    fmt: str
    description: str
    bpf: str
    servers: list[ServerInfo]
    connections: list[Connection]


def capture_stacks(env: Env, name: str, fmt: str, tool: str, tls12: bool) -> CaptureResult:
    """One server, every client stack in turn (TLS 1.3-capable or TLS 1.2-only)."""
    path = env.work / f"{name}.{fmt}"
    path.unlink(missing_ok=True)
    expected = "TLSv1.2" if tls12 else "TLSv1.3"
    role = "tls12-only" if tls12 else "tls13"
    conns: list[Connection] = []
    print(f"  {path.name}: server {role}")
    with (
        openssl_server(env.pki, env.work, role, tls12_only=tls12) as server,
        packet_capture(path, [server.port], tool, fmt, env.work) as bpf,
    ):
        for stack, fn in STACK_CLIENTS:
            if stack == "java" and not env.java_enabled:
                continue
            sni = stack_sni(stack)
            conn = record(
                env,
                stack,
                sni,
                server.port,
                functools.partial(fn, env, server.port, sni, tls12),
                expected_version=expected,
            )
            if tls12:
                conn.notes.append("server forced to TLS 1.2: Certificate message in clear")
            conns.append(conn)
    assign_client_ports(path, conns)
    desc = (
        "TLS 1.2-only openssl s_server; every client stack requests TLS 1.2, so the "
        "server Certificate (leaf + intermediate) is visible in clear"
        if tls12
        else "TLS 1.2/1.3 openssl s_server; every client stack with its default or TLS 1.3 "
        "settings (TLS 1.3 negotiated, certificates encrypted)"
    )
    return CaptureResult(path, fmt, desc, bpf, [server], conns)


def capture_edge_cases(env: Env, name: str, fmt: str, tool: str) -> CaptureResult:
    """Split ClientHello, TLS after an HTTP CONNECT preamble, and TLS 1.2 mTLS."""
    path = env.work / f"{name}.{fmt}"
    path.unlink(missing_ok=True)
    conns: list[Connection] = []
    print(f"  {path.name}: split hello, CONNECT preamble, mTLS")
    with contextlib.ExitStack() as stack:
        split_srv = stack.enter_context(openssl_server(env.pki, env.work, "split"))
        upstream = stack.enter_context(openssl_server(env.pki, env.work, "proxy-upstream", captured=False))
        proxy = stack.enter_context(ConnectProxy(upstream.port))
        mtls_srv = stack.enter_context(openssl_server(env.pki, env.work, "mtls", tls12_only=True, mtls=True))
        bpf = stack.enter_context(
            packet_capture(path, [split_srv.port, proxy.port, mtls_srv.port], tool, fmt, env.work)
        )

        sni = stack_sni("split")
        conns.append(
            record(
                env,
                "python",
                sni,
                split_srv.port,
                lambda: client_python_split_hello(env, split_srv.port, sni),
                expected_version="TLSv1.3",
                scenario="split-client-hello",
            )
        )

        sni = stack_sni("proxy")
        conn = record(
            env,
            "curl",
            sni,
            proxy.port,
            lambda: client_curl(env, upstream.port, sni, False, proxy.port),
            expected_version="TLSv1.3",
            scenario="http-connect",
        )
        if proxy.errors:
            raise CaptureError(f"CONNECT proxy failed: {proxy.errors}")
        conn.notes.append(
            f"HTTP CONNECT preamble: 'CONNECT {sni}:{upstream.port} HTTP/1.1' -> "
            f"'200 Connection established', then TLS in the same TCP stream; the "
            f"proxy->server leg (port {upstream.port}) is deliberately not captured"
        )
        conn.details = {
            "connect_target": f"{sni}:{upstream.port}",
            "proxy_response": "HTTP/1.1 200 Connection established",
            "upstream_server_port": upstream.port,
        }
        conns.append(conn)

        sni = stack_sni("mtls")
        extra = (
            "-cert",
            str(env.pki.client_cert),
            "-key",
            str(env.pki.client_key),
            "-cert_chain",
            str(env.pki.inter_cert),
        )
        conn = record(
            env,
            "openssl",
            sni,
            mtls_srv.port,
            lambda: client_openssl(env, mtls_srv.port, sni, True, extra),
            expected_version="TLSv1.2",
            scenario="mtls",
        )
        conn.notes.append(
            "mTLS on TLS 1.2: server CertificateRequest, client Certificate "
            "(client leaf + intermediate) and server Certificate all in clear"
        )
        conn.details = {
            "client_certificate_subject": describe_cert(env.pki.client_cert)["subject"],
            "client_certificate_chain": ["client leaf", "intermediate CA"],
        }
        conns.append(conn)
    assign_client_ports(path, conns)
    return CaptureResult(
        path,
        fmt,
        "edge cases: ClientHello split over 2 TCP segments; TLS behind an HTTP CONNECT "
        "preamble (client->proxy leg); mutual TLS on TLS 1.2",
        bpf,
        [
            split_srv,
            upstream,
            ServerInfo("connect-proxy", proxy.port, "n/a", "python CONNECT proxy (in make_captures.py)"),
            mtls_srv,
        ],
        conns,
    )


def _has_more_lines(path: Path, n: int) -> bool:
    return path.exists() and len(path.read_text().splitlines()) > n


def _upstream_leg(env: Env, client: Connection, rec: dict[str, object], server_port: int) -> Connection:
    """The connection mitmproxy opened upstream for ``client``, from the addon's log line."""
    sockname = rec["sockname"]
    assert isinstance(sockname, list)
    offers = rec["alpn_offers"]
    assert isinstance(offers, list)
    return Connection(
        scenario="mitmproxy-upstream-leg",
        label="intercepted",
        stack="mitmproxy",
        stack_version=env.versions.get("mitmproxy", "unknown"),
        client=f"mitmdump --mode reverse (re-originates the {client.stack} connection on its own TLS stack)",
        client_port=int(sockname[1]),
        server_port=server_port,
        sni=str(rec["sni"] or ""),
        tls_version_requested="mitmproxy default",
        tls_version_negotiated=str(rec["tls_version"]),
        alpn_offered=[str(a) for a in offers],
        notes=[
            f"mitmproxy's own ClientHello towards the real server, for the {client.stack} connection "
            f"in tcp stream of client port {client.client_port}; the server's real chain is in clear when TLS 1.2"
        ],
        started=client.started,
        ended=client.ended,
    )


def capture_interception(env: Env, name: str, fmt: str, tool: str) -> CaptureResult:
    """Interception the detector must flag: every stack through mitmproxy, and a look-alike mTLS client.

    mitmproxy runs as a reverse proxy in front of an ``openssl s_server``; the clients trust its
    CA (as a corporate TLS-inspection box's clients do) and limit themselves to TLS 1.2, so the
    certificate it forges is in clear.  Both legs are captured: the client's own hello answered
    with the forged chain, and mitmproxy's hello to the real server.  Then ``openssl s_client``
    presents a client certificate with the sample client's subject, issued by a look-alike of the
    sample root (same DN, another key), to an mTLS server whose trust store also holds that root.
    """
    path = env.work / f"{name}.{fmt}"
    path.unlink(missing_ok=True)
    confdir = env.work / "mitmproxy"
    confdir.mkdir(exist_ok=True)
    up_log = env.work / "mitmproxy-upstream.jsonl"
    up_log.unlink(missing_ok=True)  # a redo without Java starts afresh
    addon = env.work / "mitm_upstream_log.py"
    addon.write_text(MITM_ADDON.format(log=str(up_log)))
    trust = env.work / "trust-with-lookalike.pem"
    trust.write_bytes(env.pki.root_cert.read_bytes() + env.pki.lookalike_root.read_bytes())
    conns: list[Connection] = []
    print(f"  {path.name}: mitmproxy (TLS 1.2 client legs + upstream legs), look-alike CA mTLS")
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(openssl_server(env.pki, env.work, "mitm-upstream"))
        # verify the real server as a TLS-inspection box does; HTTP/1 only, since the clients offer h2
        # but speak HTTP/1.0 (``openssl s_client`` sends the request as text)
        opts = ("--set", f"ssl_verify_upstream_trusted_ca={env.pki.root_cert}", "--set", "http2=false")
        mitm_port = stack.enter_context(mitmdump(confdir, env.work / "mitmdump.log", upstream.port, addon, opts))
        mitm_ca = confdir / "mitmproxy-ca-cert.pem"
        env.certs["mitmproxy_ca"] = describe_cert(mitm_ca)
        trusting = replace(env, pki=replace(env.pki, root_cert=mitm_ca))
        mtls_srv = stack.enter_context(
            openssl_server(env.pki, env.work, "mtls-lookalike", tls12_only=True, mtls=True, ca_file=trust)
        )
        bpf = stack.enter_context(
            packet_capture(path, [mitm_port, upstream.port, mtls_srv.port], tool, fmt, env.work)
        )
        for stack_name, fn in STACK_CLIENTS:
            if stack_name == "java" and not env.java_enabled:
                continue
            sni = stack_sni(stack_name)
            seen = len(up_log.read_text().splitlines()) if up_log.exists() else 0
            conn = record(
                trusting,
                stack_name,
                sni,
                mitm_port,
                functools.partial(fn, trusting, mitm_port, sni, True),
                expected_version="TLSv1.2",
                scenario="mitmproxy-client-leg",
            )
            conn.label = "intercepted"
            conn.notes.append(
                "client leg through mitmproxy: the client's own hello, answered with a certificate mitmproxy "
                "forged for the SNI and signed with its CA (TLS 1.2: in clear); the client trusts that CA"
            )
            wait_for(functools.partial(_has_more_lines, up_log, seen), f"mitmproxy's upstream leg for {stack_name}")
            lines = up_log.read_text().splitlines()
            if len(lines) != seen + 1:
                raise CaptureError(f"mitmproxy opened {len(lines) - seen} upstream connections for {stack_name}")
            conns += [conn, _upstream_leg(env, conn, json.loads(lines[-1]), upstream.port)]

        sni = stack_sni("mtls-lookalike")
        extra = ("-cert", str(env.pki.impostor_cert), "-key", str(env.pki.impostor_key))
        conn = record(
            env,
            "openssl",
            sni,
            mtls_srv.port,
            lambda: client_openssl(env, mtls_srv.port, sni, True, extra),
            expected_version="TLSv1.2",
            scenario="mtls-lookalike-ca",
        )
        impostor = describe_cert(env.pki.impostor_cert)
        conn.label = "intercepted"
        conn.notes.append(
            "mTLS on TLS 1.2 with a client certificate for the sample client's identity issued by a look-alike "
            "of the sample root (same DN, another key); the server was given that root too (its CAfile holds "
            "both), as after a trust-store compromise"
        )
        conn.details = {
            "client_certificate_subject": impostor["subject"],
            "client_certificate_issuer": impostor["issuer"],
            "client_certificate_akid": impostor.get("akid", ""),
            "client_certificate_chain": ["client leaf (issued directly by the look-alike root)"],
        }
        conns.append(conn)
    assign_client_ports(path, conns)
    return CaptureResult(
        path,
        fmt,
        "interception: every client stack through mitmproxy (reverse proxy forging certificates with its own "
        "CA; TLS 1.2 client legs and mitmproxy's upstream legs), and an mTLS client certificate from a "
        "look-alike of the sample root",
        bpf,
        [
            upstream,
            ServerInfo("mitmproxy", mitm_port, "mitmproxy defaults", f"mitmdump --mode reverse:https://{HOST}:"
                       f"{upstream.port} ({env.versions.get('mitmproxy', 'unknown')})"),
            mtls_srv,
        ],
        conns,
    )


def with_optional_java(env: Env, make: Callable[[], CaptureResult]) -> CaptureResult:
    """Run a group; if only Java failed, note why and redo the group without it."""
    try:
        return make()
    except OptionalStackError as exc:
        print(f"  ! java skipped: {str(exc).splitlines()[0]}")
        env.skipped.append({"stack": "java", "reason": str(exc)[:500]})
        env.java_enabled = False
        return make()


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (the manifest must not name a temp dir)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


def write_mesh_ca(path: Path, pki: Pki) -> None:
    """The sample mesh CA for ``baseline fit --mesh-ca``: the root and its issuing intermediate.

    Public certificates only (checked: a private key here would be a leak).  Both are given
    because the scorer matches a certificate's direct issuer, and the leaves are issued by the
    intermediate; the root is what a look-alike copies.
    """
    text = pki.root_cert.read_text() + pki.inter_cert.read_text()
    if "PRIVATE KEY" in text:
        raise CaptureError("refusing to write a private key into the mesh CA file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_manifest(
    manifest_path: Path, out: Path, env: Env, results: list[CaptureResult], tool: str, mesh_ca: Path
) -> Path:
    """MANIFEST.json: ground truth for every connection in every capture."""
    tool_version = first_line(run([tool, "--version"]))
    manifest = {
        "generator": "scripts/make_captures.py",
        "regenerate": "python3 scripts/make_captures.py",
        "captures_dir": repo_path(out),
        "mesh_ca_pem": repo_path(mesh_ca),
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "provenance": "tlsdetect's own captures of real TLS stacks on 127.0.0.1 with a "
        "throw-away test PKI; no third-party data",
        "capture_tool": tool_version,
        "server_stack": f"openssl s_server ({env.versions['openssl']})",
        "addresses": f"all traffic is {HOST} <-> {HOST} (loopback)",
        "http_request": http_get("<sni>", 0).decode().replace(":0", ":<port>"),
        "pki": {
            "root_ca": describe_cert(env.pki.root_cert),
            "intermediate_ca": describe_cert(env.pki.inter_cert),
            "server_leaf": describe_cert(env.pki.server_cert)
            | {"subject_alt_names": f"DNS:{BASE_SNI}, DNS:*.{BASE_SNI}"},
            "client_leaf": describe_cert(env.pki.client_cert),
            "lookalike_root_ca": describe_cert(env.pki.lookalike_root),
            "impostor_client_leaf": describe_cert(env.pki.impostor_cert),
            **env.certs,
        },
        "stack_versions": env.versions,
        "skipped_stacks": env.skipped,
        "captures": {
            r.path.name: {
                "label": "clean" if r.path.stem in CLEAN_CAPTURES else "intercepted",
                "format": r.fmt,
                "size_bytes": (out / r.path.name).stat().st_size,
                "description": r.description,
                "capture_filter": r.bpf,
                "servers": [asdict(s) for s in r.servers],
                "client_hello_count": len(r.connections),
                "connections": [c.manifest() for c in r.connections],
            }
            for r in results
        },
    }
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest_path


def publish(results: list[CaptureResult], out: Path, old_manifest: Path) -> None:
    """Move finished captures into ``out`` and drop stale ones from older runs."""
    new_names = {r.path.name for r in results}
    if old_manifest.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for name in json.loads(old_manifest.read_text())["captures"]:
                if name not in new_names and "/" not in name:
                    (out / name).unlink(missing_ok=True)
    for r in results:
        shutil.copyfile(r.path, out / r.path.name)


def self_check(out: Path, results: list[CaptureResult]) -> None:
    """If tshark exists, confirm one ClientHello per recorded connection."""
    if shutil.which("tshark") is None:
        print("tshark not found: skipping self-check")
        return
    for r in results:
        res = run_client_tool(
            [
                "tshark",
                "-r",
                str(out / r.path.name),
                "-Y",
                "tls.handshake.type==1",
                "-T",
                "fields",
                "-e",
                "tcp.stream",
                "-e",
                "tls.handshake.extensions_server_name",
            ]
        )
        rows = [ln for ln in res.stdout.splitlines() if ln.strip()]
        expected = [f"{c.tcp_stream}\t{c.sni}" for c in r.connections]
        if rows != expected:
            raise CaptureError(
                f"tshark self-check failed for {r.path.name}:\ngot {rows}\nexpected {expected}"
            )
        print(f"  tshark: {r.path.name}: {len(rows)} ClientHellos, one per connection")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "pcaps", help="capture directory (default: %(default)s)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="ground truth (default: %(default)s)")
    p.add_argument(
        "--mesh-ca-out", type=Path, default=DEFAULT_MESH_CA, help="sample mesh CA, public certs (default: %(default)s)"
    )
    p.add_argument(
        "--capture-tool",
        choices=("auto", "dumpcap", "tcpdump"),
        default="auto",
        help="dumpcap (pcap + pcapng) is preferred; tcpdump writes pcap only",
    )
    p.add_argument("--no-java", action="store_true", help="skip the optional Java client")
    p.add_argument("--keep-workdir", action="store_true", help="keep PKI/logs for debugging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM -> SystemExit so every finally/with block stops its servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        tool = require_tools(args.capture_tool)
        java = not args.no_java and shutil.which("java") is not None
        args.out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="tlsdetect-captures-"))
        try:
            env = Env(make_pki(work), work, detect_versions(java), java)
            if not java:
                env.skipped.append({"stack": "java", "reason": "disabled or java not on PATH"})
            ng = "pcapng" if tool == "dumpcap" else "pcap"
            print(f"work dir {work}; capturing with {tool}")
            results = [
                with_optional_java(env, lambda: capture_stacks(env, "tls13_stacks", ng, tool, False)),
                with_optional_java(env, lambda: capture_stacks(env, "tls12_stacks", "pcap", tool, True)),
                capture_edge_cases(env, "edge_cases", ng, tool),
                with_optional_java(env, lambda: capture_interception(env, "intercepted", ng, tool)),
            ]
            publish(results, args.out, args.manifest)
            write_mesh_ca(args.mesh_ca_out, env.pki)
            manifest = write_manifest(args.manifest, args.out, env, results, tool, args.mesh_ca_out)
            self_check(args.out, results)
        finally:
            if args.keep_workdir:
                print(f"kept work dir {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    except CaptureError as exc:
        print(f"make_captures: ERROR: {exc}", file=sys.stderr)
        return 1
    print("made:")
    for r in results:
        f = args.out / r.path.name
        print(f"  {f}  {f.stat().st_size} bytes, {len(r.connections)} connections")
    print(f"  {manifest}  {manifest.stat().st_size} bytes")
    print(f"  {args.mesh_ca_out}  (sample mesh CA: root + intermediate, public certificates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
