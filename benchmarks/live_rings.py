#!/usr/bin/env python3
"""Where a live capture's ring file's time goes: read, engine windows, quiet finish, rows, scoring.

Captures one ``tcpreplay --topspeed`` replay of a capture onto ``lo`` in a network namespace
(``unshare -n``) with dumpcap, the built-in BPF and the live source's 16 MiB / 1 s ring, and
keeps the ring files (``--capture``). Then (``--rings DIR``) reads those same files with
:class:`~tlsdetect.readers.pcap.rolling.RollingEngine` and scores each file's rows with
:class:`~tlsdetect.stream.rows_processor.RowsProcessor`, as the live source does, in three
modes alternating round robin (best of ``--rounds``), the load average beside each:

* ``rings``: the live engine (quiet reassembling-lane connections finished after 1 s of capture time);
* ``rings-idle``: the same without that rule (followed for ``IDLE_NS``, as before 2026-12-08);
* ``merged``: the ring files joined into one file (``mergecap``), read as ``tlsdetect fingerprint`` would.

Per mode: rows, fast-lane and reassembling-lane connections, ``pending_evicted`` rows, CPU
seconds per stage (summed over files) and hellos per CPU-second.

    python benchmarks/live_rings.py --capture /tmp/rings --pcap /tmp/bench-live-20000.pcap
    python benchmarks/live_rings.py --rings /tmp/rings --rounds 3
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlsdetect.readers.pcap.bpf import capture_filter  # noqa: E402
from tlsdetect.readers.pcap.rolling import RollingEngine  # noqa: E402
from tlsdetect.stream.live_capture import QUIET_NS  # noqa: E402
from tlsdetect.stream.rows_processor import RowsProcessor  # noqa: E402


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def capture(pcap: Path, out: Path) -> None:
    """In a new network namespace: dumpcap on lo (the live source's ring) while tcpreplay replays."""
    out.mkdir(parents=True, exist_ok=True)
    script = (
        "set -e; ip link set lo up; "
        f"dumpcap -q -n -i lo -f '{capture_filter()}' -w {out}/ring.pcapng -b filesize:16384 -b duration:1 "
        "2>/dev/null & D=$!; sleep 1.5; "
        f"tcpreplay -q --topspeed -i lo {pcap} 2>&1 | grep -E 'Actual|Rated'; sleep 3; kill $D; wait $D || true"
    )
    subprocess.run(["unshare", "-n", "sh", "-c", script], check=True)


def _timed(stages: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            stages[name] += time.process_time() - t0
    return wrapper


def run(files: list[Path], quiet_ns: int | None, proc: RowsProcessor) -> dict[str, object]:
    """One engine over ``files`` in order, every file's rows scored; CPU per stage."""
    stages: dict[str, float] = defaultdict(float)
    eng = RollingEngine("bench", quiet_ns=quiet_ns)
    e = eng.engine
    e.window = _timed(stages, "engine windows", e.window)  # type: ignore[method-assign]
    e.drain = _timed(stages, "rows (drain)", e.drain)  # type: ignore[method-assign]
    eng._finish_quiet = _timed(stages, "quiet finish", eng._finish_quiet)  # type: ignore[method-assign]
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), load()
    rows = 0
    for f in [*files, None]:
        t0 = time.process_time()
        part = eng.feed(f) if f is not None else eng.finish()
        stages["feed (all)" if f is not None else "finish (all)"] += time.process_time() - t0
        t0 = time.process_time()
        if len(part):
            rows += proc(pickle.dumps(part, protocol=5), 1, "bench").rows
        stages["scoring"] += time.process_time() - t0
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    c = eng.stats.counts
    return {
        "files": len(files), "rows": rows, "fast_lane": int(c.get("fast_lane_connections", 0)),
        "reassembling_lane": rows - int(c.get("fast_lane_connections", 0)),
        "pending_evicted": int(c.get("pending_evicted", 0)), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
        "hellos_per_cpu_s": round(rows / cpu), "us_cpu_per_hello": round(cpu / rows * 1e6),
        "stages_cpu_s": {k: round(v, 2) for k, v in stages.items()}, "load": [load0, load()],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, help="replay --pcap and keep the ring files here")
    p.add_argument("--pcap", type=Path, default=Path(tempfile.gettempdir()) / "bench-live-20000.pcap")
    p.add_argument("--rings", type=Path, help="ring files to read")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if a.capture is not None:
        capture(a.pcap, a.capture)
        return
    files = sorted(a.rings.glob("ring_*.pcapng"))
    merged = Path(tempfile.mkdtemp()) / "merged.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(merged), *map(str, files)], check=True)
    proc = RowsProcessor(None)
    run(files[:4], QUIET_NS, proc)  # warm-up, not counted: imports and lazy tables (~8 s once)
    modes = {"rings": (files, QUIET_NS), "rings-idle": (files, None), "merged": ([merged], None)}
    for r in range(a.rounds):
        for name, (fs, quiet) in modes.items():
            print(json.dumps({"round": r + 1, "mode": name, **run(fs, quiet, proc)}), flush=True)
    merged.unlink()


if __name__ == "__main__":
    main()
