#!/usr/bin/env python3
"""Peak RSS, wall and CPU of ``tlsdetect fingerprint FILE -f jsonl`` for several trees, round robin.

Why (issue 19): the capture path's target is a peak RSS <= 300 MB on any capture; memory moves less
with the load than time, so CPU seconds (user + system) are given beside wall time. Each run is a
child process with ``PYTHONPATH`` set to the tree; peak RSS is its ``ru_maxrss`` (``wait4``); the
1-minute load average before each run is written next to it. One JSON line per run on stdout, then
the best of the rounds per tree.

    bench_peak_rss.py FILE --tree old=/path/a --tree new=/path/b [--rounds 3] [--format jsonl]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(pcap: Path, tree: Path, fmt: str) -> dict[str, Any]:
    """One ``fingerprint`` run of ``tree``: peak RSS (MiB), wall and CPU seconds, output bytes."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory(dir=pcap.parent) as tmp:
        out = Path(tmp) / f"out.{fmt}"
        cmd = [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "-f", fmt, "-o", str(out)]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        size = out.stat().st_size if out.exists() else 0
    return {"rc": os.waitstatus_to_exitcode(status), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "out_bytes": size,
            "load": round(load, 2), "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap", type=Path)
    ap.add_argument("--tree", action="append", required=True, help="LABEL=PATH (a checkout with its C core built)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--format", default="jsonl")
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for r in range(args.rounds):
        for label, tree in trees.items():
            line = run(args.pcap, Path(tree), args.format)
            runs[label].append(line)
            print(json.dumps({"round": r, "label": label, "tree": tree, **line}), flush=True)
    for label, lines in runs.items():
        ok = [x for x in lines if x["rc"] == 0]
        if ok:
            print(json.dumps({"best": label, "peak_rss_mib": min(x["peak_rss_mib"] for x in ok),
                              "cpu_s": min(x["cpu_s"] for x in ok), "wall_s": min(x["wall_s"] for x in ok),
                              "runs": len(ok)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
