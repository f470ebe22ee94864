#!/usr/bin/env python3
"""Measure the QUIC transport-parameter evidence on real stacks: true and false positives per vantage point.

Why: ``quic_params_changed`` claims that a client's QUIC transport parameters are as much its own as its JA4,
so a QUIC connection re-originated by an interception product carries parameters its client never sent,
while the client's own later connections (new order, new GREASE, another QUIC version, a Retry) do not.
This records the traffic that claim is measured on, on loopback (``dumpcap`` on ``lo``), and scores it:

* ``baseline.pcapng``: ``--runs`` headless Chromium page loads over QUIC (``--origin-to-force-quic-on``) to
  aioquic's HTTP/3 server, and as many aioquic client GETs from a second loopback address (127.0.0.2: its
  own client in the baseline);
* ``later.pcapng``: the same again (the clean later traffic: false positives are counted on it);
* ``intercepted.pcapng``: Chromium and the aioquic client through ``mitmdump --mode reverse:http3``
  (mitmproxy terminates QUIC and opens its own QUIC connection to the server). Read by server port into the
  two vantage points of ``benchmarks/evaluate.py``: *inline_client* (the clients' genuine hellos, to the
  proxy) and *capture* (the proxy's upstream hellos, from the clients' own address 127.0.0.1, as a sensor
  beside a transparent interceptor on the client's host sees them). The aioquic client's upstream leg
  leaves from 127.0.0.1 too, so at *capture* it is scored as Chromium's client (the address is the client).

A baseline is fitted on ``baseline.pcapng`` (native engine) and each set is scored with the full knowledge
base (no QUIC product is in it: nothing is held out). Counted per row: ``quic_params_changed`` (the new
signal), ``new_fingerprint_for_client`` (the JA4 one, for comparison) and the verdict.

    .venv/bin/python benchmarks/eval_quic_params.py [--out DIR] [--runs 3] [--reuse] [--report FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
mc: Any = importlib.import_module("make_captures")
mq: Any = importlib.import_module("make_quic_captures")

SNI = f"quic-eval.{mc.BASE_SNI}"
DEFAULT_OUT = Path("~/.cache/tlsdetect/quic-params-eval").expanduser()
PHASES = ("baseline", "later", "intercepted")
AIOQUIC_CLIENT_IP = "127.0.0.2"


def chromium_get(port: int, spki: str | None, work: Path) -> None:
    """One headless Chromium start loading ``https://SNI:port/`` over QUIC (forced)."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
    trust = [f"--ignore-certificate-errors-spki-list={spki}"] if spki else ["--ignore-certificate-errors"]
    cmd = [mq.CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--no-default-browser-check", f"--user-data-dir={profile}", "--enable-quic",
           f"--origin-to-force-quic-on={SNI}:{port}", f"--host-resolver-rules=MAP {SNI} 127.0.0.1", *trust,
           "--dump-dom", f"https://{SNI}:{port}/"]
    res = mc.run_client_tool(cmd, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    if "HTTP/3" not in res.stdout:
        raise mc.CaptureError(f"chromium: page not loaded over QUIC (exit {res.returncode}):\n{res.text[-1500:]}")


def aioquic_get(port: int) -> None:
    """aioquic's client, bound to :data:`AIOQUIC_CLIENT_IP` by a one-line wrapper (its ``connect`` takes
    ``local_port`` only): Python's socket is patched to bind that address."""
    code = ("import socket,runpy,sys;_b=socket.socket.bind\n"
            "def bind(s,a):\n"
            f" if a[0] in ('::','0.0.0.0'): a=('::ffff:{AIOQUIC_CLIENT_IP}',*a[1:]) if s.family==socket.AF_INET6 "
            f"else ('{AIOQUIC_CLIENT_IP}',a[1])\n"
            " return _b(s,a)\n"
            "socket.socket.bind=bind;sys.argv=sys.argv[1:];runpy.run_path(sys.argv[0],run_name='__main__')")
    res = mc.run_client_tool([str(mq.AIOQUIC), "-c", code, str(mq.PEER), "get", "127.0.0.1", str(port), SNI],
                             timeout=60)
    if "HTTP/3" not in res.stdout:
        raise mc.CaptureError(f"aioquic get failed (exit {res.returncode}):\n{res.text[-1500:]}")


@contextlib.contextmanager
def mitm_http3(upstream: int, work: Path, cert: Path) -> Iterator[int]:
    """mitmdump terminating HTTP/3 on a free port and re-originating it over QUIC to ``upstream``; it presents
    ``cert`` (key and chain: the sample server's, so the clients' pin holds and only the QUIC layer differs)."""
    port = mc.free_port()
    log = work / "mitmdump.log"
    cmd = [str(mc.MITMDUMP), "--mode", f"reverse:http3://127.0.0.1:{upstream}@{port}", "--listen-host",
           "127.0.0.1", "--set", f"confdir={work / 'mitm'}", "--set", f"certs=*={cert}", "--ssl-insecure",
           "--flow-detail", "1"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        mc.wait_for(lambda: proc.poll() is not None or "listening" in log.read_text(errors="replace").lower(),
                    "mitmdump to listen", timeout=60)
        if proc.poll() is not None:
            raise mc.CaptureError(f"mitmdump exited early:\n{log.read_text()[-2000:]}")
        yield port
    finally:
        mc.stop_process(proc)


def capture(out: Path, runs: int) -> tuple[dict[str, Path], int]:
    """The three captures into ``out``; returns them and the server's port."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {p: out / f"{p}.pcapng" for p in PHASES}
    with tempfile.TemporaryDirectory(prefix="tlsdetect-quic-params-") as tmp:
        work = Path(tmp)
        pki = mc.make_pki(work)
        chain = work / "chain.pem"
        chain.write_text(pki.server_cert.read_text() + pki.inter_cert.read_text())
        spki = mq.spki_sha256(pki.server_cert)
        port = mc.free_port()
        h3 = [str(mq.AIOQUIC), str(mq.PEER), "serve", str(chain), str(pki.server_key), str(port)]
        with mq.server(h3, "ready", work, "h3"):
            for phase in ("baseline", "later"):
                with mq.udp_capture(paths[phase], [port], work):
                    for _ in range(runs):
                        chromium_get(port, spki, work)
                        aioquic_get(port)
            both = work / "mitm-cert.pem"
            both.write_text(pki.server_key.read_text() + chain.read_text())
            with mitm_http3(port, work, both) as mport, mq.udp_capture(paths["intercepted"], [port, mport], work):
                for _ in range(runs):
                    chromium_get(mport, spki, work)
                    aioquic_get(mport)
    (out / "server_port").write_text(str(port))
    return paths, port


CODES = ("quic_params_changed", "new_fingerprint_for_client")


def views(tables: dict[str, Any], port: int) -> dict[str, Any]:
    """The scored sets: clean later rows, and the intercepted capture by vantage (server port)."""
    later, inter = tables["later"], tables["intercepted"]
    to_server = inter["server_port"].astype("Int64") == port
    return {"later (clean)": later, "intercepted: capture (proxy's upstream)": inter[to_server.to_numpy(dtype=bool)],
            "intercepted: inline_client (genuine hellos)": inter[~to_server.to_numpy(dtype=bool)]}


def evaluate(paths: dict[str, Path], port: int) -> dict[str, dict[str, Any]]:
    """Fit on the baseline capture, score each view: rows, who sent them, each signal's rows, verdicts."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.quic_tp_fingerprint import quic_tp_fingerprints
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.pcap.engine import read_pcap

    tables = {p: read_pcap(path)[0] for p, path in paths.items()}
    b = Baseline().fit(tables["baseline"])
    out: dict[str, dict[str, Any]] = {"baseline": {
        "rows": len(tables["baseline"]),
        "fingerprints": b.quic_params_.set_index("client_id")["fingerprint"].groupby(level=0).unique()
        .map(list).to_dict()}}
    stacks = []
    for name, df in views(tables, port).items():
        tp = quic_tp_fingerprints(df["quic_transport_params"])["quic_tp"]
        for (ip, ja4, fp), n in df.assign(tp=tp.to_numpy()).groupby(["client_ip", "ja4", "tp"]).size().items():
            stacks.append({"set": name, "client": str(ip), "ja4": str(ja4), "quic_tp": str(fp), "rows": int(n)})
    out["stacks"] = {"rows": stacks}
    for name, df in views(tables, port).items():
        scored = score(df.reset_index(drop=True), b)
        fired = {c: sum(any(r["code"] == c for r in rs) for rs in scored["reasons"]) for c in CODES}
        out[name] = {"rows": len(df), "clients": df["client_ip"].astype(str).value_counts().to_dict(),
                     "fingerprints": quic_tp_fingerprints(df["quic_transport_params"])["quic_tp"]
                     .value_counts().to_dict(), **fired,
                     "verdicts": scored["verdict"].astype(str).value_counts().to_dict()}
    return out


def report(res: dict[str, dict[str, Any]], runs: int, load: str) -> str:
    lines = ["# QUIC transport parameters as evidence, on real stacks (2026-12-07)", "",
             f"Made by `benchmarks/eval_quic_params.py --runs {runs}` (Chromium "
             f"{mc.first_line(mc.run([mq.CHROMIUM, '--version'])).split()[1]}, aioquic client and HTTP/3 server, "
             "mitmproxy `mitmdump --mode reverse:http3`; native engine; full knowledge base).", "",
             f"Baseline: {res['baseline']['rows']} QUIC connections; learned fingerprints per client: "
             f"{res['baseline']['fingerprints']}.", "",
             "| scored set | rows | clients | TP fingerprints | quic_params_changed | new_fingerprint_for_client "
             "| verdicts |", "|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        if name in ("baseline", "stacks"):
            continue
        lines.append(f"| {name} | {r['rows']} | {r['clients']} | {r['fingerprints']} | {r['quic_params_changed']} "
                     f"| {r['new_fingerprint_for_client']} | {r['verdicts']} |")
    lines += ["", "Each sender's JA4 and transport-parameter fingerprint:", "",
              "| scored set | client | JA4 | TP fingerprint | rows |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['client']} | `{r['ja4']}` | `{r['quic_tp']}` | {r['rows']} |"
              for r in res["stacks"]["rows"]]
    lines += ["", f"Load average while scoring: `{load}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--report", type=Path, default=None, help="write the Markdown table here")
    p.add_argument("--reuse", action="store_true", help="score the captures already in --out")
    args = p.parse_args(argv)
    if args.reuse:
        paths, port = {ph: args.out / f"{ph}.pcapng" for ph in PHASES}, int((args.out / "server_port").read_text())
    else:
        paths, port = capture(args.out, args.runs)
    res = evaluate(paths, port)
    text = report(res, args.runs, Path("/proc/loadavg").read_text().strip())
    print(text)
    if args.report:
        args.report.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
