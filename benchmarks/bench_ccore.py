#!/usr/bin/env python3
"""The compiled capture core against the numpy one and tshark, on one file, in one run.

Why a separate script: issue 19 asks whether the C core pays end to end, so the same
``tlsdetect fingerprint`` runs with the C core and with the numpy core
(``TLSDETECT_NO_CCORE=1``), each in ``-f jsonl`` (the headline: what users pipe into a SIEM)
and ``-f parquet``, beside tshark's JA3 field extraction. Every tool runs once per round,
round robin (a slow phase of the shared host hits all alike), best of N rounds; the 1-minute
load average before each run is written beside its time; ratios compare only within this run.
CPU seconds (user + system of the tool's process tree, from ``wait4``) are given beside wall time:
on a shared 2-core host under load, wall time mostly says how busy the neighbours were.
Measuring and checking reuse ``bench_pcap.py`` (warm page cache, peak RSS by ``wait4``, JA3
multisets checked against the generator's manifest).

    python benchmarks/bench_ccore.py FILE.pcap [--repeat 3] [--skip tshark] [--results PATH]
        [--formats jsonl,parquet] [--cores C,numpy] [--base TREE] [--bare]

``--base TREE`` adds ``tlsdetect -f jsonl`` from another checkout (the code before a change, its C core
built in place) as one more tool of the same rounds; ``--bare`` adds ``peers/bare_scan.py`` (the numpy
memmap scan for ClientHello records: the floor issue 19 measures against).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pcap import (
    PEERS,
    REPO_ROOT,
    Result,
    _merge,
    compare_ja3,
    load_manifest,
    machine,
    md5_lines,
    parquet_ja3,
    tlsdetect_env,
    tree_label,
    warm_cache,
)

CORES = {"C": {}, "numpy": {"TLSDETECT_NO_CCORE": "1"}}
FORMATS = ("jsonl", "parquet")


#: tool -> CPU seconds (user + system) of every run, in run order
CPU: dict[str, list[float]] = {}


def measure(result: Result, stdout_path: Path, env: dict[str, str] | None = None) -> bool:
    """``bench_pcap.measure`` plus the run's CPU seconds (``wait4``'s rusage of the tool's tree)."""
    load = os.getloadavg()[0]
    with open(stdout_path, "wb") as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(result.command, stdout=out, stderr=err, cwd=REPO_ROOT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = " | ".join(err.read().decode(errors="replace").strip().splitlines()[-3:])
    if os.waitstatus_to_exitcode(status) != 0:
        result.status = "failed"
        result.notes.append(f"exit code {os.waitstatus_to_exitcode(status)}: {tail}")
        return False
    result.runs.append(seconds)
    result.loads.append(load)
    result.seconds, result.peak_rss_mb = seconds, usage.ru_maxrss / 1024
    CPU.setdefault(result.tool, []).append(usage.ru_utime + usage.ru_stime)
    return True


def run_tshark(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    res = Result("tshark", ["tshark", "-r", str(pcap), "-Y", "tls.handshake.type==1",
                            "-T", "fields", "-e", "tls.handshake.ja3"])
    out = work / "tshark.txt"
    if measure(res, out):
        found = md5_lines(out)
        res.hellos = sum(found.values())
        res.check = compare_ja3(found, manifest and manifest["expected_ja3_md5"])
    return res


def jsonl_ja3(path: Path) -> tuple[int, Counter[str]]:
    found: Counter[str] = Counter()
    rows = 0
    with path.open() as fh:
        for line in fh:
            rows += 1
            ja3 = json.loads(line).get("ja3")
            if ja3:
                found[ja3] += 1
    return rows, found


def run_core(pcap: Path, manifest: dict[str, Any] | None, work: Path, core: str, fmt: str) -> Result:
    out = work / f"out-{core}.{fmt}"
    res = Result(f"tlsdetect -f {fmt}, {core} core",
                 [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "-f", fmt, "-o", str(out),
                  "--no-progress"])
    if measure(res, work / "tlsdetect.stdout", core_env(core)):
        expected = manifest and manifest["expected_ja3_md5"]
        if fmt == "parquet":
            res.hellos, md5s, info = parquet_ja3(out)
            res.check = compare_ja3(md5s, expected) if md5s is not None else info
        else:
            res.hellos, md5s = jsonl_ja3(out)
            res.check = compare_ja3(md5s, expected)
        out.unlink()
    return res


def run_base(pcap: Path, manifest: dict[str, Any] | None, work: Path, tree: Path) -> Result:
    """``tlsdetect -f jsonl`` of the checkout ``tree`` (C core as built there), checked like the others."""
    out = work / "out-base.jsonl"
    res = Result(f"tlsdetect -f jsonl, base {tree_label(tree)}",
                 [sys.executable, "-m", "tlsdetect", "fingerprint", str(pcap), "-f", "jsonl", "-o", str(out),
                  "--no-progress"])
    env = tlsdetect_env(tree)
    env.pop("TLSDETECT_NO_CCORE", None)
    env["PYTHONPATH"] = str(tree)  # this checkout only, not also the one running the benchmark
    if measure(res, work / "base.stdout", env):
        res.hellos, md5s = jsonl_ja3(out)
        res.check = compare_ja3(md5s, manifest and manifest["expected_ja3_md5"])
        out.unlink()
    return res


def run_bare(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    """The bare numpy scan (``peers/bare_scan.py``): ClientHello record starts, no fingerprints."""
    res = Result("bare numpy scan", [sys.executable, str(PEERS / "bare_scan.py"), str(pcap)])
    if measure(res, work / "bare.txt"):
        res.hellos = int((work / "bare.txt").read_text().strip() or 0)
        res.check = "floor (no fingerprints)"
    return res


def core_env(core: str) -> dict[str, str]:
    env = tlsdetect_env()
    env.pop("TLSDETECT_NO_CCORE", None)
    return env | CORES[core]


def core_in_use(core: str) -> str:
    """What ``ccore.status()`` says under that core's environment: the run used what it names."""
    return subprocess.run([sys.executable, "-c", "from tlsdetect.readers.pcap import ccore; print(ccore.status())"],
                          env=core_env(core), cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()


def report(pcap: Path, results: list[Result], warm_s: float, repeat: int) -> str:
    by = {r.tool: r for r in results}
    tshark = by.get("tshark")
    lines = [
        f"# The compiled capture core: C vs numpy vs tshark, {dt.date.today().isoformat()}", "",
        f"- file: `{pcap}` ({pcap.stat().st_size / 1e6:,.0f} MB)",
        f"- machine: {machine()}",
        f"- page cache warm (read once in {warm_s:.1f} s); {repeat} rounds, tools round robin, best kept",
        f"- cores: C = `{core_in_use('C')}`; numpy = `{core_in_use('numpy')}`", "",
        "| tool | best wall s | vs tshark (wall) | best CPU s | vs tshark (CPU) | every run: wall s / CPU s "
        "(load before it) | peak RSS MiB | hellos | check |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    cpu_best = {t: min(v) for t, v in CPU.items()}
    for r in results:
        cpus = CPU.get(r.tool, [])
        runs = ", ".join(f"{s:.2f} / {c:.2f} ({ld:.2f})" for s, c, ld in zip(r.runs, cpus, r.loads, strict=True))
        ratio = (f"{tshark.seconds / r.seconds:.1f}x" if tshark and tshark.seconds and r.seconds else "")
        c_ratio = (f"{cpu_best['tshark'] / cpu_best[r.tool]:.1f}x" if "tshark" in cpu_best and r.tool in cpu_best
                   else "")
        cpu = cpu_best.get(r.tool, float("nan"))
        hellos = "" if r.hellos is None else r.hellos
        lines.append(f"| {r.tool} | {r.seconds or float('nan'):.2f} | {ratio} | {cpu:.2f} | {c_ratio} | {runs}"
                     f" | {r.peak_rss_mb or 0:.0f} | {hellos}"
                     f" | {r.check or r.status} |")
    lines.append("")
    bare = by.get("bare numpy scan")
    for r in results:
        if bare and bare.seconds and r.seconds and r is not bare and r.tool != "tshark":
            lines.append(f"- {r.tool}: **{r.seconds / bare.seconds:.2f}x** the bare numpy scan's wall time, "
                         f"{cpu_best[r.tool] / cpu_best[bare.tool]:.2f}x its CPU")
    for fmt in FORMATS:
        ct, nt = f"tlsdetect -f {fmt}, C core", f"tlsdetect -f {fmt}, numpy core"
        c, n = by.get(ct), by.get(nt)
        if c and n and c.seconds and n.seconds:
            lines.append(f"- `-f {fmt}`: numpy core / C core = **{n.seconds / c.seconds:.2f}x** wall, "
                         f"**{cpu_best[nt] / cpu_best[ct]:.2f}x** CPU (best of each)")
    lines.append("")
    return "\n".join(lines)


def byte_compile(tree: Path) -> None:
    """Write the ``__pycache__`` of a tree's package before its runs: with ``PYTHONDONTWRITEBYTECODE``
    set (as in some shells) a fresh checkout compiles every module from source in every run (~0.4 s
    of CPU per run, which an installed tlsdetect does not pay)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "tlsdetect")], check=True,
                   stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pcap", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip", default="", help="comma separated: tshark")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma separated: jsonl,parquet")
    p.add_argument("--cores", default=",".join(CORES), help="comma separated: C,numpy")
    p.add_argument("--base", type=Path, help="a checkout of the code before: its -f jsonl joins the rounds")
    p.add_argument("--bare", action="store_true", help="add the bare numpy scan (peers/bare_scan.py)")
    p.add_argument("--results", type=Path,
                   default=REPO_ROOT / "benchmarks" / "results" / f"ccore-{dt.date.today().isoformat()}.md")
    args = p.parse_args(argv)
    manifest = load_manifest(args.pcap)
    warm_s = warm_cache(args.pcap)
    for tree in (REPO_ROOT, *([args.base] if args.base else [])):
        byte_compile(tree)
    best: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ccore-") as tmp:
        work = Path(tmp)
        for rnd in range(args.repeat):
            runs = [lambda c=c, f=f: run_core(args.pcap, manifest, work, c, f)
                    for f in args.formats.split(",") for c in args.cores.split(",")]
            if args.base:
                runs.append(lambda: run_base(args.pcap, manifest, work, args.base))
            if args.bare:
                runs.append(lambda: run_bare(args.pcap, manifest, work))
            if "tshark" not in args.skip:
                runs.append(lambda: run_tshark(args.pcap, manifest, work))
            for run in runs:
                r = run()
                best[r.tool] = _merge(best.get(r.tool), r)
                print(f"round {rnd + 1}: {r.tool}: {r.seconds} s, CPU {CPU.get(r.tool, [0])[-1]:.2f} s "
                      f"(load {os.getloadavg()[0]:.2f}) {r.check}",
                      file=sys.stderr, flush=True)
    text = report(args.pcap, list(best.values()), warm_s, args.repeat)
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
