#!/usr/bin/env python3
"""The INLINE part of the evaluation corpus: real interceptors on the path, seen from both sides.

Why: a reverse proxy on a port of its own is just another server. Here the clients connect to the
real servers' addresses on port 443 and an interceptor on the router answers in their place (an
iptables REDIRECT per client source address), as a corporate middlebox does. Two sensors on the
router record ``inline_client.pcapng`` (users' side: clean legs and client-to-proxy legs) and
``inline_server.pcapng`` (servers' side: clean legs and the proxies' upstream legs, which leave from
the router's own address). Namespaces and rules: ``scripts/eval_netns.py``; docs/eval_corpus.md.

Phases in time order: clean train (no interceptor), then clean test interleaved with interception by
mitmproxy (transparent), sslsplit (transparent, TLS <= 1.2) and the mimicking proxy
(``scripts/mimic_proxy.py``: the client's exact ClientHello upstream). Each interceptor phase has two
halves; each half redirects one group of client addresses while the others keep talking clean. Midway
through the test phases one server's certificate is renewed (new key, same issuer, longer chain); one
name is a pool of two server stacks (Python ssl/OpenSSL and gnutls-serv) behind one address (DNAT round-robin).
A clean TLS 1.2 probe (``probe12``: ``openssl s_client -tls1_2``, as monitoring probes and older stacks
are) reaches every server name a few times in every batch and is never intercepted: with TLS 1.3
everywhere else, its legs are the only ones whose certificates (the renewed one too) travel in clear.

Labels come from the captures: every connection (TCP SYN + ClientHello) read back from each file gets
exactly one row, matched to the client run that made it by client address, server address and time.

    .venv/bin/python scripts/eval_inline.py [--out DIR] [--train 40] [--test 40] [--per-interceptor 25]
        [--probes 2] [--skip java] [--interceptors mitmproxy,sslsplit,mimic] [--seed S]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib
import json
import math
import random
import shutil
import socket
import ssl
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
mec: Any = importlib.import_module("make_eval_corpus")
nets: Any = importlib.import_module("eval_netns")
mc = mec.mc
CaptureError = mc.CaptureError

STACKS = ("openssl", "curl", "python", "gnutls", "node", "java")  # Chromium: not inline (no source binding)
PROBE = "probe12"  # clean TLS 1.2 monitoring probe: every name, every batch, never intercepted
STACK_IP = {s: f"{nets.CLIENT_NET}.{11 + i}" for i, s in enumerate((*STACKS, PROBE))}
IP_STACK = {ip: s for s, ip in STACK_IP.items()}
MIDDLE = nets.MIDDLE_SERVER_SIDE
WWW, RENEWED, POOL, POOL_PY, POOL_GNUTLS = (f"{nets.SERVER_NET}.{n}" for n in (10, 11, 20, 21, 22))
GNUTLS_PORT = 8443  # gnutls-serv binds every address: a port of its own, the DNAT picks it
SERVER_OF = {"www": WWW, "api": WWW, "cdn": RENEWED, "static": RENEWED, "shop": POOL}
INTERCEPTORS = ("mitmproxy", "sslsplit", "mimic")
MIMIC = REPO / "scripts" / "mimic_proxy.py"
PORT_OF = {"mitmproxy": 8081, "sslsplit": 8082, "mimic": 8083}
MIMIC_BODY = "mimic proxy intercepted"
GNUTLS_PAGE = "This is <a href=\"http://www.gnu.org/software/gnutls\">GnuTLS</a>"  # gnutls-serv --http's page
TOOLS = {"openssl": "openssl", PROBE: "openssl", "curl": "curl", "gnutls": "gnutls-cli", "node": "node",
         "java": "javac"}
UPSTREAM_SLACK = 1.0  # seconds an upstream leg may start after its client's run ended (mimic's idle read)
JAVA_TRUST = mec.JAVA_CLIENT.replace(
    'ks.setCertificateEntry("root", CertificateFactory.getInstance("X.509").generateCertificate(in));',
    'int i = 0; for (java.security.cert.Certificate c : CertificateFactory.getInstance("X.509")'
    '.generateCertificates(in)) ks.setCertificateEntry("ca" + (i++), c);',
)
assert JAVA_TRUST != mec.JAVA_CLIENT, "JAVA_CLIENT changed: cannot trust a CA bundle"


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# servers (sockets in the server namespace, threads in this process)
# --------------------------------------------------------------------------------------------------


class _LoggingServer(mec._Server):  # type: ignore[misc]  # mec is loaded by path
    """The corpus's threaded HTTPS server, remembering each peer (tells the pool's backends apart)."""

    peers: set[tuple[str, int]]

    def get_request(self) -> Any:
        req, addr = super().get_request()
        self.peers.add((addr[0], int(addr[1])))
        return req, addr


@dataclass
class PyServer:
    server: _LoggingServer
    sctx: ssl.SSLContext
    thread: threading.Thread


def python_server(ns: str, ip: str, docroot: Path, chain: Path, key: Path) -> PyServer:
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(chain), str(key))
    sctx.set_alpn_protocols(["http/1.1"])
    handler = functools.partial(mec._Handler, directory=str(docroot))
    with nets.entered(ns):
        server = _LoggingServer((ip, 443), handler)
    server.peers = set()
    server.socket = sctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return PyServer(server, sctx, thread)


def stop_server(s: PyServer) -> None:
    s.server.shutdown()
    s.server.server_close()
    s.thread.join(timeout=5)


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@contextlib.contextmanager
def daemon(cmd: list[str], logfile: Path, ready: Callable[[int], bool], what: str, **kw: Any) -> Iterator[int]:
    """A background process for the block (stopped on exit and on error); yields its pid."""
    with logfile.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, **kw)
    try:
        mc.wait_for(lambda: proc.poll() is not None or ready(proc.pid), what, timeout=60)
        if proc.poll() is not None:
            raise CaptureError(f"{what}: exited early ({proc.returncode}):\n{logfile.read_text()[-2000:]}")
        yield proc.pid
    finally:
        mc.stop_process(proc)


@contextlib.contextmanager
def sensor(ns: str, iface: str, path: Path, work: Path) -> Iterator[None]:
    """dumpcap on one interface of the middle box, port 443 only; flushed on exit."""
    cmd = in_ns(ns, ["dumpcap", "-q", "-i", iface, "-f", "tcp port 443", "-w", str(path)])
    with daemon(cmd, work / f"dumpcap-{iface}.log", lambda _: path.exists() and path.stat().st_size >= 24,
                f"dumpcap on {iface}"):
        time.sleep(0.3)
        yield
        time.sleep(0.7)  # the last FIN/ACKs


# --------------------------------------------------------------------------------------------------
# clients (each runs in the client namespace and binds its stack's address and a fresh port)
# --------------------------------------------------------------------------------------------------


@dataclass
class Env:
    work: Path
    trust: Path  # the sample root + every interceptor's CA: the clients of a managed fleet
    cli: str
    ports: dict[str, Iterator[int]] = field(default_factory=dict)
    relay: Any = None
    java_dir: Path | None = None

    def port(self, ip: str) -> int:
        """A source port never used before in this run (fresh namespace: no TIME_WAIT leftovers)."""
        it = self.ports.setdefault(ip, iter(range(mec._Ports.FIRST, mec._Ports.LAST + 1)))
        return next(it)


class Relay:
    """Byte copier in the client namespace for gnutls-cli, which cannot bind a source address."""

    def __init__(self, env: Env) -> None:
        self.env = env
        with nets.entered(env.cli):
            self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.target: tuple[str, int] = ("", 0)
        self.stopping = threading.Event()
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
        ip = STACK_IP["gnutls"]
        with client, contextlib.suppress(OSError), nets.entered(self.env.cli):
            up = socket.create_connection(self.target, timeout=10, source_address=(ip, self.env.port(ip)))
            with up:
                up.settimeout(None)
                mc.relay(client, up)


def run_client(env: Env, stack: str, server_ip: str, sni: str) -> str:
    """One HTTPS GET by ``stack`` to ``server_ip``:443 with ``sni``; returns what it received."""
    ip, ca, host = STACK_IP[stack], str(env.trust), f"{sni}:443"
    timeout = mec.CLIENT_TIMEOUT
    if stack == "python":
        sctx = ssl.create_default_context(cafile=ca)
        sctx.set_alpn_protocols(["http/1.1"])
        with nets.entered(env.cli):
            raw = socket.create_connection((server_ip, 443), timeout=timeout, source_address=(ip, env.port(ip)))
        with raw, sctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(mc.http_get(sni, 443))
            return str(mc.read_to_eof(tls).decode("utf-8", "replace"))
    if stack == "openssl":
        cmd = ["openssl", "s_client", "-connect", f"{server_ip}:443", "-bind", f"{ip}:{env.port(ip)}",
               "-servername", sni, "-alpn", "http/1.1", "-CAfile", ca, "-verify_hostname", sni,
               "-verify_return_error", "-ign_eof"]
        return str(mc.run_client_tool(in_ns(env.cli, cmd), stdin_data=mc.http_get(sni, 443), timeout=timeout).stdout)
    if stack == PROBE:  # TLS 1.2 only, no ALPN: the server's certificate travels in clear
        cmd = ["openssl", "s_client", "-tls1_2", "-connect", f"{server_ip}:443", "-bind", f"{ip}:{env.port(ip)}",
               "-servername", sni, "-CAfile", ca, "-verify_hostname", sni, "-verify_return_error", "-ign_eof"]
        return str(mc.run_client_tool(in_ns(env.cli, cmd), stdin_data=mc.http_get(sni, 443), timeout=timeout).stdout)
    if stack == "curl":
        cmd = ["curl", "-sS", "--interface", ip, "--local-port", str(env.port(ip)), "--cacert", ca,
               "--resolve", f"{host}:{server_ip}", "-o", "-", f"https://{host}/{mc.PAYLOAD_NAME}"]
        res = mc.run_client_tool(in_ns(env.cli, cmd), timeout=timeout)
        return str(res.stdout if res.returncode == 0 else res.text)
    if stack == "gnutls":
        if env.relay is None:
            env.relay = Relay(env)
        env.relay.target = (server_ip, 443)
        cmd = ["gnutls-cli", "--x509cafile", ca, "--port", str(env.relay.port), "--sni-hostname", sni,
               "--verify-hostname", sni, "127.0.0.1"]
        res = mc.run_client_tool(in_ns(env.cli, cmd), stdin_data=mc.http_get(sni, 443), hold_stdin=True,
                                 timeout=timeout)
        return str(res.stdout)
    if stack == "node":
        cmd = ["node", "-e", mec.NODE_CLIENT, server_ip, "443", sni, "TLSv1.3", ca, f"/{mc.PAYLOAD_NAME}", ip,
               str(env.port(ip))]
        res = mc.run_client_tool(in_ns(env.cli, cmd), timeout=timeout)
        if res.returncode != 0:
            return str(res.text)
        return str(json.loads(res.stdout.strip().splitlines()[-1])["body"])
    if stack == "java":
        if env.java_dir is None:
            env.java_dir = env.work / "java"
            env.java_dir.mkdir(exist_ok=True)
            (env.java_dir / "TlsdetectJavaClient.java").write_text(JAVA_TRUST)
            mc.run(["javac", "-d", str(env.java_dir), str(env.java_dir / "TlsdetectJavaClient.java")])
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-cp", str(env.java_dir), "TlsdetectJavaClient", server_ip, "443",
               sni, "default", ca, mc.PAYLOAD_NAME, ip, str(env.port(ip))]
        res = mc.run_client_tool(in_ns(env.cli, cmd), timeout=timeout)
        return str(res.stdout if res.returncode == 0 else res.text)
    raise CaptureError(f"no inline client for stack {stack}")


# --------------------------------------------------------------------------------------------------
# the plan: who talks when, through which interceptor
# --------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One client run; ``start``/``end`` bracket its connection on both sensors."""

    stack: str
    product: str  # "" = clean (routed straight through)
    split: str
    batch: str
    sni: str = ""
    server_ip: str = ""
    start: float = 0.0
    end: float = 0.0


