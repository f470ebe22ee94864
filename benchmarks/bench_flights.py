#!/usr/bin/env python3
"""Flight columns against the window size, fast-lane share and CPU, for two or more checkouts.

Why: the native engine's ``server_flight*``/``client_flight*`` depended on where its windows
fell (a handshake quiet at a window's end was taken with its flights missing, not said
truncated). Per checkout and round (round robin, each run in a fresh process with
``PYTHONPATH`` set to the checkout): ``fingerprint -f jsonl`` of the file (CPU of the child,
default window), then engine reads with each ``--window``: CPU, fast-lane share, and how many
rows' flight columns differ from a one-window read of the same checkout. Best of the rounds,
load average beside every number.

    .venv/bin/python benchmarks/bench_flights.py --tree old=/path/a --tree new=/path/b FILE.pcap \
        --window 16777216 --window 3145728 --results benchmarks/results/flights-2026-12-07.md
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

FLIGHTS = ("server_flight", "server_flight_bytes", "client_flight", "client_flight_bytes", "truncated")
ONE_WINDOW = 512 << 20  # more than the file: one window (the buffer is this big)


def _cells(values: Any) -> list[str | None]:
    """Column values as comparable text, None for missing (lists, numbers and NA alike)."""
    import numpy as np
    import pandas as pd

    out: list[str | None] = []
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append(str([int(x) for x in v]))
        else:
            out.append(None if v is None or pd.isna(v) else str(v))
    return out


def child(path: Path, windows: list[int]) -> dict[str, Any]:
    """Engine reads of ``path`` by the checkout on ``sys.path``: per window CPU, share, differing rows."""
    from tlsdetect.readers.pcap.engine import read_pcap

    key = ["client_ip", "client_port", "server_ip", "server_port"]
    out: dict[str, Any] = {}
    ref = None
    for w in [ONE_WINDOW, *windows]:
        before = time.process_time()
        df, stats = read_pcap(path, window=w)
        cpu = time.process_time() - before
        df = df.sort_values(key, ignore_index=True)
        got = {c: _cells(df[c]) for c in FLIGHTS}
        if ref is None:
            ref = got
        differ = {c: sum(a != b for a, b in zip(ref[c], got[c], strict=True)) for c in FLIGHTS}
        lost = {c: sum(a is not None and b is None for a, b in zip(ref[c], got[c], strict=True)) for c in FLIGHTS}
        out[str(w)] = {"cpu": round(cpu, 2), "rows": len(df), "fast": stats.counts["fast_lane_connections"],
                       "carried": stats.counts.get("carried_connections", 0), "differ": differ, "lost": lost}
    return out


def cli_cpu(path: Path, env: dict[str, str]) -> float:
    """CPU (user + system) of ``fingerprint -f jsonl`` on ``path``, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "-f", "jsonl", "--no-progress", "-o",
                    os.devnull, str(path)], env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2)


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--tree", action="append", required=True, help="NAME=CHECKOUT (two or more)")
    p.add_argument("--window", action="append", type=int, default=[], help="window bytes (repeatable)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--results", type=Path, help="Markdown table of the best runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.file, args.window)))
        return 0
    trees = dict(t.split("=", 1) for t in args.tree)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": tree}
            load_cli = _load()
            cpu = cli_cpu(args.file, env)
            load_eng = _load()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", "x=x", str(args.file)]
            cmd += [a for w in args.window for a in ("--window", str(w))]
            eng = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
            res = {"cli_cpu": cpu, "cli_load": load_cli, "engine": eng, "engine_load": load_eng}
            runs[name].append(res)
            print(json.dumps({"tree": name, "round": r + 1, **res}), flush=True)
    lines = [f"# Flights against the window size: {args.file.name}", "",
             f"`{' '.join(sys.argv)}`, best of {args.rounds} rounds (round robin), load average (1 min) beside.",
             "", "| tree | fingerprint -f jsonl CPU s (load) | window | engine CPU s (load) | fast lane | carried "
             "| rows whose flights differ from one window (lost) |", "|---|---|---|---|---|---|---|"]
    for name, rs in runs.items():
        best_cli = min(rs, key=lambda x: x["cli_cpu"])
        for w in [str(ONE_WINDOW), *map(str, args.window)]:
            best = min(rs, key=lambda x: x["engine"][w]["cpu"])
            e = best["engine"][w]
            differ = max(e["differ"].values())
            lost = max(e["lost"].values())
            label = "one" if w == str(ONE_WINDOW) else f"{int(w) / (1 << 20):g} MiB"
            lines.append(f"| {name} | {best_cli['cli_cpu']} ({best_cli['cli_load']}) | {label} | {e['cpu']} "
                         f"({best['engine_load']}) | {e['fast']} / {e['rows']} | {e['carried']} | {differ} ({lost}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
