#!/usr/bin/env python3
"""Evaluate ``quic_blocked`` on real Chromium traffic: QUIC in the baseline, then a clean run and a blocked one.

Why: the signal claims that a browser which used QUIC to a server and now reaches it only over TCP is
evidence (an interception product blocking UDP/443), while the same browser's ordinary traffic is not.
This makes the three captures that claim is measured on, from real stacks on loopback (``dumpcap`` on
``lo``, TCP and UDP of one port):

* ``baseline.pcapng``: ``--runs`` headless Chromium starts, each loading a page from ``h1`` with images
  from ``h2``..``h4`` (all forced onto QUIC with ``--origin-to-force-quic-on``, served by the aioquic
  HTTP/3 server) and from ``h5`` (TCP only: Chromium's TLS-over-TCP hello is in the baseline too);
* ``later_clean.pcapng``: one more such start (QUIC to h1..h4 again);
* ``later_blocked.pcapng``: the same page with no HTTP/3 server and QUIC not forced: the browser reaches
  every host over TCP, as it does when UDP/443 is dropped (the fallback is the browser's own; it is
  recorded here by not offering QUIC, since a forced origin does not fall back).

Hosts are names under the sample certificate's ``*.sample.tlsdetect.test``; one TCP server
(Python ``ssl``) and one aioquic server share the port. The captures are read with the tshark engine
(the native one reads QUIC once issue 21's engine is in), a baseline is fitted on the first, the others are
scored, and the counts go to ``benchmarks/results/quic-blocked-2026-12-07.md`` (``--report``).

    .venv/bin/python scripts/eval_quic_blocked.py [--out ~/.cache/tlsdetect/quic-eval] [--runs 2] [--report FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import importlib
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
mc: Any = importlib.import_module("make_captures")
mq: Any = importlib.import_module("make_quic_captures")

HOSTS = tuple(f"h{i}.{mc.BASE_SNI}" for i in range(1, 6))
#: Each host on its own loopback address: Chromium pools connections to names that share an address and a
#: certificate (the sample one covers them all), which would leave one connection per page.
HOST_IP = {h: f"127.0.0.{11 + i}" for i, h in enumerate(HOSTS)}
QUIC_HOSTS = HOSTS[:4]
DEFAULT_OUT = Path("~/.cache/tlsdetect/quic-eval").expanduser()
PHASES = ("baseline", "later_clean", "later_blocked")


def write_docroot(root: Path, port: int) -> None:
    """A page on h1 with one image from each other host (each a new connection), and the image file."""
    imgs = "\n".join(f'<img src="https://{h}:{port}/pixel.txt?{i}">' for i, h in enumerate(HOSTS[1:]))
    (root / "page.html").write_text('<!doctype html><html><head><link rel="icon" href="data:,"></head>'
                                    f"<body>\n{imgs}\nloaded over QUIC or TCP</body></html>\n")
    (root / "pixel.txt").write_text("pixel\n")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def tcp_server(root: Path, port: int, chain: Path, key: Path) -> Iterator[None]:
    """A threaded HTTPS server (TLS over TCP) for the docroot on every loopback address, one port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", port), functools.partial(_Quiet, directory=str(root)))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()


