#!/usr/bin/env python3
"""Time the local CLI against the Spark job (``local[2]``) for ``fit`` and ``score``, at 1x, 2x and 4x input.

Two inputs, each at three scales, built in a temporary directory:

* captures: ``--pcaps`` (default 20) synthetic classic pcaps written by ``make_big_pcap.py`` from
  the project's *real* hellos (``pcaps/``), ``--pcap-connections`` each, different seeds; 2x and
  4x list every file two and four times (as symlinks of other names: distinct sources and
  connection ids, the same bytes), so 1x = 20, 2x = 40, 4x = 80 capture files;
* a Zeek ssl.log (+ x509.log) built as ``bench_zeek.py`` builds it: ``--zeek-rows`` rows at 1x
  (default 500k; 4x = 2M rows).

Per input and scale, each command runs as its own process (wall time; peak RSS sampled from
``/proc`` every 0.2 s): ``tlsdetect baseline fit`` and ``tlsdetect score -f parquet`` (local), then
``tlsdetect spark fit`` and ``tlsdetect spark score`` with ``--master local[2] --driver-memory 2g``
(scored against the same baseline). For Spark the peak is reported for the driver (the Python
driver + its JVM) and, separately, for the largest single Python worker. The scored row counts of
both paths are checked equal. Prints a Markdown table and writes
``benchmarks/results/spark-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
TLSDETECT = [sys.executable, "-m", "tlsdetect"]


@dataclass
class Run:
    seconds: float
    driver_mb: float
    worker_mb: float
    rows: int


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(d))
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; wall seconds, peak driver-tree RSS (MB, workers excluded) and peak single-worker RSS."""
    peak = {"driver": 0.0, "worker": 0.0}
    done = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sample() -> None:
        while not done.is_set():
            kids = _children()
            driver, workers, stack = 0.0, 0.0, [proc.pid]
            while stack:
                pid = stack.pop()
                rss = _rss_mb(pid)
                line = _cmdline(pid)
                if "pyspark.daemon" in line or "pyspark.worker" in line or "pyspark/daemon" in line:
                    workers = max(workers, rss)
                else:
                    driver += rss
                stack.extend(kids.get(pid, []))
            peak["driver"] = max(peak["driver"], driver)
            peak["worker"] = max(peak["worker"], workers)
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    secs = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')[-3000:]}")
    return secs, peak["driver"], peak["worker"]