@dataclass
class Batch:
    """Jobs run while one set of rules is in place: ``product`` redirects the ``intercepted`` stacks."""

    name: str
    product: str
    intercepted: list[str]
    jobs: list[Job]
    renew_after: bool = False
    start: float = 0.0
    end: float = 0.0


def plan(stacks: list[str], products: list[str], train: int, test: int, per_icpt: int, rng: random.Random,
         names: tuple[str, ...] = tuple(SERVER_OF), probes: int = 0) -> list[Batch]:
    """Train batch, then two halves per interceptor (complementary groups of stacks); renewal midway.

    A stack is intercepted in one half of each interceptor's phase and talks clean in the other, so
    at every moment some clients are intercepted while others are not. ``probes``: connections of the
    clean TLS 1.2 probe to each name in each batch (so before and after the renewal), mixed in.
    """

    def jobs(counts: dict[str, tuple[int, str]], split: str, batch: str) -> list[Job]:
        out = [Job(st, prod, split, batch) for st, (n, prod) in counts.items() for _ in range(n)]
        for j in out:
            name = rng.choice(names)
            j.sni, j.server_ip = f"{name}.{mc.BASE_SNI}", SERVER_OF[name]
        out += [Job(PROBE, "", split, batch, f"{name}.{mc.BASE_SNI}", SERVER_OF[name])
                for name in names for _ in range(probes)]
        rng.shuffle(out)
        return out

    batches = [Batch("train", "", [], jobs(dict.fromkeys(stacks, (train, "")), "train", "train"))]
    clean_left = {s: mec.spread(test, len(products)) for s in stacks}
    for prod in products:
        order = list(stacks)
        rng.shuffle(order)
        half = math.ceil(len(order) / 2)
        for h, group in enumerate((sorted(order[:half]), sorted(order[half:]))):
            counts = {s: (per_icpt, prod) if s in group else (clean_left[s].pop(), "") for s in stacks}
            name = f"{prod}-{'ab'[h]}"
            batches.append(Batch(name, prod, group, jobs(counts, "test", name)))
    batches[len(batches) // 2].renew_after = True  # test batches are 1..2n: after batch n
    return batches


# --------------------------------------------------------------------------------------------------
# interceptors (in the middle namespace, transparent: SO_ORIGINAL_DST after the REDIRECT)
# --------------------------------------------------------------------------------------------------


def interceptor_cas(out: Path, work: Path, products: list[str]) -> dict[str, tuple[Path, Path | None]]:
    """Each interceptor's CA (certificate, key); mitmproxy makes its own on first start."""
    cas: dict[str, tuple[Path, Path | None]] = {}
    if "mitmproxy" in products:
        confdir = out / "mitmproxy"
        cas["mitmproxy"] = (confdir / "mitmproxy-ca-cert.pem", None)
    if "sslsplit" in products:  # a corporate-looking CA, as a deployed splitter would have
        mc.gen_key(work / "sslsplit-ca.key", "RSA")
        mc.issue_cert(work, "sslsplit-ca", "/O=Example Corp/CN=Example Corp TLS Inspection CA", "v3_root", None)
        shutil.copyfile(work / "sslsplit-ca.pem", out / "sslsplit-ca.pem")
        cas["sslsplit"] = (work / "sslsplit-ca.pem", work / "sslsplit-ca.key")
    if "mimic" in products:
        cert, key = work / "mimic-ca.pem", work / "mimic-ca.key"
        mc.run([sys.executable, str(MIMIC), "--new-ca", "--ca-cert", str(cert), "--ca-key", str(key)])
        shutil.copyfile(cert, out / "mimic-ca.pem")
        cas["mimic"] = (cert, key)
    return cas


@contextlib.contextmanager
def interceptor(product: str, mid: str, out: Path, work: Path, ca: tuple[Path, Path | None],
                root: Path) -> Iterator[None]:
    port = PORT_OF[product]
    if product == "mitmproxy":
        cmd = [str(mec.MITMDUMP), "--mode", "transparent", "--listen-host", "0.0.0.0", "--listen-port", str(port),
               "--set", f"confdir={ca[0].parent}", "--set", f"ssl_verify_upstream_trusted_ca={root}",
               "--flow-detail", "0"]
    elif product == "sslsplit":
        assert ca[1] is not None
        cmd = ["sslsplit", "-D", "-k", str(ca[1]), "-c", str(ca[0]), "-l", str(out / "sslsplit_connections.log"),
               "ssl", "0.0.0.0", str(port)]
        (out / "sslsplit_connections.log").unlink(missing_ok=True)
    else:
        assert ca[1] is not None
        (out / "mimic_connections.jsonl").unlink(missing_ok=True)
        cmd = [sys.executable, str(MIMIC), "--listen", f"0.0.0.0:{port}", "--ca-cert", str(ca[0]), "--ca-key",
               str(ca[1]), "--log", str(out / "mimic_connections.jsonl")]
    with daemon(in_ns(mid, cmd), work / f"{product}.log", lambda pid: nets.listening(pid, port), f"{product}"):
        yield


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    batches: list[Batch]
    renewed_at: float
    pool_python_peers: set[tuple[str, int]]
    products: list[str]
    seconds: float


def renewed_chain(work: Path, pki: Any) -> tuple[Path, Path]:
    """A new leaf (new key, same intermediate) sent with the root too: a longer first flight."""
    mc.gen_key(work / "renewed.key", "EC")
    mc.issue_cert(work, "renewed", f"/O=tlsdetect/CN={mc.BASE_SNI}", "v3_server", "inter")
    chain = work / "renewed-chain.pem"
    chain.write_bytes((work / "renewed.pem").read_bytes() + Path(pki.inter_cert).read_bytes()
                      + Path(pki.root_cert).read_bytes())
    return chain, work / "renewed.key"


def run_inline(out: Path, work: Path, stacks: list[str], products: list[str], batches: list[Batch]) -> Run:
    """Build the namespaces, start servers, sensors and interceptors, run every batch; clean up always."""
    pki = mc.make_pki(work)
    docroot = work / "docroot"
    docroot.mkdir(exist_ok=True)
    (docroot / mc.PAYLOAD_NAME).write_bytes(mc.PAYLOAD)
    chain = work / "server-chain.pem"
    chain.write_bytes(Path(pki.server_cert).read_bytes() + Path(pki.inter_cert).read_bytes())
    cas = interceptor_cas(out, work, products)
    started = time.monotonic()
    renewed_at = 0.0
    with contextlib.ExitStack() as es:
        server_ips = [WWW, RENEWED, POOL_PY, POOL_GNUTLS, POOL]
        topo = es.enter_context(nets.topology([STACK_IP[s] for s in stacks], server_ips))
        topo.pool(POOL, [f"{POOL_PY}:443", f"{POOL_GNUTLS}:{GNUTLS_PORT}"])
        servers = {ip: python_server(topo.srv, ip, docroot, chain, Path(pki.server_key)) for ip in (WWW, RENEWED,
                                                                                                   POOL_PY)}
        for s in servers.values():
            es.callback(stop_server, s)
        gnutls = ["gnutls-serv", "--http", "--port", str(GNUTLS_PORT), "--x509certfile", str(chain),
                  "--x509keyfile", str(pki.server_key)]
        es.enter_context(daemon(in_ns(topo.srv, gnutls), work / "gnutls-serv.log",
                                lambda pid: nets.listening(pid, GNUTLS_PORT), "gnutls-serv (pool)"))
        for p in products:
            es.enter_context(interceptor(p, topo.mid, out, work, cas[p], Path(pki.root_cert)))
        trust = work / "trust.pem"  # after mitmproxy's first start wrote its CA
        trust.write_bytes(b"".join(Path(x).read_bytes() for x in (pki.root_cert, *(c for c, _ in cas.values()))))
        env = Env(work, trust, topo.cli)
        es.callback(lambda: env.relay.close() if env.relay else None)
        es.enter_context(sensor(topo.mid, "m-cli", work / "inline_client.pcapng", work))
        es.enter_context(sensor(topo.mid, "m-srv", work / "inline_server.pcapng", work))
        for b in batches:
            topo.intercept([STACK_IP[s] for s in b.intercepted], PORT_OF.get(b.product))
            b.start = time.time()
            for j in b.jobs:
                j.start = time.time()
                try:
                    got = run_client(env, j.stack, j.server_ip, j.sni)
                except (CaptureError, OSError, ValueError) as exc:
                    raise CaptureError(f"{j.stack} via {j.product or 'direct'} to {j.sni} failed: {exc}") from exc
                j.end = time.time()
                if j.product:
                    topo.reserve_upstream_ports()
                want = MIMIC_BODY if j.product == "mimic" else mc.PAYLOAD.decode().strip()
                if want not in got and not (j.server_ip == POOL and j.product != "mimic" and GNUTLS_PAGE in got):
                    raise CaptureError(f"{j.stack} via {j.product or 'direct'} to {j.sni}: no response body:\n"
                                       f"{got[-1500:]}")
            time.sleep(UPSTREAM_SLACK if b.product == "mimic" else 0.1)  # upstream legs still reading
            b.end = time.time()
            log(f"  batch {b.name}: {len(b.jobs)} connections ({', '.join(b.intercepted) or 'none'} intercepted),"
                f" {b.end - b.start:.1f}s")
            if b.renew_after:
                new_chain, new_key = renewed_chain(work, pki)
                servers[RENEWED].sctx.load_cert_chain(str(new_chain), str(new_key))
                renewed_at = time.time()
                log(f"  renewed the certificate of {RENEWED} (cdn, static)")
        pool_peers = set(servers[POOL_PY].server.peers)
    for name in ("inline_client.pcapng", "inline_server.pcapng"):
        shutil.copyfile(work / name, out / name)
    return Run(batches, renewed_at, pool_peers, products, time.monotonic() - started)


# --------------------------------------------------------------------------------------------------
# labels: one row per connection read back from each capture
# --------------------------------------------------------------------------------------------------


def _job_at(jobs: list[Job], ip: str, server_ip: str, ts: float) -> Job | None:
    found = [j for j in jobs if STACK_IP.get(j.stack) == ip and j.server_ip == server_ip and j.start <= ts <= j.end]
    return found[0] if len(found) == 1 else None


def label_rows(run: Run, client_flows: list[Any], server_flows: list[Any],
               upstream_sni: dict[tuple[str, int], str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for ``inline_client`` and ``inline_server`` from the flows each sensor recorded.

    A client's flow belongs to the run of its stack that was under way at its SYN (runs are
    sequential, so exactly one); an upstream flow (from the middle box) to the intercepted run to the
    same server and SNI under way at its SYN (or ending just before), else it keeps an empty stack.
    Raises when a run was not seen where it must be, or a flow matches no run.
    """
    jobs = [j for b in run.batches for j in b.jobs]
    seen: dict[int, list[str]] = defaultdict(list)  # id(job) -> where it was seen
    backend: dict[int, str] = {}
    rows: list[dict[str, Any]] = []

    def note(flow: Any, job: Job | None) -> str:
        parts = []
        if flow.server_ip == RENEWED:
            parts.append("renewal:" + ("new-cert" if run.renewed_at and flow.ts >= run.renewed_at else "old-cert"))
        if flow.server_ip == POOL:
            if job is not None and job.product:  # a client-to-proxy leg: the backend its proxy reached
                b = backend.get(id(job), "")
            else:
                b = "python-ssl" if (flow.client_ip, flow.client_port) in run.pool_python_peers else "gnutls"
            parts.append(f"pool:{b}" if b else "pool")
        return ";".join(parts)

    def row(source: str, flow: Any, job: Job | None, vantage: str, product: str, note_: str) -> dict[str, Any]:
        return {"source": source, "client_ip": flow.client_ip, "client_port": flow.client_port,
                "server_ip": flow.server_ip, "server_port": flow.server_port, "ts": mec.iso(flow.ts),
                "stack": job.stack if job else "", "label": "intercepted" if product else "clean",
                "split": job.split if job and vantage != "proxy_upstream" else "test", "path": product or "direct",
                "note": note_, "vantage": vantage, "product": product}

    for f in server_flows:
        if f.client_ip == MIDDLE:
            sni = upstream_sni.get((f.client_ip, f.client_port), "")
            cands = [j for j in jobs if j.product and j.server_ip == f.server_ip and (not sni or j.sni == sni)
                     and j.start <= f.ts <= j.end + UPSTREAM_SLACK]
            inside = [j for j in cands if j.start <= f.ts <= j.end]
            job = (inside or cands)[0] if len(inside or cands) == 1 else None
            batch = next((b for b in run.batches if b.product and b.start <= f.ts <= b.end), None)
            product = job.product if job else batch.product if batch else ""
            if not product:
                raise CaptureError(f"inline_server: upstream leg {f.client_ip}:{f.client_port} outside every phase")
            if job is not None:
                seen[id(job)].append("upstream")
                if f.server_ip == POOL:
                    peer = (f.client_ip, f.client_port)
                    backend[id(job)] = "python-ssl" if peer in run.pool_python_peers else "gnutls"
            rows.append(row("inline_server", f, job, "proxy_upstream", product, note(f, None)))
        else:
            job = _job_at(jobs, f.client_ip, f.server_ip, f.ts)
            if job is None or job.product:
                raise CaptureError(f"inline_server: {f.client_ip}:{f.client_port} -> {f.server_ip} matches no clean run"
                                   f" (an intercepted client leaked past the proxy?)")
            seen[id(job)].append("server")
            rows.append(row("inline_server", f, job, "direct", "", note(f, job)))
    for f in client_flows:
        job = _job_at(jobs, f.client_ip, f.server_ip, f.ts)
        if job is None:
            raise CaptureError(f"inline_client: {f.client_ip}:{f.client_port} -> {f.server_ip} matches no client run")
        seen[id(job)].append("client")
        vantage = "client_to_proxy" if job.product else "direct"
        rows.append(row("inline_client", f, job, vantage, job.product, note(f, job)))
    keys = Counter((r["source"], r["client_ip"], r["client_port"]) for r in rows)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        raise CaptureError(f"source address and port used twice in one capture: {dupes[:3]} (rerun)")
    for j in jobs:
        where = Counter(seen.get(id(j), []))
        want = Counter({"client": 1, "upstream": 1}) if j.product else Counter({"client": 1, "server": 1})
        if where["client"] != 1 or (not j.product and where["server"] != 1):
            raise CaptureError(f"{j.stack} via {j.product or 'direct'} at {mec.iso(j.start)} ({j.batch}):"
                               f" seen {dict(where)}, expected {dict(want)}")
    unpaired = Counter(r["product"] for r in rows if r["vantage"] == "proxy_upstream" and not r["stack"])
    return rows, {"upstream_legs_without_stack": dict(unpaired)}


def read_back(out: Path) -> tuple[list[Any], list[Any], dict[tuple[str, int], str], dict[str, int]]:
    """Both captures' TLS connections (SYN + ClientHello) and the SNI of the upstream legs."""
    from tlsdetect.readers.pcap.engine import read_pcap

    flows = {name: mec.capture_flows(out / f"{name}.pcapng", {443}) for name in ("inline_client", "inline_server")}
    no_hello = {name: sum(not f.hello for f in fl) for name, fl in flows.items()}
    df, _ = read_pcap(out / "inline_server.pcapng")
    up = df[df["client_ip"].astype(str) == MIDDLE]
    snis = {(str(a), int(b)): str(c) for a, b, c in up[["client_ip", "client_port", "sni"]].itertuples(index=False)}
    hello = {name: [f for f in fl if f.hello] for name, fl in flows.items()}
    return hello["inline_client"], hello["inline_server"], snis, no_hello


def merge_labels(out: Path, rows: list[dict[str, Any]]) -> int:
    """Replace the inline rows of ``out/labels.csv`` (keeping every other row); returns the row count."""
    path = out / "labels.csv"
    old: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            old = [r for r in csv.DictReader(fh) if not r["source"].startswith("inline_")]
    for r in old:
        if not r.get("vantage"):  # a labels.csv written before the vantage columns existed
            r.update(mec.vantage_product(r))
    merged = sorted(old + rows, key=lambda r: (r["source"], r["ts"]))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(mec.LABEL_COLUMNS))
        w.writeheader()
        w.writerows(merged)
    return len(merged)


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Connections per source/vantage/product/label (the numbers the report gives)."""
    c = Counter((r["source"], r["vantage"], r["product"] or "-", r["label"]) for r in rows)
    return {"/".join(k): n for k, n in sorted(c.items())}


def available_products(wanted: list[str]) -> tuple[list[str], list[str]]:
    """The interceptors that can run here; the others with the reason."""
    ok, missing = [], []
    for p in wanted:
        if p == "mitmproxy" and not Path(mec.MITMDUMP).is_file():
            missing.append(f"mitmproxy ({mec.MITMDUMP})")
        elif p == "sslsplit" and shutil.which("sslsplit") is None:
            missing.append("sslsplit (apt-get install sslsplit)")
        elif p == "mimic" and not MIMIC.is_file():
            missing.append(f"mimic ({MIMIC})")
        else:
            ok.append(p)
    return ok, missing


def build(out: Path, stacks: list[str], products: list[str], train: int, test: int, per_icpt: int,
          seed: int, work: Path | None = None, probes: int = 2) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The whole inline part: captures in ``out``, label rows and a summary (not yet merged)."""
    stacks = [s for s in STACKS if s in stacks]
    nets.require_root_and_tools(tuple(TOOLS[s] for s in (*stacks, *([PROBE] if probes else [])) if s in TOOLS))
    own = work is None
    work = work or Path(tempfile.mkdtemp(prefix="tlsdetect-inline-"))
    try:
        batches = plan(stacks, products, train, test, per_icpt, random.Random(seed), probes=probes)
        clients = [*stacks, *([PROBE] if probes else [])]
        log(f"inline: stacks {', '.join(f'{s}={STACK_IP[s]}' for s in clients)}; interceptors {', '.join(products)}")
        run = run_inline(out, work, clients, products, batches)
        client_flows, server_flows, snis, no_hello = read_back(out)
        rows, extra = label_rows(run, client_flows, server_flows, snis)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    info = {
        "runtime_seconds": round(run.seconds, 1),
        "stacks": {s: STACK_IP[s] for s in clients},
        "probe12_per_name_and_batch": probes,
        "interceptors": {p: f"{nets.MIDDLE_CLIENT_SIDE}:{PORT_OF[p]} (REDIRECT from :443)" for p in products},
        "servers": {"www/api": WWW, "cdn/static (renewal)": RENEWED,
                    "shop (pool)": f"{POOL} -> {POOL_PY}:443 python-ssl, {POOL_GNUTLS}:{GNUTLS_PORT} gnutls-serv"},
        "renewed_at": mec.iso(run.renewed_at) if run.renewed_at else None,
        "batches": [{"name": b.name, "intercepted": b.intercepted, "connections": len(b.jobs),
                     "start": mec.iso(b.start), "end": mec.iso(b.end)} for b in batches],
        "tcp_without_client_hello": no_hello,
        "counts": counts(rows),
        **extra,
    }
    return rows, info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=mec.DEFAULT_OUT, help="corpus directory (default: %(default)s)")
    p.add_argument("--train", type=int, default=40, help="clean train connections per stack (default: %(default)s)")
    p.add_argument("--test", type=int, default=40, help="clean test connections per stack (default: %(default)s)")
    p.add_argument("--per-interceptor", type=int, default=25, help="per stack and interceptor (default: %(default)s)")
    p.add_argument("--probes", type=int, default=2,
                   help=f"{PROBE} (clean TLS 1.2) connections per name per batch; 0: none (default: %(default)s)")
    p.add_argument("--interceptors", default=",".join(INTERCEPTORS), help="comma-separated (default: %(default)s)")
    p.add_argument("--skip", default="", help="comma-separated stacks to leave out (java is optional)")
    p.add_argument("--seed", type=int, default=16)
    args = p.parse_args(argv)
    args.interceptors = [s.strip() for s in args.interceptors.split(",") if s.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = (set(args.interceptors) - set(INTERCEPTORS)) | (args.skip - set(STACKS))
    if bad:
        p.error(f"unknown: {', '.join(sorted(bad))}")
    if min(args.train, args.test, args.per_interceptor) < 1:
        p.error("--train, --test and --per-interceptor must be at least 1")
    if args.probes < 0:
        p.error("--probes must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: Path = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    stacks = [s for s in STACKS if s not in args.skip]
    try:
        products, missing = available_products(args.interceptors)
        if missing:
            raise CaptureError(f"interceptors not available: {', '.join(missing)}")
        rows, info = build(out, stacks, products, args.train, args.test, args.per_interceptor, args.seed,
                           probes=args.probes)
    except (CaptureError, nets.NetnsError) as exc:
        print(f"eval_inline: ERROR: {exc}", file=sys.stderr)
        return 1
    total = merge_labels(out, rows)
    (out / "INLINE.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"done in {info['runtime_seconds']}s: {len(rows)} inline rows ({total} in labels.csv)")
    for k, n in info["counts"].items():
        log(f"  {k:55s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
