#!/usr/bin/env python3
"""Where the pcap engine's memory is, window by window, on one capture (issue 18, row 7).

Why: peak RSS alone cannot tell held state from allocator high water. After each window of
``iter_connections`` (in this process, from this tree) this records the RSS, glibc's heap
(``mallinfo2``: in use and free), CPython's small-object arenas (``sys._debugmallocstats``: arenas
kept, their high water, bytes in live blocks) and the engine's pending state (open directions,
estimated held bytes, kept segments, rows waiting). That is how the cause of the flow-dependent
growth was found: pymalloc arenas pinned by the survivors of one window's burst of directions,
not the held bytes (``results/memory-2026-12-07.md``). glibc/Linux only.

``--trim`` calls ``malloc_trim(0)`` after each window (its effect on RSS); ``--cap N`` sets the
directions cap for the run. Output: one JSON line for the window with the highest RSS, and the
run's ``ru_maxrss``; ``--every`` prints every window.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tlsdetect.readers.pcap import engine, pending


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _pymalloc() -> dict[str, int]:
    """CPython's small-object allocator: arenas (MiB) now and at the high water, live blocks (MiB)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode()

    def number(label: str) -> int:
        m = re.search(label + r"\s*=\s*([\d,]+)", text)
        return int(m.group(1).replace(",", "")) if m else -1

    return {"pym_arenas": number("# arenas allocated current"), "pym_hw": number("# arenas highwater mark"),
            "pym_live_mib": number("# bytes in allocated blocks") >> 20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap", type=Path)
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) after each window")
    ap.add_argument("--cap", type=int, help="pending directions cap for this run")
    ap.add_argument("--every", action="store_true", help="a line for every window")
    args = ap.parse_args(argv)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    if args.cap is not None:
        pending.MAX_PENDING_DIRECTIONS = args.cap
    page = os.sysconf("SC_PAGE_SIZE")
    windows: list[dict[str, Any]] = []
    step = engine._Engine.window

    def window(self: engine._Engine, w: engine._Window) -> None:
        step(self, w)
        if args.trim:
            libc.malloc_trim(0)
        st, mi = self.state, libc.mallinfo2()
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * page >> 20
        rec = {"window": st.window, "rss_mib": rss, "heap_mib": mi.arena >> 20, "heap_used_mib": mi.uordblks >> 20,
               "heap_free_mib": mi.fordblks >> 20, "mmap_mib": mi.hblkhd >> 20, **_pymalloc(),
               "directions": len(st.flows), "held_est_mib": st.held >> 20,
               "segments": sum(len(d.segments) for d in st.flows.values()), "rows_waiting": len(st.rows)}
        windows.append(rec)
        if args.every:
            print(json.dumps(rec), flush=True)

    engine._Engine.window = window  # type: ignore[method-assign]
    t0 = time.perf_counter()
    rows = sum(len(df) for df in engine.iter_connections(args.pcap))
    peak = max(windows, key=lambda r: r["rss_mib"]) if windows else {}
    print(json.dumps({"peak_window": peak}))
    print(json.dumps({"rows": rows, "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
                      "seconds": round(time.perf_counter() - t0, 1), "load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
