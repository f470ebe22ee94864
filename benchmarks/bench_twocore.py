#!/usr/bin/env python3
"""Does reading a capture on both cores pay? ``fingerprint -f jsonl`` on one core vs split ways.

Why: issue 19 item 6 asks for both cores on large captures "if it pays". The engine already has a
prefetch thread and the CLI a write-behind thread, so the first question is how much of the second
core one process already uses (CPU time over wall time), the second what a split can gain at best.
Per file this runs, round robin, best of ``--rounds``, with ``/proc/loadavg`` before each run:

* ``single``: ``tlsdetect fingerprint FILE -f jsonl -o OUT`` (one process, its threads);
* ``halves``: a naive split, two such processes at once on the two halves of the file cut at a
  record boundary (``FILE.a``/``FILE.b``, written beforehand by ``--make-halves``, each a pcap
  header plus its records; no merge, and the second half starts in the middle of open connections);
* ``merged``: what a split with a perfect merge reads (``--make-seam``): the halves without the
  flows that cross the cut, at once, then those flows alone; their rows are checked against single's;
* ``jobs2``: ``fingerprint --jobs 2`` when the tree has that option (the split with its merge).

It prints a Markdown table: wall, CPU (user+sys of every process of the run) and CPU/wall, and
each run's figures with the load before it. Other modes: ``--thread-profile`` (CPU per thread of an
in-process run), ``--scan`` (the merge's key pass alone; also the ``scan`` config). Run it from the
checkout with the venv's python, e.g. ``bench_twocore.py --make-halves --make-seam
--configs single,halves,merged big.pcap``; results: ``results/twocore-2026-12-07.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PY = sys.executable


@dataclass
class Run:
    wall: float
    user: float
    sys: float
    load: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


@dataclass
class Config:
    name: str
    commands: list[list[str]]
    then: list[list[str]] = field(default_factory=list)  # run after ``commands`` have all ended
    runs: list[Run] = field(default_factory=list)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_together(commands: list[list[str]]) -> Run:
    """Start every command at once; wall until the last ends; CPU of all of them (and their threads)."""
    before = load()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    user = system = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        user += usage.ru_utime
        system += usage.ru_stime
        if p.returncode != 0:
            err = p.stderr.read().decode() if p.stderr else ""
            raise SystemExit(f"{p.args!r} failed ({p.returncode}): {err[-2000:]}")
    return Run(time.perf_counter() - t0, user, system, before)


def run_config(c: Config) -> Run:
    first = run_together(c.commands)
    if not c.then:
        return first
    second = run_together(c.then)
    return Run(first.wall + second.wall, first.user + second.user, first.sys + second.sys, first.load)


def make_halves(path: Path) -> int:
    """Write ``path.a`` and ``path.b`` (pcap header + the records before / after the cut)."""
    from tlsdetect.readers.pcap.capture import MAX_PACKET, CaptureReader
    from tlsdetect.readers.pcap.record_cut import confirm, find_boundary

    fmt = CaptureReader(path).format
    if fmt.kind != "pcap":
        raise SystemExit(f"{path}: --make-halves needs a classic pcap")
    size = path.stat().st_size
    cut = find_boundary(str(path), size // 2, little=fmt.little_endian, nanosecond=fmt.nanosecond,
                        max_packet=MAX_PACKET)
    if cut is None or not confirm(str(path), cut, little=fmt.little_endian, max_packet=MAX_PACKET):
        raise SystemExit(f"{path}: no confirmed record boundary near the middle")
    with path.open("rb") as fh:
        header = fh.read(24)
        for suffix, lo, hi in ((".a", 24, cut), (".b", cut, size)):
            with open(str(path) + suffix, "wb") as out:
                out.write(header)
                fh.seek(lo)
                left = hi - lo
                while left:
                    chunk = fh.read(min(left, 1 << 24))
                    out.write(chunk)
                    left -= len(chunk)
    return cut


def fingerprint(path: str, out: str, *extra: str) -> list[str]:
    return [PY, "-m", "tlsdetect", "fingerprint", path, "-f", "jsonl", "-o", out, "--no-progress", *extra]


def thread_profile(path: Path, out: Path) -> dict[str, float]:
    """CPU seconds per thread of one in-process ``fingerprint -f jsonl`` run (sampled from /proc every 50 ms).

    On a quiet machine the wall time is at least the busiest thread's CPU, and a split can at best
    spread the total over two cores: the two bound what a second process can gain.
    """
    import threading

    from tlsdetect.cli import main as cli

    tick = os.sysconf("SC_CLK_TCK")
    seen: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        names = {}
        while not done.is_set():
            names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id is not None})
            for task in Path("/proc/self/task").iterdir():
                try:
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                tid = int(task.name)
                cpu = (int(fields[11]) + int(fields[12])) / tick
                name = names.get(tid) or (task / "comm").read_text().strip()
                seen[tid] = (name, cpu)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, name="profiler", daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        cli(["fingerprint", str(path), "-f", "jsonl", "-o", str(out), "--no-progress"], standalone_mode=False)
    finally:
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    by_name: dict[str, float] = {}
    for name, cpu in seen.values():
        key = name.rstrip("0123456789_") if name.startswith("tlsdetect-sink") else name
        by_name[key] = by_name.get(key, 0.0) + cpu
    by_name.pop("profiler", None)
    by_name["(wall)"] = wall
    return by_name


def _unordered_keys(d: Any) -> Any:
    """One 64-bit key per packet for its flow, the same for both directions (lower end first)."""
    from tlsdetect.readers.pcap.packets import flow_hash

    a = (d.src_hi, d.src_lo, d.sport)
    b = (d.dst_hi, d.dst_lo, d.dport)
    first = (a[0] < b[0]) | ((a[0] == b[0]) & ((a[1] < b[1]) | ((a[1] == b[1]) & (a[2] <= b[2]))))
    lo = [np.where(first, x, y) for x, y in zip(a, b, strict=True)]
    hi = [np.where(first, y, x) for x, y in zip(a, b, strict=True)]
    return flow_hash(lo[0], lo[1], hi[0], hi[1], lo[2], hi[2])


def _payload_keys(path: Path) -> Any:
    from tlsdetect.readers.pcap.capture import CaptureReader
    from tlsdetect.readers.pcap.packets import decode

    found = [np.zeros(0, dtype=np.uint64)]
    for batch in CaptureReader(path):
        d = decode(batch)
        found.append(np.unique(_unordered_keys(d)[d.valid & (d.payload_len > 0)]))
    return np.unique(np.concatenate(found))


def make_seam(path: Path) -> str:
    """What a split with a perfect merge would read, from ``FILE.a``/``FILE.b`` (``--make-halves``).

    The seam is the flows with payload on both sides of the cut. ``FILE.a2``/``FILE.b2`` are the
    halves without the seam's packets (what each part's engine would read if it could leave them
    out), ``FILE.seam`` the seam's packets of both halves in file order (read once, after both).
    Their rows together should be the single run's rows; the benchmark checks that.
    """
    from tlsdetect.readers.pcap.capture import CaptureReader
    from tlsdetect.readers.pcap.packets import decode

    halves = [Path(f"{path}.a"), Path(f"{path}.b")]
    seam = np.intersect1d(*[_payload_keys(h) for h in halves])
    with path.open("rb") as fh:
        header = fh.read(24)
    kept = {".a2": 0, ".b2": 0, ".seam": 0}
    with open(f"{path}.seam", "wb") as seam_out:
        seam_out.write(header)
        for half, suffix in zip(halves, (".a2", ".b2"), strict=True):
            with open(f"{path}{suffix}", "wb") as out:
                out.write(header)
                for batch in CaptureReader(half):
                    d = decode(batch)
                    inside = d.valid & np.isin(_unordered_keys(d), seam)
                    buf = batch.buf
                    for idx, dest, name in ((np.flatnonzero(~inside), out, suffix),
                                            (np.flatnonzero(inside), seam_out, ".seam")):
                        starts, ends = batch.data[idx] - 16, batch.data[idx] + batch.caplen[idx]
                        dest.write(b"".join(buf[s:e].tobytes() for s, e in zip(starts.tolist(), ends.tolist(),
                                                                                 strict=True)))
                        kept[name] += len(idx)
    return f"{len(seam):,} seam flows; packets: " + ", ".join(f"{k} {v:,}" for k, v in kept.items())


def same_rows(single: Path, parts: list[Path]) -> str:
    """Whether the parts' JSON lines are the single run's, as a multiset (``conn_id`` aside: it numbers per file)."""
    def rows(p: Path) -> list[str]:
        out = []
        with p.open() as fh:
            for line in fh:
                row = json.loads(line)
                row.pop("conn_id", None)
                out.append(json.dumps(row, sort_keys=True))
        return out

    want = sorted(rows(single))
    got = sorted(r for p in parts for r in rows(p))
    if want == got:
        return f"identical rows ({len(want):,})"
    missing = len(set(want) - set(got))
    extra = len(set(got) - set(want))
    return (f"DIFFERENT: single {len(want):,} rows, parts {len(got):,}; {missing:,} only in single, "
            f"{extra:,} only in parts")


def seam_keys(path: Path) -> int:
    """The first pass any merge needs: the flows (unordered address/port pairs) with payload in the file.

    A split must know which connections have packets on both sides of the cut to re-read them
    together; this is that pass over the whole file (each part would do its half), timed alone.
    """
    return len(_payload_keys(path))


def has_jobs() -> bool:
    text = subprocess.run([PY, "-m", "tlsdetect", "fingerprint", "--help"], check=False, capture_output=True,
                          text=True).stdout
    return "--jobs" in text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--make-halves", action="store_true", help="write FILE.a/FILE.b first (not timed)")
    ap.add_argument("--make-seam", action="store_true",
                    help="write FILE.a2/FILE.b2/FILE.seam from the halves first (not timed)")
    ap.add_argument("--configs", default="single,halves,jobs2")
    ap.add_argument("--thread-profile", action="store_true",
                    help="instead: CPU per thread of one in-process run per file (best of --rounds by wall)")
    ap.add_argument("--scan", action="store_true", help="instead: run the merge's key pass over the files")
    args = ap.parse_args()
    if args.scan:
        for f in args.files:
            print(f"{f}: {seam_keys(f):,} flows with payload")
        return
    if args.thread_profile:
        for f in args.files:
            runs = []
            for _ in range(args.rounds):
                before = load()
                runs.append((thread_profile(f, args.out_dir / "tc-profile.jsonl"), before))
            prof, before = min(runs, key=lambda r: r[0]["(wall)"])
            total = sum(v for k, v in prof.items() if k != "(wall)")
            print(f"\n### {f.name}: CPU per thread (best of {args.rounds} by wall; load before it {before})\n")
            print("| thread | CPU s | share |")
            print("|---|---:|---:|")
            for name, cpu in sorted(prof.items(), key=lambda kv: -kv[1]):
                if name != "(wall)" and cpu > 0.005:
                    print(f"| {name} | {cpu:.2f} | {cpu / total:.0%} |")
            print(f"| all threads | {total:.2f} | 100% |")
            print(f"| wall | {prof['(wall)']:.2f} | |")
            every = ", ".join(f"{r['(wall)']:.2f} s ({b})" for r, b in runs)
            print(f"\nEvery run's wall (load before): {every}")
        return
    wanted = args.configs.split(",")
    if "jobs2" in wanted and not has_jobs():
        wanted.remove("jobs2")
    out = args.out_dir
    for f in args.files:
        if args.make_halves:
            print(f"{f}: cut at byte {make_halves(f):,}", file=sys.stderr)
        if args.make_seam:
            print(f"{f}: {make_seam(f)}", file=sys.stderr)
        configs = {
            "single": Config("single process", [fingerprint(str(f), str(out / "tc-single.jsonl"))]),
            "halves": Config("two halves at once (upper bound, no merge)",
                             [fingerprint(f"{f}.a", str(out / "tc-a.jsonl")),
                              fingerprint(f"{f}.b", str(out / "tc-b.jsonl"))]),
            "jobs2": Config("--jobs 2", [fingerprint(str(f), str(out / "tc-jobs2.jsonl"), "--jobs", "2")]),
            "merged": Config("halves without the seam at once, then the seam (a perfect merge)",
                             [fingerprint(f"{f}.a2", str(out / "tc-a2.jsonl")),
                              fingerprint(f"{f}.b2", str(out / "tc-b2.jsonl"))],
                             [fingerprint(f"{f}.seam", str(out / "tc-seam.jsonl"))]),
            "scan": Config("a merge's key pass alone (whole file, one process)",
                           [[PY, __file__, "--scan", str(f)]]),
        }
        chosen = [configs[w] for w in wanted]
        for _ in range(args.rounds):
            for c in chosen:
                c.runs.append(run_config(c))
                r = c.runs[-1]
                print(f"  {f.name} {c.name}: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU (load {r.load})", file=sys.stderr)
        base = min(r.wall for r in chosen[0].runs)
        print(f"\n### {f.name} ({f.stat().st_size / 1e6:,.0f} MB)\n")
        print("| config | best wall s | vs single | CPU s of that run | CPU/wall "
              "| every run: wall / CPU (load before) |")
        print("|---|---:|---:|---:|---:|---|")
        for c in chosen:
            best = min(c.runs, key=lambda r: r.wall)
            every = ", ".join(f"{r.wall:.2f} / {r.cpu:.2f} ({r.load})" for r in c.runs)
            print(f"| {c.name} | {best.wall:.2f} | {base / best.wall:.2f}x | {best.cpu:.2f} | "
                  f"{best.cpu / best.wall:.2f} | {every} |")
        if "single" in wanted and "merged" in wanted:
            parts = [out / "tc-a2.jsonl", out / "tc-b2.jsonl", out / "tc-seam.jsonl"]
            print(f"\nmerged vs single: {same_rows(out / 'tc-single.jsonl', parts)}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
