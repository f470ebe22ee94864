#!/usr/bin/env python3
"""Live capture: sustained hellos/s without drops, and packet-to-alert latency (p50/p99).

A synthetic capture of real hellos (``make_big_pcap.py``) is replayed with ``tcpreplay`` onto
``lo`` inside a network namespace this script creates (``unshare -n``: nothing leaves it) while
:class:`~tlsdetect.stream.live_capture.LiveCapture` captures ``lo`` with dumpcap (the built-in
BPF, a 16 MiB / 1 s ring) and :class:`~tlsdetect.stream.rows_processor.RowsProcessor` scores each
ring file's rows, as ``tlsdetect stream --source pcap:lo`` does. Per run: rows (against the
same file read offline: fewer is a drop), hellos/s from the first replayed packet to the last
scored row, ring files dropped, and per row the time from its ClientHello's capture to its
scored batch (p50/p99), and CPU: the reading process's (engine and scoring) per hello and
hellos per CPU-second (the target is per core: on a loaded machine wall-clock rates say more
about the neighbours than about the engine), dumpcap's and tcpreplay's beside it.

The peer, in the same run and alternating round robin (best of 3): the same capture read
offline by the same engine and scored the same way (no capture, no replay): the ceiling of the
engine on this machine. The load average is printed beside each number.

    python benchmarks/bench_live.py [--connections 50000] [--rounds 3] [--pps N]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlsdetect.readers.pcap.rolling import RollingEngine  # noqa: E402
from tlsdetect.stream.live_capture import LiveCapture  # noqa: E402
from tlsdetect.stream.rows_processor import RowsProcessor  # noqa: E402

SHARED = Path(os.environ.get("TLSDETECT_SHARED", ROOT.parent / "shared"))


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def warm(proc: RowsProcessor) -> None:
    """Score a corpus capture's rows once: the first scoring pays imports and lazy tables (~8 s
    on this machine), which a running sensor has paid long before; not counted in either peer."""
    eng = RollingEngine("warm")
    rows = pd.concat([eng.feed(SHARED / "pcaps" / "reference" / "tls-handshake.pcapng"), eng.finish()])
    proc(pickle.dumps(rows, protocol=5), 1, "warm")


def offline(pcap: Path) -> dict[str, object]:
    """The peer: the engine over the file, rows scored per chunk like the live path's batches."""
    proc = RowsProcessor(None)
    warm(proc)
    t0, c0 = time.perf_counter(), time.process_time()
    eng = RollingEngine("offline")
    rows = 0
    for part in (eng.feed(pcap), eng.finish()):
        if len(part):
            rows += proc(pickle.dumps(part, protocol=5), 1, "offline").rows
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": rows, "seconds": dt, "hellos_per_s": rows / dt, "cpu_s": cpu, "hellos_per_cpu_s": rows / cpu,
            "pending_evicted": int(eng.stats.counts.get("pending_evicted", 0)), "load": float(load())}


