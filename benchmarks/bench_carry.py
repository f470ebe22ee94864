#!/usr/bin/env python3
"""Fast-lane share, JA3 truth, wall and CPU of two checkouts of the engine on interleaved files.

Why: issue 19 items 1, 2 and 4 (the fast lane carries handshakes across windows and stitches split
hellos) must show the share it gains at 50,000 connections/s on full-size files, rows still equal
to the generator's truth, and what it costs or saves against the checkout before it. Each round
runs every checkout once per file, alternating (round robin), each read in a fresh process (its
``PYTHONPATH`` set to the checkout) through ``bench_interleaved.measure``; the best of the rounds
is kept, with the load average beside every number.

    .venv/bin/python benchmarks/bench_carry.py --tree old=/path/a --tree new=/path/b FILE.pcap ...
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(path: Path) -> dict[str, Any]:
    """One read of ``path`` by the checkout on ``sys.path``: the share and truth, wall and CPU."""
    sys.path.insert(0, str(HERE))
    import bench_interleaved  # here: the checkout's tlsdetect comes from PYTHONPATH

    from tlsdetect.readers.pcap.capture import WINDOW

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    got = bench_interleaved.measure(path, WINDOW)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    keep = ("rows", "ja3_right", "connections_generated", "fast_lane_connections", "fast_share", "slow_causes")
    out = {k: got[k] for k in keep}
    out.update(wall=round(wall, 2), cpu=round(cpu, 2), load=os.getloadavg()[0],
               carried=got["engine_counts"].get("carried_connections", 0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--tree", action="append", required=True, help="NAME=CHECKOUT (two or more)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.files[0])))
        return 0
    trees = dict(t.split("=", 1) for t in args.tree)
    for f in args.files:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": tree}
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", "x=x", str(f)]
                res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
                runs[name].append(res)
                print(json.dumps({"file": f.name, "tree": name, "round": r + 1, **res}), flush=True)
        best = {name: min(rs, key=lambda x: x["wall"]) for name, rs in runs.items()}
        print(json.dumps({"file": f.name, "best_wall": {n: b["wall"] for n, b in best.items()},
                          "best_cpu": {n: min(x["cpu"] for x in runs[n]) for n in runs}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
