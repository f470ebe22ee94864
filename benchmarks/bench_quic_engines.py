#!/usr/bin/env python3
"""Time (checkout, engine) pairs on one QUIC capture in the same run: e.g. the native engine of this
branch and of the tree before it, and the tshark engine, alternating round robin, best of ``--rounds``,
CPU seconds (process and children: tshark is a child) and the load average beside each run.

Why: the QUIC target (>= 20x the tshark engine) and the gain over the previous tree must both be
judged in one run on this shared machine (a figure from another run says nothing).

    python benchmarks/bench_quic_engines.py --pcap FILE /tmp/base:native HEAD_DIR:native HEAD_DIR:tshark
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _run(tree: Path, engine: str, pcap: Path, out: Path) -> tuple[float, float, str, int]:
    """(wall s, CPU s of it and its children, load average at its end, rows written)."""
    cmd = [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "--engine", engine, "-f", "parquet",
           "-o", str(out), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), cmd)
    rows = pq.read_metadata(out).num_rows
    return wall, usage.ru_utime + usage.ru_stime, _load(), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--pcap", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("pairs", nargs="+", help="TREE:ENGINE")
    args = ap.parse_args(argv)
    pairs = [(Path(p.rsplit(":", 1)[0]).resolve(), p.rsplit(":", 1)[1]) for p in args.pairs]
    runs: dict[int, list[tuple[float, float, str, int]]] = {i: [] for i in range(len(pairs))}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(range(len(pairs)))
            order = order[r % len(order):] + order[: r % len(order)]  # the first runner alternates
            for i in order:
                tree, engine = pairs[i]
                got = _run(tree, engine, args.pcap, Path(tmp) / f"{i}.parquet")
                runs[i].append(got)
                print(f"round {r + 1} {tree.name}:{engine}: {got[0]:.2f} s wall, {got[1]:.2f} s CPU, "
                      f"load {got[2]}, {got[3]} rows", flush=True)
    best = {i: (min(w for w, *_ in v), min(c for _, c, *_ in v)) for i, v in runs.items()}
    print("| tree:engine | runs (wall s / CPU s, load) | best wall | best CPU | rows |")
    print("|---|---|---|---|---|")
    for i, (tree, engine) in enumerate(pairs):
        cells = ", ".join(f"{w:.2f} / {c:.2f} ({ld})" for w, c, ld, _ in runs[i])
        print(f"| {tree.name}:{engine} | {cells} | {best[i][0]:.2f} | {best[i][1]:.2f} | {runs[i][-1][3]} |")
    ref = next((i for i, (_, engine) in enumerate(pairs) if engine == "tshark"), None)
    if ref is not None:  # the ratio the target is stated in: the tshark engine's time over each
        for i, (tree, engine) in enumerate(pairs):
            print(f"{tree.name}:{engine}: tshark / this = {best[ref][0] / best[i][0]:.2f}x by wall, "
                  f"{best[ref][1] / best[i][1]:.2f}x by CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