def parquet_rows(path: Path) -> int:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def make_pcaps(folder: Path, n: int, connections: int) -> list[Path]:
    out = []
    for i in range(n):
        p = folder / f"syn{i:02d}.pcap"
        subprocess.run([sys.executable, str(BENCH / "make_big_pcap.py"), "-o", str(p), "--connections",
                        str(connections), "--target-mb", "0", "--hello-fraction", "0.3", "--clients", "400",
                        "--seed", str(i + 1), "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        Path(str(p) + ".json").unlink(missing_ok=True)
        out.append(p)
    return out


def scaled_pcaps(folder: Path, base: list[Path], scale: int) -> Path:
    d = folder / f"pcaps-{scale}x"
    d.mkdir()
    for k in range(scale):
        for p in base:
            (d / f"{p.stem}-{k}.pcap").symlink_to(p)
    return d


def zeek_input(folder: Path, rows: int) -> Path:
    from bench_zeek import generate

    d = folder / f"zeek-{rows}"
    d.mkdir()
    generate(d, rows, 400)
    return d


def run_pair(inp: Path, work: Path, tag: str, spark_master: str) -> dict[str, Run]:
    res: dict[str, Run] = {}
    base = work / f"baseline-{tag}"
    s, d, _ = measure([*TLSDETECT, "baseline", "fit", str(inp), "-o", str(base), "--no-progress"])
    res["local fit"] = Run(s, d, 0.0, 0)
    out = work / f"scored-{tag}.parquet"
    s, d, _ = measure([*TLSDETECT, "score", str(inp), "--baseline", str(base), "-f", "parquet", "-o", str(out),
                       "--no-progress"])
    res["local score"] = Run(s, d, 0.0, parquet_rows(out))
    spark_opts = ["--master", spark_master, "--driver-memory", "2g"]
    s, d, w = measure([*TLSDETECT, "spark", "fit", str(inp), "-o", str(work / f"sbaseline-{tag}"), *spark_opts])
    res["spark fit"] = Run(s, d, w, 0)
    sout = work / f"sscored-{tag}"
    s, d, w = measure([*TLSDETECT, "spark", "score", str(inp), "--baseline", str(base), "-o", str(sout), *spark_opts])
    res["spark score"] = Run(s, d, w, parquet_rows(sout))
    if res["spark score"].rows != res["local score"].rows:
        raise SystemExit(f"{tag}: Spark scored {res['spark score'].rows} rows, local {res['local score'].rows}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcaps", type=int, default=20)
    ap.add_argument("--pcap-connections", type=int, default=5000)
    ap.add_argument("--zeek-rows", type=int, default=500_000)
    ap.add_argument("--scales", default="1,2,4")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    rows: list[tuple[str, int, str, Run, Run]] = []
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        base = make_pcaps(work, args.pcaps, args.pcap_connections)
        pcap_mb = sum(p.stat().st_size for p in base) / 1e6
        print(f"{len(base)} pcaps, {pcap_mb:.0f} MB, in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        inputs: list[tuple[str, int, Path, str]] = []
        for sc in scales if base else []:  # --pcaps 0: Zeek only
            inputs.append(("pcap", sc, scaled_pcaps(work, base, sc),
                           f"{len(base) * sc} files, {pcap_mb * sc:.0f} MB"))
        for sc in scales if args.zeek_rows else []:  # --zeek-rows 0: captures only
            t0 = time.perf_counter()
            z = zeek_input(work, args.zeek_rows * sc)
            mb = (z / "ssl.log").stat().st_size / 1e6
            print(f"zeek {args.zeek_rows * sc:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            inputs.append(("zeek", sc, z, f"{args.zeek_rows * sc:,} rows, {mb:.0f} MB"))
        for kind, sc, path, desc in inputs:
            res = run_pair(path, work, f"{kind}{sc}", args.master)
            print(kind, sc, {k: round(v.seconds, 1) for k, v in res.items()}, file=sys.stderr)
            for step in ("fit", "score"):
                rows.append((kind, sc, desc, res[f"local {step}"], res[f"spark {step}"]))
                rows[-1][3].rows = rows[-1][4].rows = res["local score"].rows
            rows[-2] = (rows[-2][0], rows[-2][1], rows[-2][2] + " | fit", rows[-2][3], rows[-2][4])
            rows[-1] = (rows[-1][0], rows[-1][1], rows[-1][2] + " | score", rows[-1][3], rows[-1][4])
            write(rows, args)  # after every input, so an interrupted run keeps what it measured


def write(rows: list[tuple[str, int, str, Run, Run]], args: argparse.Namespace) -> None:
    import pandas as pd
    import pyspark

    lines = [
        f"# Spark vs local benchmark, {dt.date.today().isoformat()}",
        "",
        f"`benchmarks/bench_spark.py --pcaps {args.pcaps} --pcap-connections {args.pcap_connections} "
        f"--zeek-rows {args.zeek_rows} --scales {args.scales} --master {args.master}`",
        "",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}, "
        f"pandas {pd.__version__}, PySpark {pyspark.__version__}; Spark `{args.master}`, driver memory 2g. "
        "Every command is a fresh process (Spark's JVM start, about 5-10 s, is included).",
        "",
        "Peak RSS: local = the CLI process; Spark driver = Python driver + its JVM (the local[2] executors "
        "run in that JVM); Spark worker = the largest Python worker.",
        "",
        "| input | scale | size \\| step | rows | local s | Spark s | Spark / local | Spark s per 1x | local peak MB "
        "| Spark driver peak MB | Spark worker peak MB |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    first: dict[tuple[str, str], float] = {}
    for kind, sc, desc, loc, spk in rows:
        step = desc.rsplit("| ", 1)[1]
        first.setdefault((kind, step), spk.seconds / sc)
        lines.append(f"| {kind} | {sc}x | {desc.replace('|', chr(92) + '|')} | {loc.rows:,} | {loc.seconds:.1f} | "
                     f"{spk.seconds:.1f} | {spk.seconds / loc.seconds:.1f} | {spk.seconds / sc:.1f} | "
                     f"{loc.driver_mb:.0f} | {spk.driver_mb:.0f} | {spk.worker_mb:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    path = args.results or ROOT / "benchmarks" / "results" / f"spark-{dt.date.today().isoformat()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
