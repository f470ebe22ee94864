#!/usr/bin/env python3
"""Time the native engine of two or more checkouts of tlsdetect on one QUIC capture, same run.

Why: a change to the QUIC path is judged against the code before it on the same machine at the
same time (the machine is shared; a figure from another run says nothing). Each tree is a
checkout (``git archive COMMIT | tar -x -C DIR``, with its compiled extensions built or copied
in), run as the CLI (``python -m tlsdetect fingerprint FILE --engine native``) with
``PYTHONPATH=DIR``, alternating round robin, best of ``--rounds``, load average beside each time:

    python benchmarks/bench_quic_trees.py --pcap benchmarks/data/quic.pcap /tmp/base /tmp/head
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _run(tree: Path, pcap: Path, out: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, load average at its end)."""
    cmd = [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "--engine", "native", "-f", "parquet",
           "-o", str(out), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), cmd)
    return wall, usage.ru_utime + usage.ru_stime, _load()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("trees", type=Path, nargs="+")
    args = ap.parse_args(argv)
    args.pcap.read_bytes()  # warm the page cache for all
    runs: dict[Path, list[tuple[float, float, str]]] = {t: [] for t in args.trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.trees if r % 2 == 0 else args.trees[::-1]
            for tree in order:
                runs[tree].append(_run(tree, args.pcap, Path(tmp) / "out.parquet"))
                wall, cpu, load = runs[tree][-1]
                print(f"round {r + 1} {tree}: wall {wall:.2f} s, CPU {cpu:.2f} s (load {load})")
    first = args.trees[0]
    print("| tree | runs (wall s / CPU s, load) | best wall | best CPU | CPU ratio vs first |")
    print("|---|---|---|---|---|")
    for tree in args.trees:
        cells = ", ".join(f"{w:.2f} / {c:.2f} ({load})" for w, c, load in runs[tree])
        best_cpu = min(c for _, c, _ in runs[tree])
        ratio = min(c for _, c, _ in runs[first]) / best_cpu
        print(f"| {tree} | {cells} | {min(w for w, _, _ in runs[tree]):.2f} | {best_cpu:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
