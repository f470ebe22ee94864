#!/usr/bin/env python3
"""Peak RSS of ``tlsdetect fingerprint`` against capture size, on concurrent unfinished handshakes.

Why (issue 18, row 7): the pending handshakes of the native engine must have a global bound, so
peak memory stays flat however large a capture of busy, never-finishing handshakes grows. For each
size this builds such a capture (:mod:`make_unfinished_pcap`, flows proportional to the size), runs
``tlsdetect fingerprint FILE -f parquet -o /dev/null`` from this tree (and, with ``--compare``,
from another checkout through ``PYTHONPATH``), takes the child's ``ru_maxrss`` and wall time and
the ``pending_evicted`` count of its weird summary line, then deletes the capture (8 GiB of disk
each). One JSON line per size on stdout is the headline format; the 1-minute load average is
written next to each run, as other jobs on the machine move times (not peak RSS).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_unfinished_pcap import build

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(pcap: Path, tree: Path) -> dict[str, Any]:
    """One ``fingerprint`` run from ``tree``: peak RSS (MiB), seconds, rows and evictions."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "-f", "parquet", "-o", "/dev/null"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    rows = re.search(r"(\d+) connections from", err)
    evicted = re.search(r"pending_evicted (\d+)", err)
    return {
        "rc": rc,
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "seconds": round(seconds, 1),
        "rows": int(rows.group(1)) if rows else None,
        "evicted": int(evicted.group(1)) if evicted else 0,
        "load": round(load, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,2,4,8", help="GiB sizes for this tree (default 1,2,4,8)")
    ap.add_argument("--compare", type=Path, help="another checkout run on --compare-sizes")
    ap.add_argument("--compare-sizes", default="1,2", help="GiB sizes for --compare (default 1,2)")
    ap.add_argument("--flows-per-gb", type=int, default=9_000)
    ap.add_argument("--seg", type=int, default=1330)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="where captures are built and deleted")
    args = ap.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")]
    old_sizes = {float(s) for s in args.compare_sizes.split(",")} if args.compare else set()
    for gb in sorted(set(sizes) | old_sizes):
        pcap = args.dir / f"unfinished-{gb:g}g.pcap"
        info = build(pcap, gb, args.flows_per_gb, args.seg)
        line: dict[str, Any] = {"gib": gb, "flows": int(info["flows"]), "file_bytes": int(info["bytes"])}
        try:
            if gb in sizes:
                line["new"] = run(pcap, REPO_ROOT)
            if gb in old_sizes:
                assert args.compare is not None
                line["old"] = run(pcap, args.compare.resolve())
        finally:
            pcap.unlink()
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
