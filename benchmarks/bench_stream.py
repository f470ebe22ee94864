"""``tlsdetect stream``: throughput from file to a JSONL sink, and end-to-end latency line -> alert.

Lines are the real lines of an Envoy 1.40 access log (``../shared/samples/envoy/envoy_access.sample.jsonl``:
mTLS listener, HTTP and listener lines of five real clients), replayed with new client addresses, ports,
connection ids and START_TIMEs; 1% of them carry a client certificate issued by ``CN=mitmproxy`` (the
alerts). The baseline is learned from the sample itself (so the other 99% score ``ok``).

* throughput: ``tlsdetect stream`` (the real CLI, a subprocess) without ``--follow`` over N lines
  (default 1,000,000) to ``jsonl:FILE``, wall time including start-up, for ``--workers 1`` and ``2``;
* latency: ``tlsdetect stream --follow`` on a growing file; lines are appended at each of ``--rates`` lines/s with
  one alert line in every 20, and the time from the write of an alert line to its ECS document in the
  JSONL sink is measured (the sink file is polled every millisecond).

    .venv/bin/python benchmarks/bench_stream.py [--lines 1000000] [--rates 200,2000] [--seconds 20] [--workers 1,2]

Writes ``benchmarks/results/stream-<date>.md``.

* A/B: ``--ab OLD_TREE`` (a checkout of another commit, e.g. ``git worktree add /tmp/old HEAD~3``) runs the
  throughput of that tree (``PYTHONPATH=OLD_TREE``) and of this one alternately, ``--rounds`` times, and prints
  each round's times, the load average and the ratio new/old (no latency runs, no results file):

    .venv/bin/python benchmarks/bench_stream.py --ab /tmp/old --lines 100000 --workers 1,2 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = (
    Path(os.environ.get("TLSDETECT_SHARED", ROOT.parent / "shared")) / "samples" / "envoy" / "envoy_access.sample.jsonl"
)
TLSDETECT = [sys.executable, "-m", "tlsdetect"]
MITM_ISSUER = "CN=mitmproxy,O=mitmproxy"


def sample_lines() -> list[dict[str, Any]]:
    return [json.loads(x) for x in SAMPLE.read_text().splitlines() if x.strip()]


class Lines:
    """Real sample lines with fresh addresses, connection ids and times; every ``alert_every``-th an alert."""

    def __init__(self, seed: int = 7, alert_every: int = 100) -> None:
        self.rng = random.Random(seed)
        self.base = sample_lines()
        self.n = 0
        self.alert_every = alert_every
        self.t0 = dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC)

    def next(self, when: dt.datetime | None = None) -> tuple[str, str | None]:
        """(line, client address when it is an alert line)."""
        self.n += 1
        rec = dict(self.base[self.n % len(self.base)])
        addr = f"10.{self.n >> 16 & 255}.{self.n >> 8 & 255}.{self.n & 255}:{1024 + self.n % 60000}"
        rec["downstream_remote_address"] = addr
        rec["connection_id"] = self.n
        ts = when or self.t0 + dt.timedelta(milliseconds=self.n)
        rec["start_time"] = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        alert = None
        if self.n % self.alert_every == 0:
            rec["downstream_peer_issuer"] = MITM_ISSUER
            alert = addr
        return json.dumps(rec, separators=(",", ":")) + "\n", alert


def make_baseline(work: Path) -> Path:
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy import read_envoy

    out = work / "baseline"
    Baseline().fit(enrich(read_envoy([SAMPLE]))).save(out)
    return out


def throughput(work: Path, baseline: Path, n: int, workers: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    log = work / "big.log"
    if not log.exists():
        gen = Lines()
        with log.open("w") as fh:
            for _ in range(n):
                fh.write(gen.next()[0])
    state, sink = work / f"state-{workers}", work / f"alerts-{workers}.jsonl"
    shutil.rmtree(state, ignore_errors=True)
    sink.unlink(missing_ok=True)
    t = time.perf_counter()
    res = subprocess.run([*TLSDETECT, "stream", "--baseline", str(baseline), "--source", f"envoy:{log}", "--sink",
                          f"jsonl:{sink}", "--state", str(state), "--workers", str(workers), "--batch-lines", "20000"],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    wall = time.perf_counter() - t
    alerts = sum(1 for _ in sink.open())
    return {"workers": workers, "lines": n, "seconds": wall, "lines_per_s": n / wall, "alerts": alerts,
            "bytes": log.stat().st_size, "summary": res.stderr.strip().splitlines()[-1]}  # fmt: skip


def startup(work: Path, baseline: Path) -> float:
    """Wall time of a run over a one-line file: imports, baseline, sinks, checkpoint (best of 3)."""
    log = work / "one.log"
    log.write_text(Lines().next()[0])
    best = float("inf")
    for i in range(3):
        t = time.perf_counter()
        subprocess.run([*TLSDETECT, "stream", "--baseline", str(baseline), "--source", f"envoy:{log}", "--sink",
                        f"jsonl:{work / 'one.jsonl'}", "--state", str(work / f"state-one-{i}")],
                       capture_output=True, check=True)  # fmt: skip
        best = min(best, time.perf_counter() - t)
    return best


def latency(work: Path, baseline: Path, rate: float, seconds: float) -> dict[str, Any]:
    log, sink, state = work / "live.log", work / "live-alerts.jsonl", work / "state-live"
    log.write_text("")
    sink.unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)
    proc = subprocess.Popen([*TLSDETECT, "stream", "--baseline", str(baseline), "--source", f"envoy:{log}", "--follow",
                             "--sink", f"jsonl:{sink}", "--state", str(state)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    gen = Lines(seed=11, alert_every=20)
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    try:
        time.sleep(3.0)  # start-up (imports, baseline)
        pos = 0
        rest = b""
        start = time.perf_counter()
        sent = 0
        with log.open("a") as fh:
            while time.perf_counter() - start < seconds or len(seen) < len(written):
                now = time.perf_counter()
                due = int((now - start) * rate) if now - start < seconds else sent
                while sent < due:
                    text, alert = gen.next(dt.datetime.now(dt.UTC))
                    fh.write(text)
                    fh.flush()
                    if alert is not None:
                        written[alert] = time.perf_counter()
                    sent += 1
                if sink.exists():
                    with sink.open("rb") as sf:
                        sf.seek(pos)
                        data = rest + sf.read()
                        pos = sf.tell()
                    *complete, rest = data.split(b"\n")
                    t_seen = time.perf_counter()
                    for raw in complete:
                        doc = json.loads(raw)
                        seen[f"{doc['source']['ip']}:{doc['source']['port']}"] = t_seen
                if now - start > seconds + 30:
                    break
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait(10)
    lat = sorted(seen[k] - written[k] for k in written if k in seen)
    return {"rate": rate, "seconds": seconds, "lines": sent, "alerts_written": len(written), "alerts_seen": len(lat),
            "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "max_ms": 1000 * lat[-1], "mean_ms": 1000 * statistics.fmean(lat)}  # fmt: skip


def tree_env(tree: Path | None) -> dict[str, str]:
    """The environment that runs ``tree``'s code (None: this checkout's)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree or ROOT)
    return env


