#!/usr/bin/env python3
"""Time ``tlsdetect fingerprint`` against its peers on one large pcap, in one run.

Why one run: throughput numbers are only comparable when every tool reads the same file
on the same machine with the same (warm) page cache, minutes apart. So this script
builds (or reuses) the file, reads it once to warm the cache, then runs each tool as a
separate subprocess and records its wall time and peak RSS (``os.wait4``: the largest
RSS of the child or any of its waited-for descendants, like ``/usr/bin/time -v``).

Tools: (a) ``python -m tlsdetect fingerprint FILE --format parquet -o OUT``,
(b) ``tshark -r FILE -Y tls.handshake.type==1 -T fields -e tls.handshake.ja3``,
(c) ``peers/dpkt_ja3.py`` (dpkt, no TCP reassembly), (d) ``peers/bare_scan.py``
(numpy memmap scan for ClientHello record starts: the "bare read" lower bound).

Every tool's output is counted and, where it yields JA3 values, compared with the
multiset the generator wrote into ``FILE.json`` -- a wrong file or a wrong tool shows up
as a mismatch instead of as a fast time.

Results are printed and written as Markdown to ``benchmarks/results/pcap-<date>.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import numpy
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PEERS = BENCH_DIR / "peers"
GENERATOR = BENCH_DIR / "make_big_pcap.py"
TOOLS = ("tlsdetect", "tshark", "dpkt", "bare")
TARGET_SPEEDUP_VS_TSHARK = 30.0
TARGET_SLOWDOWN_VS_BARE = 3.0
TARGET_PEAK_RSS_MB = 600.0
QUICK_CONNECTIONS, QUICK_TARGET_MB = 2_600, 50.0  # ~50 MB with ~10% hello packets
MD5_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Result:
    """One tool's measurement; ``status`` is 'ok', 'skipped', 'unavailable' or 'failed'."""

    tool: str
    command: list[str]
    status: str = "ok"
    seconds: float | None = None
    peak_rss_mb: float | None = None
    runs: list[float] = field(default_factory=list)
    hellos: int | None = None
    check: str = ""
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- measuring


