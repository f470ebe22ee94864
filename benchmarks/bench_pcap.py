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

Two trees, several capture shapes (``--compare OLD_CHECKOUT --shapes complete,hellos-only,...``):
the same tlsdetect command also runs from another checkout (``PYTHONPATH``), in the same rounds,
on each shape, and the report gives the new/old time ratio per shape. Shapes: ``complete`` (the
generated file), ``hellos-only`` (derived from it: every flow direction cut at its first
ChangeCipherSpec or application-data packet, as an aborted handshake or a capture that stops
after the hellos shows), ``interleave-N`` (generated with ``--interleave N``: handshakes spread
over more of the file, so more of them straddle the engine's windows).
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
import statistics
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
    loads: list[float] = field(default_factory=list)  # 1-minute load average before each run
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
    load = os.getloadavg()[0]
    seconds, rss, rc, tail = run_measured(result.command, stdout_path, env)
    if rc != 0:
        result.status = "failed"
        result.notes.append(f"exit code {rc}: {tail}")
        return False
    result.runs.append(seconds)
    result.loads.append(load)
    result.seconds, result.peak_rss_mb = seconds, rss
    return True


def _merge(best: Result | None, new: Result) -> Result:
    """One tool's results over the rounds: the best time, the largest RSS, every run's time."""
    if best is None or new.status != "ok":
        return new
    new.runs = best.runs + new.runs
    new.loads = best.loads + new.loads
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


def tlsdetect_env(tree: Path | None = None) -> dict[str, str]:
    """Environment that finds the package in this checkout (or ``tree``) even if not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree or REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def tree_label(tree: Path) -> str:
    """Short commit of a checkout (its path when git cannot say)."""
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or str(tree)


def tlsdetect_unavailable(env: dict[str, str]) -> str | None:
    """Reason why ``python -m tlsdetect fingerprint`` cannot run yet, or None."""
    probe = subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "--help"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return None
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {probe.returncode}"


def run_tlsdetect(pcap: Path, manifest: dict[str, Any] | None, work: Path, tree: Path | None = None) -> Result:
    """``tlsdetect fingerprint`` from this checkout, or from ``tree`` (another checkout)."""
    out = work / "tlsdetect.parquet"
    name = "tlsdetect fingerprint" if tree is None else f"tlsdetect @{tree_label(tree)}"
    res = Result(name, [sys.executable, "-m", "tlsdetect", "fingerprint",
                        str(pcap), "--format", "parquet", "-o", str(out)])
    env = tlsdetect_env(tree)
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


def build_key(args: argparse.Namespace, connections: int, target_mb: float, interleave: int = 16) -> str:
    """Cache key: generator code, sources and parameters (so stale files are never reused)."""
    h = hashlib.sha256(GENERATOR.read_bytes())
    for src in args.sources or []:
        p = Path(src)
        h.update(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    h.update(f"{connections}:{target_mb}:{args.seed}".encode())
    if interleave != 16:  # the generator's default: keys of files built before this option hold
        h.update(f":i{interleave}".encode())
    return h.hexdigest()[:10]


SHAPES = ("complete", "hellos-only", "interleave-N")


def parse_shapes(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in SHAPES[:2] and not re.fullmatch(r"interleave-[1-9][0-9]*", n)]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown shape(s) {bad}; choose from {SHAPES}")
    return names


def ensure_shape(args: argparse.Namespace, shape: str) -> tuple[Path, float | None]:
    """The pcap of one shape (built or derived once, then cached); (path, build seconds)."""
    if shape.startswith("interleave-"):
        return ensure_pcap(args, int(shape.split("-")[1]))
    base, build_s = ensure_pcap(args)
    if shape == "complete":
        return base, build_s
    path = base.with_name(f"{base.stem}-hellos-only.pcap")
    if not path.exists():
        started = time.perf_counter()
        # In a child process: the parent forks every measured tool, and a child's peak RSS
        # starts at the parent's RSS (this reads the whole file into memory).
        done = subprocess.run([sys.executable, __file__, "--derive-hellos-only", str(base), str(path)],
                              capture_output=True, text=True, check=True)
        kept, total = (int(v) for v in done.stdout.split())
        print(f"derived {path}: kept {kept:,} of {total:,} packets")
        manifest = load_manifest(base)
        if manifest:  # same hellos, so the same JA3 multiset; fewer packets and bytes
            manifest.update(file=path.name, packets=kept, bytes=path.stat().st_size, derived_from=base.name,
                            hello_fraction=manifest["hello_packets"] / kept,
                            client_hello_fraction=manifest["client_hello_packets"] / kept)
            Path(f"{path}.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return path, time.perf_counter() - started
    return path, None


def hellos_only(src: Path, dst: Path) -> tuple[int, int]:
    """Copy a classic pcap (Ethernet, IPv4, TCP) without, per flow direction, every payload
    packet from its first one that starts with a ChangeCipherSpec (20) or application-data (23)
    record header (type, 0x03, minor <= 4) on: the hellos and clear flights stay, the connection
    then falls silent. (A hello's continuation segment that happens to start with such 3 bytes
    is cut too: about one in 10,000.)"""
    raw = numpy.fromfile(src, dtype=numpy.uint8)
    view = memoryview(raw)
    offsets, pos = [], 24
    while pos + 16 <= len(raw):
        offsets.append(pos)
        pos += 16 + int.from_bytes(view[pos + 8 : pos + 12], "little")
    off = numpy.array(offsets, dtype=numpy.int64)
    end = numpy.minimum(off + 16 + raw[off[:, None] + 8 + numpy.arange(4)].astype(numpy.int64)
                        @ (1 << (8 * numpy.arange(4))), len(raw))
    ip = off + 16 + 14
    tcp = ip + (raw[ip] & 0xF).astype(numpy.int64) * 4
    pay = tcp + (raw[numpy.minimum(tcp + 12, len(raw) - 1)] >> 4).astype(numpy.int64) * 4
    has = end > pay
    weights = numpy.uint64(1) << (numpy.uint64(8) * numpy.arange(12, dtype=numpy.uint64))
    addr = raw[numpy.minimum(ip[:, None] + 12 + numpy.arange(8), len(raw) - 1)].astype(numpy.uint64)
    ports = raw[numpy.minimum(tcp[:, None] + numpy.arange(4), len(raw) - 1)].astype(numpy.uint64)
    key = (addr @ weights[:8]) * numpy.uint64(0x9E3779B1) ^ (ports @ weights[:4])
    first = numpy.where(has, raw[numpy.minimum(pay, len(raw) - 1)], 0)
    head = raw[numpy.minimum(pay[:, None] + numpy.arange(3), len(raw) - 1)]
    stop = has & (end - pay >= 3) & ((first == 20) | (first == 23)) & (head[:, 1] == 3) & (head[:, 2] <= 4)
    order = numpy.lexsort((numpy.arange(len(off)), key))
    k = key[order]
    group = numpy.r_[0, numpy.flatnonzero(k[1:] != k[:-1]) + 1]
    seen = numpy.cumsum(stop[order])
    before = numpy.repeat(seen[group] - stop[order][group], numpy.diff(numpy.r_[group, len(k)]))
    cut = numpy.zeros(len(off), dtype=bool)
    cut[order] = seen - before > 0
    keep = ~(has & cut)
    with open(dst, "wb") as out:
        out.write(view[:24])
        for a, b in zip(off[keep].tolist(), end[keep].tolist(), strict=True):
            out.write(view[a:b])
    return int(keep.sum()), len(off)


def ensure_pcap(args: argparse.Namespace, interleave: int = 16) -> tuple[Path, float | None]:
    """The pcap to measure: the argument, or a cached build; returns (path, build seconds)."""
    if args.pcap:
        return Path(args.pcap), None
    connections: int = QUICK_CONNECTIONS if args.quick else args.connections
    target_mb: float = QUICK_TARGET_MB if args.quick else args.target_mb
    key = build_key(args, connections, target_mb, interleave)
    tag = "" if interleave == 16 else f"-i{interleave}"
    path = cache_dir(args.cache_dir) / f"synthetic-c{connections}-mb{target_mb:g}{tag}-{key}.pcap"
    if path.exists() and Path(f"{path}.json").exists():
        print(f"reusing {path}")
        return path, None
    for stale in path.parent.glob(f"synthetic-c{connections}-mb{target_mb:g}{tag}-*.pcap*"):
        ours = rf"synthetic-c{connections}-mb{target_mb:g}{tag}-[0-9a-f]{{10}}(-hellos-only)?\.pcap(\.json)?"
        if re.fullmatch(ours, stale.name):
            stale.unlink()  # same parameters, older generator or sources: never reused
    cmd = [sys.executable, str(GENERATOR), *(args.sources or []), "-o", str(path),
           "--connections", str(connections), "--target-mb", str(target_mb), "--seed", str(args.seed),
           "--interleave", str(interleave)]
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
        *(f"- {r.tool}, every run (s, with the load average before it): "
          f"{', '.join(f'{t:.2f} ({x:.1f})' for t, x in zip(r.runs, r.loads, strict=True))}"
          for r in results if r.runs), "",
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
    p.add_argument("--compare", type=Path, help="another checkout whose tlsdetect runs in the same rounds")
    p.add_argument("--shapes", type=parse_shapes, default=["complete"],
                   help=f"capture shapes, comma separated: {', '.join(SHAPES)} (not with a PCAP argument)")
    p.add_argument("--cache-dir", help="where built pcaps are kept (default ~/.cache/tlsdetect-bench)")
    p.add_argument("--results", help="Markdown output (default benchmarks/results/pcap-<date>[-quick].md)")
    args = p.parse_args(argv)
    if args.pcap and args.shapes != ["complete"]:
        p.error("--shapes builds its files: give no PCAP")
    return args


def comparison(by_shape: dict[str, list[Result]], tree: Path) -> str:
    """New/old time per shape (best of the rounds each), with the load averages of the runs."""
    old_name = f"tlsdetect @{tree_label(tree)}"
    lines = ["| shape | this tree (s) | " + old_name + " (s) | this / old | median of the rounds' ratios "
             "| load average over its runs |",
             "|---|---:|---:|---:|---:|---|"]
    for shape, results in by_shape.items():
        by = {r.tool: r for r in results}
        new, old = by.get("tlsdetect fingerprint"), by.get(old_name)
        if not (new and old and new.seconds and old.seconds):
            times = [fmt(r.seconds if r else None, ".2f") for r in (new, old)]
            lines.append(f"| {shape} | {times[0]} | {times[1]} | n/a | n/a | |")
            continue
        loads = new.loads + old.loads
        # Each round ran both back to back: their ratio is less exposed to a slow phase of the host.
        paired = statistics.median(a / b for a, b in zip(new.runs, old.runs, strict=False))
        lines.append(f"| {shape} | {new.seconds:.2f} | {old.seconds:.2f} | {new.seconds / old.seconds:.2f} | "
                     f"{paired:.2f} | {min(loads):.1f} - {max(loads):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--derive-hellos-only"]:  # the child process of ensure_shape
        kept, total = hellos_only(Path(argv[1]), Path(argv[2]))
        print(kept, total)
        return 0
    args = parse_args(argv)
    skip = {name for group in args.skip for name in group}
    files = {shape: ensure_shape(args, shape) for shape in args.shapes}
    runners: dict[str, Any] = {name: RUNNERS[name] for name in TOOLS if name not in skip}
    if args.compare:
        tree = args.compare.resolve()
        runners["old"] = lambda pcap, manifest, work: run_tlsdetect(pcap, manifest, work, tree)
    best: dict[tuple[str, str], Result] = {}
    loads: dict[str, list[float]] = {shape: [] for shape in files}
    warm: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tlsdetect-bench-") as tmp:
        # Round robin over shapes and tools, one run each per round: a slow phase of the machine
        # (a noisy host moves times by 20-40% over minutes) hits every tool alike, so ratios hold.
        for round_no in range(1, args.repeat + 1):
            for shape, (pcap, _) in files.items():
                manifest = load_manifest(pcap)
                warm[shape] = warm_cache(pcap)
                loads[shape].append(os.getloadavg()[0])
                for name, runner in runners.items():
                    if (shape, name) in best and best[shape, name].status != "ok":
                        continue
                    print(f"round {round_no}/{args.repeat}, {shape}: running {name} ...", flush=True)
                    r = runner(pcap, manifest, Path(tmp))
                    print(f"  {r.status}: {fmt(r.seconds, '.2f')} s, {fmt(r.peak_rss_mb, '.0f')} MiB, "
                          f"hellos {fmt(r.hellos, ',')} {r.check} {'; '.join(r.notes)}", flush=True)
                    best[shape, name] = _merge(best.get((shape, name)), r)
                loads[shape].append(os.getloadavg()[0])
    by_shape = {shape: [r for (s, _), r in best.items() if s == shape] for shape in files}
    parts = []
    if args.compare and files:
        when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        parts += [f"# pcap benchmark: this tree against {args.compare}, {when}", "",
                  comparison(by_shape, args.compare.resolve()), ""]
    for shape, (pcap, build_s) in files.items():
        text = report(pcap, load_manifest(pcap), build_s=build_s, warm_s=warm[shape], results=by_shape[shape],
                      load=(loads[shape][0], loads[shape][-1]))
        if len(files) > 1:
            text = text.replace("# pcap benchmark,", f"## shape {shape}: pcap benchmark,", 1)
        parts.append(text)
    text = "\n".join(parts)
    suffix = "-quick" if args.quick else ""
    out = Path(args.results) if args.results else BENCH_DIR / "results" / f"pcap-{dt.date.today()}{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("\n" + text + f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
