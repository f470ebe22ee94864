#!/usr/bin/env python3
"""Make the project's QUIC and DTLS captures from real stacks on loopback, with expected JA4.

Why: the native engine's QUIC and DTLS readers must be checked on hellos of today's real clients,
whose provenance is known, not only on third-party samples. Like ``make_captures.py`` (whose PKI,
readiness and client helpers it reuses) it records loopback traffic with ``dumpcap`` while real
stacks talk:

* ``quic.pcapng``: headless Chromium (``--enable-quic --origin-to-force-quic-on``; its ML-KEM hello
  spans two Initial packets) against a real HTTP/3 server (aioquic, ``scripts/aioquic_peer.py``):
  QUIC v1, QUIC v2 (``--quic-version=RFCv2``) and v1 through a server that answers with a Retry
  (the second Initial carries the token, under keys from the Retry's connection id); aioquic's own
  client (v1 and v2) as a second stack.
* ``dtls.pcapng``: ``openssl s_client -dtls1_2`` and ``-dtls1`` against ``openssl s_server -dtls
  -listen`` (a HelloVerifyRequest cookie exchange: two ClientHellos per connection), and one
  ``-dtls1_2`` hello cut into handshake fragments by a small ``-mtu``.

Every run talks to its own server port, so a connection's stack is known from the port. The
expected fingerprints come from the tshark engine (Wireshark's QUIC/DTLS dissection, our JA4
code) and go with the notes to ``MANIFEST.json`` beside the captures: the native engine is
checked against them. Captures are small (tens of KB) and redistributable; the throw-away PKI's
keys never leave the temp dir.

    .venv/bin/python scripts/make_quic_captures.py [--out tests/data/quic] [--skip chromium,aioquic,dtls]
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
mc: Any = importlib.import_module("make_captures")

HOST = mc.HOST
SNI_BASE = mc.BASE_SNI  # the sample server certificate covers it and *.it
AIOQUIC = REPO / ".tools" / "aioquic" / "bin" / "python"
PEER = REPO / "scripts" / "aioquic_peer.py"
CHROMIUM = "/usr/bin/chromium"
DEFAULT_OUT = REPO / "tests" / "data" / "quic"
#: Options that make openssl's DTLS 1.2 ClientHello larger than a 256-byte MTU (its minimum), so the
#: hello travels as three handshake fragments (and again after the cookie).
FRAGMENTING = ["-mtu", "256", "-alpn", ",".join(["webrtc", "c-webrtc", "coap", "stun.turn", "stun.nat-discovery",
                                                 "sunrpc", "managesieve", "h2", "http/1.1"] * 3)]


@dataclass(frozen=True)
class Run:
    """One client run against its own server port: what it is and what the capture must show."""

    capture: str
    stack: str
    port: int
    sni: str
    note: str
    min_connections: int = 1


@contextlib.contextmanager
def udp_capture(path: Path, ports: list[int], work: Path) -> Iterator[str]:
    """dumpcap on lo for the UDP ``ports`` while the block runs (``make_captures.bpf_capture``)."""
    bpf = f"host {HOST} and (" + " or ".join(f"udp port {p}" for p in ports) + ")"
    with mc.bpf_capture(path, bpf, work):
        yield bpf


@contextlib.contextmanager
def server(cmd: list[str], ready: str | None, work: Path, name: str) -> Iterator[None]:
    """A server process; waits for ``ready`` in its output (or a moment, when None)."""
    log = work / f"{name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT)
    try:
        if ready is None:
            time.sleep(1.0)
        else:
            mc.wait_for(lambda: proc.poll() is not None or ready in log.read_text(errors="replace"), name)
        if proc.poll() is not None:
            raise mc.CaptureError(f"{name} exited early:\n{log.read_text(errors='replace')}")
        yield
    finally:
        mc.stop_process(proc)


def spki_sha256(cert: Path) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium(run: Run, spki: str, work: Path, extra: tuple[str, ...] = ()) -> None:
    """One headless Chromium start forced onto QUIC for the run's origin, loading one page."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    origin = f"{run.sni}:{run.port}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
           f"--user-data-dir={profile}", "--enable-quic", f"--origin-to-force-quic-on={origin}",
           f"--host-resolver-rules=MAP {run.sni} {HOST}", f"--ignore-certificate-errors-spki-list={spki}",
           *extra, "--dump-dom", f"https://{origin}/"]
    res = mc.run_client_tool(cmd, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    if "HTTP/3" not in res.stdout:
        raise mc.CaptureError(f"chromium ({run.note}): page not loaded over QUIC (exit {res.returncode}):\n"
                              f"{res.text[-1500:]}")


def aioquic_get(run: Run, v2: bool) -> None:
    """aioquic's client: one HTTP/3 GET."""
    res = mc.run_client_tool([str(AIOQUIC), str(PEER), "get", HOST, str(run.port), run.sni,
                              *(["--v2"] if v2 else [])], timeout=60)
    if "HTTP/3" not in res.stdout:
        raise mc.CaptureError(f"aioquic get ({run.note}) failed (exit {res.returncode}):\n{res.text[-1500:]}")


def capture_quic(out: Path, pki: Any, work: Path, stacks: set[str]) -> list[Run]:
    """Chromium and aioquic against aioquic servers (plain, and answering with Retry)."""
    runs = []
    if "chromium" in stacks:
        runs += [Run("quic", "chromium", mc.free_port(), f"chromium-v1.{SNI_BASE}", "QUIC v1"),
                 Run("quic", "chromium", mc.free_port(), f"chromium-v2.{SNI_BASE}", "QUIC v2 (RFC 9369)"),
                 Run("quic", "chromium", mc.free_port(), f"chromium-retry.{SNI_BASE}",
                     "QUIC v1, server sends Retry: second Initial has the token, keys from the new DCID")]
    if "aioquic" in stacks:
        runs += [Run("quic", "aioquic", mc.free_port(), f"aioquic-v1.{SNI_BASE}", "QUIC v1"),
                 Run("quic", "aioquic", mc.free_port(), f"aioquic-v2.{SNI_BASE}", "QUIC v2 (RFC 9369)")]
    if not runs:
        return []
    spki = spki_sha256(pki.server_cert)
    chain = work / "chain.pem"
    chain.write_text(pki.server_cert.read_text() + pki.inter_cert.read_text())
    with udp_capture(out, [r.port for r in runs], work):
        for r in runs:
            cmd = [str(AIOQUIC), str(PEER), "serve", str(chain), str(pki.server_key), str(r.port)]
            with server(cmd + (["--retry"] if "Retry" in r.note else []), "ready", work, f"h3-{r.port}"):
                v2 = "v2" in r.note
                if r.stack == "chromium":
                    chromium(r, spki, work, ("--quic-version=RFCv2",) if v2 else ())
                else:
                    aioquic_get(r, v2)
                time.sleep(0.3)
    return runs


def capture_dtls(out: Path, pki: Any, work: Path) -> list[Run]:
    """openssl DTLS 1.2 and 1.0 with cookie exchange, and a fragmented DTLS 1.2 hello."""
    runs = [Run("dtls", "openssl", mc.free_port(), f"dtls12.{SNI_BASE}", "DTLS 1.2, HelloVerifyRequest cookie"),
            Run("dtls", "openssl", mc.free_port(), f"dtls10.{SNI_BASE}", "DTLS 1.0, HelloVerifyRequest cookie"),
            Run("dtls", "openssl", mc.free_port(), f"dtls12-frag.{SNI_BASE}",
                "DTLS 1.2, ClientHello in 3 handshake fragments (-mtu 256, long ALPN list), cookie")]
    with udp_capture(out, [r.port for r in runs], work):
        for r in runs:
            old = "1.0" in r.note
            cipher = ["-cipher", "DEFAULT:@SECLEVEL=0"] if old else []
            srv = ["openssl", "s_server", "-dtls", "-listen", "-accept", f"{HOST}:{r.port}", "-cert",
                   str(pki.server_cert), "-cert_chain", str(pki.inter_cert), "-key", str(pki.server_key),
                   "-naccept", "1", "-quiet", *cipher]
            with server(srv, None, work, f"dtls-{r.port}"):
                cli = ["openssl", "s_client", "-dtls1" if old else "-dtls1_2", "-connect", f"{HOST}:{r.port}",
                       "-servername", r.sni, *cipher, *(FRAGMENTING if "frag" in r.sni else [])]
                mc.run_client_tool(cli, stdin_data=b"hello over DTLS\n", timeout=20)
                time.sleep(0.3)
    return runs


def expected_rows(path: Path) -> list[dict[str, Any]]:
    """The tshark engine's rows for a capture (our JA4 code on Wireshark's dissection)."""
    res = subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "--engine", "tshark", str(path),
                          "-f", "jsonl", "--no-progress"], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return [json.loads(line) for line in res.stdout.splitlines()]