def inner(pcap: Path, out: Path, pps: int | None, quiet_s: float = 3.0) -> None:
    """In the namespace: capture lo, replay, score as batches close; write the numbers to ``out``."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    spool = Path(tempfile.mkdtemp(prefix="bench-live-"))
    live = LiveCapture("lo", spool, ring_seconds=1)
    proc = RowsProcessor(None)
    warm(proc)
    time.sleep(0.5)
    cpu0 = time.process_time()
    rate = ["--topspeed"] if pps is None else ["--pps", str(pps)]
    t0 = time.time()
    replay = subprocess.Popen(["tcpreplay", "-q", *rate, "-i", "lo", str(pcap)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)  # fmt: skip
    rows, lat, last_row, quiet_since, replay_s = 0, [], t0, None, None
    while True:
        batch = live.read(1 << 30)
        if batch is not None:
            df = pickle.loads(batch.data)
            proc(batch.data, batch.first_line, batch.file)
            now = time.time()
            ts = pd.to_datetime(df["ts"], utc=True).astype("int64").to_numpy() / 1e9
            lat.append(now - ts)
            rows += len(df)
            last_row, quiet_since = now, None
            continue
        if replay_s is None and replay.poll() is not None:
            replay_s = time.time() - t0
        # ring files still queued (past the open one, which an idle dumpcap keeps at ~2 KB): not quiet
        if replay_s is not None and live.lag_bytes() > 64 << 10:
            quiet_since = None
        elif replay_s is not None:
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since > quiet_s:  # nothing more for quiet_s after the replay: all in
                break
        time.sleep(0.01)
    said = replay.stdout.read().decode() if replay.stdout else ""
    cpu = time.process_time() - cpu0
    live.close()
    children = os.times()
    shutil.rmtree(spool, ignore_errors=True)
    both = np.concatenate(lat) if lat else np.zeros(1)
    out.write_text(json.dumps({
        "rows": rows, "replay_seconds": replay_s, "seconds": last_row - t0, "hellos_per_s": rows / (last_row - t0),
        "latency_p50": float(np.percentile(both, 50)), "latency_p99": float(np.percentile(both, 99)),
        "cpu_s": cpu, "hellos_per_cpu_s": rows / cpu,
        "pending_evicted": int(live.engine.stats.counts.get("pending_evicted", 0)),
        "dumpcap_tcpreplay_cpu_s": children.children_user + children.children_system,
        "capture": live.metrics.capture, "tcpreplay": " ".join(said.split())[-300:], "load": float(load()),
    }))  # fmt: skip


def live_run(pcap: Path, pps: int | None, quiet_s: float = 3.0) -> dict[str, object]:
    out = Path(tempfile.mktemp(suffix=".json"))
    cmd = ["unshare", "-n", sys.executable, __file__, "--inner", str(pcap), "--out", str(out),
           "--quiet-s", str(quiet_s)]
    if pps is not None:
        cmd += ["--pps", str(pps)]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, object] = json.loads(out.read_text())
    out.unlink()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pps", type=int, help="replay at this many packets/s (default: tcpreplay --topspeed)")
    p.add_argument("--pcap", type=Path, help="an existing capture (default: built with make_big_pcap.py)")
    p.add_argument("--quiet-s", type=float, default=3.0, help="the live run ends this long after its last row")
    p.add_argument("--live-only", action="store_true", help="no offline peer (a diagnosis run, not a result)")
    p.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.inner is not None:
        inner(a.inner, a.out, a.pps, a.quiet_s)
        return
    pcap = a.pcap
    if pcap is None:
        pcap = Path(tempfile.gettempdir()) / f"bench-live-{a.connections}.pcap"
        if not pcap.exists():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"),
                            str(SHARED / "pcaps" / "reference"), "-o", str(pcap), "--connections",
                            str(a.connections), "--target-mb", str(a.connections * 0.0008), "--hello-fraction", "0.5",
                            "--quiet"], check=True)  # fmt: skip
    runs: dict[str, list[dict[str, object]]] = {"live": [], "offline": []}
    for r in range(a.rounds):  # round robin: live, offline, live, offline, ...
        runs["live"].append(live_run(pcap, a.pps, a.quiet_s))
        print(f"round {r + 1} live    {json.dumps(runs['live'][-1])}", flush=True)
        if a.live_only:
            return
        runs["offline"].append(offline(pcap))
        print(f"round {r + 1} offline {json.dumps(runs['offline'][-1])}", flush=True)
    best_live = max(runs["live"], key=lambda x: float(x["hellos_per_s"]))  # type: ignore[arg-type]
    best_off = max(runs["offline"], key=lambda x: float(x["hellos_per_s"]))  # type: ignore[arg-type]
    print(json.dumps({"best_live": best_live, "best_offline": best_off,
                      "ratio_live_to_offline": float(best_live["hellos_per_s"])  # type: ignore[arg-type]
                      / float(best_off["hellos_per_s"])}, indent=1))  # type: ignore[arg-type]  # fmt: skip


if __name__ == "__main__":
    main()