def chromium_page(port: int, spki: str, work: Path, force_quic: bool) -> None:
    """One headless Chromium start loading the page (QUIC forced for h1..h4, or not at all)."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    quic = ([f"--origin-to-force-quic-on={','.join(f'{h}:{port}' for h in QUIC_HOSTS)}"] if force_quic else [])
    cmd = [mq.CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--no-default-browser-check", f"--user-data-dir={profile}", "--enable-quic",
           *quic, "--host-resolver-rules=" + ", ".join(f"MAP {h} {ip}" for h, ip in HOST_IP.items()),
           f"--ignore-certificate-errors-spki-list={spki}", "--dump-dom", f"https://{HOSTS[0]}:{port}/page.html"]
    res = mc.run_client_tool(cmd, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    if "loaded over" not in res.stdout:
        raise mc.CaptureError(f"chromium: page not loaded (exit {res.returncode}):\n{res.text[-1500:]}")


def capture(out: Path, runs: int) -> dict[str, Path]:
    """The three captures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {p: out / f"{p}.pcapng" for p in PHASES}
    with tempfile.TemporaryDirectory(prefix="tlsdetect-quic-eval-") as tmp:
        work = Path(tmp)
        pki = mc.make_pki(work)
        chain = work / "chain.pem"
        chain.write_text(pki.server_cert.read_text() + pki.inter_cert.read_text())
        spki = mq.spki_sha256(pki.server_cert)
        root = work / "docroot"
        root.mkdir()
        port = mc.free_port()
        write_docroot(root, port)
        h3 = [str(mq.AIOQUIC), str(mq.PEER), "serve", str(chain), str(pki.server_key), str(port),
              "--docroot", str(root)]
        for phase in PHASES:
            blocked = phase == "later_blocked"
            cap = work / f"{phase}.pcapng"
            bpf_ports = f"tcp port {port} or udp port {port}"
            with mc.bpf_capture(cap, bpf_ports, work), tcp_server(root, port, chain, pki.server_key), \
                    contextlib.ExitStack() as servers:
                # one HTTP/3 server per address: a UDP socket bound to all would answer from 127.0.0.1
                for h in () if blocked else QUIC_HOSTS:
                    servers.enter_context(mq.server([*h3, "--host", HOST_IP[h]], "ready", work, f"h3-{h}"))
                for _ in range(1 if phase != "baseline" else runs):
                    chromium_page(port, spki, work, force_quic=not blocked)
                    time.sleep(0.5)
            shutil.copyfile(cap, paths[phase])
    return paths


def evaluate(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Fit on the baseline capture, score the two later ones: rows, transports, quic_blocked, verdicts."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.pcap.tshark import read_pcap_tshark

    tables = {p: read_pcap_tshark(str(path))[0] for p, path in paths.items()}
    b = Baseline().fit(tables["baseline"])
    out: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        df = tables[phase]
        scored = score(df, b) if phase != "baseline" else None
        flagged = ([any(r["code"] == "quic_blocked" for r in rs) for rs in scored["reasons"]]
                   if scored is not None else [])
        out[phase] = {
            "rows": len(df),
            "by_transport": df["transport"].astype(str).value_counts().to_dict(),
            "quic_blocked_rows": sum(flagged),
            "flagged_servers": sorted({s for s, f in zip(df["sni"].astype(str), flagged, strict=False) if f}),
            "verdicts": scored["verdict"].astype(str).value_counts().to_dict() if scored is not None else {},
            "codes": sorted({r["code"] for rs in scored["reasons"] for r in rs}) if scored is not None else [],
        }
    return out


def report(res: dict[str, dict[str, Any]], runs: int) -> str:
    lines = ["# quic_blocked on real Chromium traffic (2026-12-07)", "",
             "Made by `scripts/eval_quic_blocked.py` (Chromium "
             f"{mc.first_line(mc.run([mq.CHROMIUM, '--version'])).split()[1]}, aioquic HTTP/3 server, Python `ssl` "
             f"HTTPS server; {runs} baseline page loads; tshark engine). Hosts h1..h4 QUIC (forced), h5 TCP only.",
             "", "| capture | rows | transports | quic_blocked rows | flagged servers | verdicts | reason codes |",
             "|---|---|---|---|---|---|---|"]
    for phase, r in res.items():
        lines.append(f"| {phase} | {r['rows']} | {r['by_transport']} | {r['quic_blocked_rows']} | "
                     f"{', '.join(s.split('.')[0] for s in r['flagged_servers']) or '-'} | {r['verdicts'] or '-'} | "
                     f"{', '.join(r['codes']) or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--runs", type=int, default=2, help="baseline page loads (the signal needs 2 QUIC connections)")
    p.add_argument("--report", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--reuse", action="store_true", help="score the captures already in --out")
    args = p.parse_args(argv)
    paths = {ph: args.out / f"{ph}.pcapng" for ph in PHASES} if args.reuse else capture(args.out, args.runs)
    res = evaluate(paths)
    text = report(res, args.runs)
    print(text)
    if args.report:
        args.report.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