def run_measured(cmd: list[str], stdout_path: Path,
                 env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Run cmd once; return (wall seconds, peak RSS MiB, exit code, stderr tail)."""
    with open(stdout_path, "wb") as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO_ROOT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    return seconds, usage.ru_maxrss / 1024, proc.returncode, " | ".join(tail)


def measure(result: Result, stdout_path: Path, env: dict[str, str] | None = None) -> bool:
    """One run's wall time and peak RSS into ``result`` (rounds are merged by :func:`_merge`);
    False if the tool failed."""
    seconds, rss, rc, tail = run_measured(result.command, stdout_path, env)
    if rc != 0:
        result.status = "failed"
        result.notes.append(f"exit code {rc}: {tail}")
        return False
    result.runs.append(seconds)
    result.seconds, result.peak_rss_mb = seconds, rss
    return True


def _merge(best: Result | None, new: Result) -> Result:
    """One tool's results over the rounds: the best time, the largest RSS, every run's time."""
    if best is None or new.status != "ok":
        return new
    new.runs = best.runs + new.runs
    new.seconds = min(best.seconds or float("inf"), new.seconds or float("inf"))
    new.peak_rss_mb = max(best.peak_rss_mb or 0.0, new.peak_rss_mb or 0.0)
    return new


def warm_cache(path: Path) -> float:
    """Read the whole file once so every tool starts with the same warm page cache."""
    buf = bytearray(16 << 20)
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass
    return time.perf_counter() - started


# --------------------------------------------------------------------------- checks


def compare_ja3(found: Counter[str], expected: dict[str, int] | None) -> str:
    """Describe how a tool's JA3 multiset compares with the generator's manifest."""
    if expected is None:
        return "no manifest"
    want = Counter(expected)
    if found == want:
        return "JA3 multiset = manifest"
    missing, extra = sum((want - found).values()), sum((found - want).values())
    return f"JA3 differs from manifest: {missing} missing, {extra} extra"


def md5_lines(path: Path) -> Counter[str]:
    """Counter of the first field of every non-empty output line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return Counter(line.split()[0] for line in fh if line.strip())


def parquet_ja3(path: Path) -> tuple[int, Counter[str] | None, str]:
    """Rows of tlsdetect's parquet output and its JA3 md5 multiset, if it has one."""
    schema = pq.read_schema(path)
    column = next((c for c in ("ja3", "ja3_md5", "ja3_hash") if c in schema.names), None)
    rows = pq.read_metadata(path).num_rows
    if column is None:
        return rows, None, f"no ja3 column (columns: {', '.join(schema.names[:12])})"
    values = [v for v in pq.read_table(path, columns=[column]).column(0).to_pylist() if v]
    md5s = Counter(v if MD5_RE.match(v) else hashlib.md5(v.encode()).hexdigest() for v in values)
    return len(values), md5s, f"{rows} rows, {len(values)} with {column}"


# --------------------------------------------------------------------------- tools


def tlsdetect_env() -> dict[str, str]:
    """Environment that finds the package in this checkout even if not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def tlsdetect_unavailable(env: dict[str, str]) -> str | None:
    """Reason why ``python -m tlsdetect fingerprint`` cannot run yet, or None."""
    probe = subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "--help"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return None
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {probe.returncode}"


def run_tlsdetect(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    out = work / "tlsdetect.parquet"
    res = Result("tlsdetect fingerprint", [sys.executable, "-m", "tlsdetect", "fingerprint",
                                           str(pcap), "--format", "parquet", "-o", str(out)])
    env = tlsdetect_env()
    reason = tlsdetect_unavailable(env)
    if reason:
        res.status = "unavailable"
        res.notes.append(f"not runnable yet: {reason}")
        return res
    if measure(res, work / "tlsdetect.stdout", env):
        try:
            res.hellos, md5s, info = parquet_ja3(out)
            expected = manifest and manifest["expected_ja3_md5"]
            res.check = compare_ja3(md5s, expected) if md5s is not None else info
        except Exception as exc:  # report, never abort the other measurements
            res.check = f"could not read output: {exc}"
    return res


def run_tshark(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    res = Result("tshark", ["tshark", "-r", str(pcap), "-Y", "tls.handshake.type==1",
                            "-T", "fields", "-e", "tls.handshake.ja3"])
    if shutil.which("tshark") is None:
        res.status, res.notes = "unavailable", ["tshark not on PATH"]
        return res
    out = work / "tshark.txt"
    if measure(res, out):
        found = md5_lines(out)
        res.hellos = sum(found.values())
        res.check = compare_ja3(found, manifest and manifest["expected_ja3_md5"])
        res.notes.append("stdout went to a file, not /dev/null, to count hellos (~33 bytes/hello)")
    return res


def run_dpkt(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    res = Result("dpkt JA3 script", [sys.executable, str(PEERS / "dpkt_ja3.py"), str(pcap)])
    out = work / "dpkt.txt"
    if measure(res, out):
        found = md5_lines(out)
        res.hellos = sum(found.values())
        res.check = compare_ja3(found, manifest and manifest["expected_ja3_md5_single_segment"])
        res.notes.append("no TCP reassembly: misses split ClientHellos by design "
                         "(checked against the single-segment hellos of the manifest)")
    return res


def run_bare(pcap: Path, manifest: dict[str, Any] | None, work: Path) -> Result:
    res = Result("bare numpy scan", [sys.executable, str(PEERS / "bare_scan.py"), str(pcap)])
    out = work / "bare.txt"
    if measure(res, out):
        res.hellos = int(out.read_text().strip() or 0)
        res.check = "record-start pattern count (approximate by design)"
    return res


RUNNERS = {"tlsdetect": run_tlsdetect, "tshark": run_tshark, "dpkt": run_dpkt, "bare": run_bare}


# --------------------------------------------------------------------------- file


def cache_dir(arg: str | None) -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    base = Path(arg) if arg else xdg / "tlsdetect-bench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def build_key(args: argparse.Namespace, connections: int, target_mb: float) -> str:
    """Cache key: generator code, sources and parameters (so stale files are never reused)."""
    h = hashlib.sha256(GENERATOR.read_bytes())
    for src in args.sources or []:
        p = Path(src)
        h.update(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    h.update(f"{connections}:{target_mb}:{args.seed}".encode())
    return h.hexdigest()[:10]


def ensure_pcap(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The pcap to measure: the argument, or a cached build; returns (path, build seconds)."""
    if args.pcap:
        return Path(args.pcap), None
    connections: int = QUICK_CONNECTIONS if args.quick else args.connections
    target_mb: float = QUICK_TARGET_MB if args.quick else args.target_mb
    key = build_key(args, connections, target_mb)
    path = cache_dir(args.cache_dir) / f"synthetic-c{connections}-mb{target_mb:g}-{key}.pcap"
    if path.exists() and Path(f"{path}.json").exists():
        print(f"reusing {path}")
        return path, None
    for stale in path.parent.glob(f"synthetic-c{connections}-mb{target_mb:g}-*.pcap*"):
        stale.unlink()  # same parameters, older generator or sources: never reused
    cmd = [sys.executable, str(GENERATOR), *(args.sources or []), "-o", str(path),
           "--connections", str(connections), "--target-mb", str(target_mb), "--seed", str(args.seed)]
    print("building:", " ".join(cmd))
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return path, time.perf_counter() - started


def load_manifest(pcap: Path) -> dict[str, Any] | None:
    side = Path(f"{pcap}.json")
    return json.loads(side.read_text()) if side.exists() else None


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown CPU")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.platform()}"


def versions() -> str:
    tshark = "absent"
    if shutil.which("tshark"):
        first = subprocess.run(["tshark", "--version"], capture_output=True, text=True,
                               check=False).stdout.splitlines()
        tshark = first[0] if first else "unknown"
    return f"Python {platform.python_version()}, numpy {numpy.__version__}, dpkt {dpkt.__version__}, {tshark}"


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + suffix


def table(results: list[Result], connections: int | None, size_bytes: int) -> str:
    by = {r.tool: r for r in results}
    t_tshark = by["tshark"].seconds if "tshark" in by else None
    t_bare = by["bare numpy scan"].seconds if "bare numpy scan" in by else None
    lines = ["| tool | seconds | connections/s | MB/s | peak RSS (MiB) | speed-up vs tshark "
             "| time / bare scan | hellos found | check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.seconds is None:
            lines.append(f"| {r.tool} | {r.status} | | | | | | | see notes |")
            continue
        rate = connections / r.seconds if connections else None
        speedup = t_tshark / r.seconds if t_tshark else None
        vs_bare = r.seconds / t_bare if t_bare else None
        mb_s = size_bytes / 1e6 / r.seconds
        lines.append(f"| {r.tool} | {r.seconds:.2f} | {fmt(rate, ',.0f')} | {mb_s:,.0f} | "
                     f"{r.peak_rss_mb:.0f} | {fmt(speedup, '.1f', 'x')} | {fmt(vs_bare, '.2f', 'x')} | "
                     f"{fmt(r.hellos, ',')} | {r.check} |")
    return "\n".join(lines)


def targets(results: list[Result], size_bytes: int) -> list[str]:
    """The issue's targets for tlsdetect, evaluated on this run."""
    by = {r.tool: r for r in results}
    tool, tshark, bare = by.get("tlsdetect fingerprint"), by.get("tshark"), by.get("bare numpy scan")
    out = []
    if tshark and tshark.seconds and bare and bare.seconds:
        out.append(f"- for scale: the bare scan itself is {tshark.seconds / bare.seconds:.1f}x faster "
                   f"than tshark on this file")
    if not tool or tool.seconds is None:
        return [*out, "- tlsdetect was not measured in this run: targets not evaluated."]
    if tshark and tshark.seconds:
        x = tshark.seconds / tool.seconds
        out.append(f"- >= {TARGET_SPEEDUP_VS_TSHARK:g}x faster than tshark: {x:.1f}x -> "
                   f"{'PASS' if x >= TARGET_SPEEDUP_VS_TSHARK else 'FAIL'}")
    if bare and bare.seconds:
        x = tool.seconds / bare.seconds
        out.append(f"- within {TARGET_SLOWDOWN_VS_BARE:g}x of the bare scan: {x:.2f}x -> "
                   f"{'PASS' if x <= TARGET_SLOWDOWN_VS_BARE else 'FAIL'}")
    rss = tool.peak_rss_mb or 0.0
    verdict = "PASS" if rss <= TARGET_PEAK_RSS_MB else "FAIL"
    scope = "" if size_bytes >= 5e9 else f" (target is for a 5 GB file; this is {size_bytes / 1e9:.2f} GB)"
    out.append(f"- peak RSS <= {TARGET_PEAK_RSS_MB:g} MB: {rss:.0f} MiB -> {verdict}{scope}")
    return out


def report(pcap: Path, manifest: dict[str, Any] | None, *, build_s: float | None, warm_s: float,
           results: list[Result], load: tuple[float, float]) -> str:
    size = pcap.stat().st_size
    m = manifest or {}
    conns = m.get("connections")
    file_line = f"`{pcap.name}`: {size:,} bytes ({size / 1e6:,.0f} MB)"
    if m:
        file_line += (f", {m['connections']:,} connections, {m['packets']:,} packets, "
                      f"{m['hello_packets']:,} hello-carrying packets ({m['hello_fraction']:.1%}: "
                      f"{m['client_hello_packets']:,} ClientHello + "
                      f"{m['server_hello_packets']:,} ServerHello), "
                      f"{m['split_client_hellos']:,} ClientHellos split over TCP segments, "
                      f"built from {', '.join(s['name'] for s in m['sources'])} (seed {m['seed']})")
    built = (f"built in this run in {build_s:.1f} s" if build_s is not None
             else f"reused (build took {m['build_seconds']} s)" if m.get("build_seconds") else "given")
    parts = [
        f"# pcap benchmark, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", "",
        f"- machine: {machine()}", f"- versions: {versions()}",
        f"- file: {file_line}; {built}",
        f"- page cache: warm -- the file was read once before the tools ran "
        f"({warm_s:.2f} s, {size / 1e6 / warm_s:,.0f} MB/s); every tool ran in the same run, "
        "in rounds of one run each (round robin)",
        f"- 1-minute load average before / after the tools: {load[0]:.2f} / {load[1]:.2f} on "
        f"{os.cpu_count()} cores (anything else running on the machine skews the times)",
        "- seconds: wall time of the subprocess (best of the rounds; every run's time is listed "
        "below the table); peak RSS: ru_maxrss from wait4 (largest single process of the tool's tree)", "",
        table(results, conns, size), "",
        *(f"- {r.tool}, every run (s): {', '.join(f'{t:.2f}' for t in r.runs)}" for r in results if r.runs), "",
        "Targets (issue):", *targets(results, size), "",
        "Commands and notes:",
    ]
    for r in results:
        parts.append(f"- {r.tool}: `{' '.join(r.command)}`" + "".join(f"; {n}" for n in r.notes))
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


def parse_skip(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in TOOLS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown tool(s) {bad}; choose from {TOOLS}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pcap", nargs="?", help="pcap to measure (default: build one, cached)")
    p.add_argument("--sources", nargs="+", help="source captures for the build (default: pcaps/)")
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--target-mb", type=float, default=500.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="small ~50 MB file for a smoke run")
    p.add_argument("--skip", type=parse_skip, action="append", default=[],
                   help=f"tools to skip, comma separated or repeated: {','.join(TOOLS)}")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds; every tool runs once per round (round robin), the best time is kept")
    p.add_argument("--cache-dir", help="where built pcaps are kept (default ~/.cache/tlsdetect-bench)")
    p.add_argument("--results", help="Markdown output (default benchmarks/results/pcap-<date>[-quick].md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {name for group in args.skip for name in group}
    pcap, build_s = ensure_pcap(args)
    manifest = load_manifest(pcap)
    warm_s = warm_cache(pcap)
    print(f"warm-up read of {pcap} ({pcap.stat().st_size / 1e6:,.0f} MB): {warm_s:.2f} s; page cache is warm")
    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tlsdetect-bench-") as tmp:
        # Round robin, one run per tool per round: a slow phase of the machine (a noisy host
        # moves times by 20-40% over minutes) hits every tool alike, so the ratios hold.
        best: dict[str, Result] = {}
        for round_no in range(1, args.repeat + 1):
            for name in TOOLS:
                if name in skip or (name in best and best[name].status != "ok"):
                    continue
                print(f"round {round_no}/{args.repeat}: running {name} ...", flush=True)
                r = RUNNERS[name](pcap, manifest, Path(tmp))
                print(f"  {r.status}: {fmt(r.seconds, '.2f')} s, {fmt(r.peak_rss_mb, '.0f')} MiB, "
                      f"hellos {fmt(r.hellos, ',')} {r.check} {'; '.join(r.notes)}", flush=True)
                best[name] = _merge(best.get(name), r)
        results = list(best.values())
    text = report(pcap, manifest, build_s=build_s, warm_s=warm_s, results=results,
                  load=(load_before, os.getloadavg()[0]))
    suffix = "-quick" if args.quick else ""
    out = Path(args.results) if args.results else BENCH_DIR / "results" / f"pcap-{dt.date.today()}{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("\n" + text + f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
