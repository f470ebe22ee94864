#!/usr/bin/env python3
"""The TLS 1.3 flight walk in C (``ccore.tls13_walk``) against the numpy walk, inside one tree.

Why a script of its own: the walk is a few percent of ``tlsdetect fingerprint``'s CPU, below the
run-to-run spread of the whole command on a shared host; here the reader alone runs in a fresh
process per run (``iter_connections``, no enrichment, no output), once with each walk, alternating
round robin, best of N, the 1-minute load average beside each run. Both walks give the same rows
(the row count and a digest of the flight columns are printed per run to show it).

    python benchmarks/bench_tls13_walk.py FILE.pcap [--repeat 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import hashlib, resource, sys, time
from tlsdetect.readers.pcap import window_flights as wf
from tlsdetect.readers.pcap.engine import iter_connections
if sys.argv[2] == "numpy":
    numpy_walk = wf._walk_numpy
    wf._walk_compiled = lambda payload, base, t_hello, s, c: numpy_walk(s, c, t_hello)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
rows, digest = 0, hashlib.md5()
for chunk in iter_connections(sys.argv[1]):
    rows += len(chunk)
    for col in ("server_flight", "client_flight", "truncated"):
        digest.update(repr(sorted(map(repr, chunk[col].tolist()))).encode())
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
print(f"{cpu:.2f} {time.time() - t0:.2f} {rows} {digest.hexdigest()[:12]}")
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pcap", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    runs: dict[str, list[tuple[float, float, str]]] = {"C": [], "numpy": []}
    for r in range(args.repeat):
        for walk, done in runs.items():
            load = Path("/proc/loadavg").read_text().split()[0]
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.pcap), walk], check=True, text=True,
                                 capture_output=True).stdout.split()
            done.append((float(out[0]), float(out[1]), load))
            print(f"round {r + 1}: {walk} walk: {out[0]} s CPU, {out[1]} s wall (load {load}), {out[2]} rows, "
                  f"flights {out[3]}", flush=True)
    best = {walk: min(cpu for cpu, _, _ in rs) for walk, rs in runs.items()}
    print(f"best CPU: C walk {best['C']:.2f} s, numpy walk {best['numpy']:.2f} s: "
          f"{best['numpy'] / best['C']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