FIELDS = ("transport", "client_port", "server_port", "sni", "alpn", "tls_version", "ja4", "ja4_r", "ja3", "ja3s",
          "hello_retry", "ja4_retry")


def manifest(out_dir: Path, runs: list[Run], versions: dict[str, str]) -> dict[str, Any]:
    """Per capture: its runs, and each connection with the stack, note and expected fingerprints."""
    by_port = {r.port: r for r in runs}
    doc: dict[str, Any] = {"generator": "scripts/make_quic_captures.py", "versions": versions, "captures": {}}
    for name in sorted({r.capture for r in runs}):
        path = out_dir / f"{name}.pcapng"
        conns = []
        for row in expected_rows(path):
            r = by_port.get(int(row["server_port"]))
            if r is None:
                continue
            conns.append({"stack": r.stack, "note": r.note, **{k: row.get(k) for k in FIELDS}})
        for r in (r for r in runs if r.capture == name):
            n = sum(c["server_port"] == r.port for c in conns)
            if n < r.min_connections:
                raise mc.CaptureError(f"{name}: {r.stack} ({r.note}) left {n} connections in the capture")
        doc["captures"][name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                 "connections": conns}
    return doc


def tool_versions(stacks: set[str]) -> dict[str, str]:
    v = {"openssl": mc.first_line(mc.run(["openssl", "version"])),
         "tshark": mc.first_line(mc.run(["tshark", "--version"]))}
    if "chromium" in stacks:
        v["chromium"] = mc.first_line(mc.run([CHROMIUM, "--version"]))
    if "aioquic" in stacks:
        v["aioquic"] = mc.first_line(mc.run([str(AIOQUIC), "-c", "import aioquic; print(aioquic.__version__)"]))
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--skip", default="", help="comma-separated: chromium, aioquic, dtls")
    args = p.parse_args(argv)
    stacks = {"chromium", "aioquic", "dtls"} - set(filter(None, args.skip.split(",")))
    if {"chromium", "aioquic"} & stacks and not AIOQUIC.exists():
        print(f"{AIOQUIC} is missing: run scripts/setup.sh (or --skip chromium,aioquic)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tlsdetect-quic-") as tmp:
        work = Path(tmp)
        pki = mc.make_pki(work)
        runs = capture_quic(work / "quic.pcapng", pki, work, stacks)
        if "dtls" in stacks:
            runs += capture_dtls(work / "dtls.pcapng", pki, work)
        for name in sorted({r.capture for r in runs}):
            shutil.copyfile(work / f"{name}.pcapng", args.out / f"{name}.pcapng")
    doc = manifest(args.out, runs, tool_versions(stacks))
    (args.out / "MANIFEST.json").write_text(json.dumps(doc, indent=1) + "\n")
    for name, cap in doc["captures"].items():
        print(f"{name}.pcapng: {len(cap['connections'])} connections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