def ab(old: Path, n: int, workers: list[int], rounds: int) -> None:
    """Old and new throughput alternately (the order swapped each round), with the load average."""
    print(f"A/B: old {old} vs new {ROOT}, {n:,} lines, workers {workers}, {rounds} rounds; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-stream-ab-") as tmp:
        work = Path(tmp)
        baseline = make_baseline(work)
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(rounds):
            order = [("old", old), ("new", None)] if r % 2 == 0 else [("new", None), ("old", old)]
            for w in workers:
                for label, tree in order:
                    res = throughput(work, baseline, n, w, env=tree_env(tree))
                    times.setdefault((label, w), []).append(res["seconds"])
                    print(f"round {r + 1} workers {w} {label}: {res['seconds']:.2f} s "
                          f"({res['lines_per_s']:,.0f} lines/s, {res['alerts']} alerts) "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
        for w in workers:
            o, nw = statistics.median(times[("old", w)]), statistics.median(times[("new", w)])
            print(f"workers {w}: median old {o:.2f} s, new {nw:.2f} s, new/old {nw / o:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rates", default="200,2000", help="lines/s appended in the latency runs")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--ab", type=Path, metavar="OLD_TREE", help="A/B throughput against another checkout")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds")
    args = ap.parse_args()
    if args.ab is not None:
        ab(args.ab.resolve(), args.lines, [int(w) for w in args.workers.split(",")], args.rounds)
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        work = Path(tmp)
        baseline = make_baseline(work)
        runs = [throughput(work, baseline, args.lines, int(w)) for w in args.workers.split(",")]
        size = (work / "big.log").stat().st_size
        (work / "big.log").unlink()
        boot = startup(work, baseline)
        lats = [latency(work, baseline, float(r), args.seconds) for r in args.rates.split(",")]
    date = dt.date.today().isoformat()
    lines = [
        f"# tlsdetect stream benchmark ({date})", "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run (a shared machine).", "",
        f"## Throughput: {args.lines:,} Envoy JSON lines ({size / 1e6:.0f} MB) from file to `jsonl:`, "
        "no `--follow`, `--batch-lines 20000`", "",
        "Real sample lines (Envoy 1.40, mTLS, JA3+JA4) with new addresses/ids/times; 1% carry a mitmproxy-issued",
        "client certificate. Wall time of the `tlsdetect stream` process, start-up (imports, baseline) included.", "",
        f"Start-up (a one-line run: imports, baseline, checkpoint): {boot:.2f} s.", "",
        "| workers | seconds | lines/s | lines/s without start-up | alerts at the sink | summary |",
        "|---:|---:|---:|---:|---:|---|",
        *[f"| {r['workers']} | {r['seconds']:.1f} | {r['lines_per_s']:,.0f} "
          f"| {r['lines'] / (r['seconds'] - boot):,.0f} | {r['alerts']:,} | {r['summary']} |" for r in runs],
        "", f"## Latency: a line written -> its alert in the JSONL sink (`--follow`, {args.seconds:.0f} s per rate, "
        "one alert line in 20)", "",
        "| lines/s appended | lines | alerts written | alerts seen | p50 ms | p95 ms | max ms | mean ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {lat['rate']:.0f} | {lat['lines']:,} | {lat['alerts_written']} | {lat['alerts_seen']} "
          f"| {lat['p50_ms']:.0f} | {lat['p95_ms']:.0f} | {lat['max_ms']:.0f} | {lat['mean_ms']:.0f} |"
          for lat in lats],
        "",
        "Defaults: `--batch-lines 5000 --batch-ms 200`, 20 ms poll; a batch is sent as soon as the follower reaches",
        "the end of the file, so under light load the latency is poll + parse + score + fsync of the sink.", "",
    ]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / f"stream-{date}.md"
    out.write_text(text)
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
