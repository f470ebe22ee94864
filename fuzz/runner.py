"""Runs targets for a time budget each, in a child process, and keeps what they find.

Why a child per target: a native crash (SIGSEGV in a C parser) or an out-of-memory kill must cost
the run one finding, not the runner; libFuzzer in the child writes the input that did it, and this
process moves it to ``fuzz/crashes/<target>/`` (with the child's report beside it as ``.txt``),
where ``tests/test_fuzz_regressions.py`` replays it on every test run. The corpus a run grows is
kept only when ``--corpus DIR`` is given (long runs resume from it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.targets import load_targets

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
CRASHES = FUZZ / "crashes"
SEEDS = FUZZ / "seeds"
#: Seed files larger than this are left out (libFuzzer holds every input in memory, mutates whole inputs).
MAX_SEED = 256 * 1024
#: The same for a sanitized target, ~10x slower per input (ASan, PYTHONMALLOC=malloc, both cores compared).
MAX_SANITIZED_SEED = 32 * 1024
#: libFuzzer's names for what it saved: an exception or signal, a hang, memory over the limit.
_ARTIFACT = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+$")


@dataclass(slots=True)
class RunStats:
    """What one target's run did, from libFuzzer's final statistics."""

    target: str
    seconds: float = 0.0
    execs: int = 0
    #: libFuzzer's coverage counters at the end: edges (``cov``) and features (``ft``)
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    new_units: int = 0
    peak_rss_mb: int = 0
    findings: list[Path] = field(default_factory=list)
    returncode: int = 0

    def line(self) -> str:
        found = ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in self.findings)
        rate = self.execs / max(self.seconds, 1e-9)
        return (f"{self.target}: {self.execs} execs in {self.seconds:.0f} s ({rate:.0f}/s),"
                f" cov {self.cov}, ft {self.ft}, corpus {self.corpus} (+{self.new_units}),"
                f" peak RSS {self.peak_rss_mb} MB, findings {len(self.findings)}" + (f": {found}" if found else ""))


def parse_stats(target: str, log: str) -> RunStats:
    """libFuzzer's output (``-print_final_stats=1``) -> :class:`RunStats` (zeros where it said nothing)."""
    stats = RunStats(target)
    for key, attr in (("number_of_executed_units", "execs"), ("new_units_added", "new_units"),
                      ("peak_rss_mb", "peak_rss_mb")):
        m = re.search(rf"^stat::{key}:\s+(\d+)", log, re.M)
        if m:
            setattr(stats, attr, int(m.group(1)))
    status = re.findall(r"^#\d+\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)", log, re.M)
    if status:
        stats.cov, stats.ft, stats.corpus = (int(v) for v in status[-1])
    return stats


def seed_files(target: str, shared: Path | None) -> list[Path]:
    """The seeds of ``target``: committed seeds, saved regressions, the project's captures, and the
    shared corpus's captures and logs of the target's kind when ``shared`` is there (read in place)."""
    files = [p for d in (SEEDS / target, CRASHES / target) if d.is_dir() for p in sorted(d.iterdir())
             if p.is_file() and p.suffix != ".txt"]
    if target in ("pcap", "ccore"):
        files += sorted((ROOT / "pcaps").glob("*.pcap*"))
        if shared:
            files += sorted(p for p in (shared / "pcaps").rglob("*.pcap*") if p.is_file())
    elif shared and target in ("zeek-json", "zeek-tsv"):
        json_first = target == "zeek-json"
        for p in sorted((shared / "samples" / "zeek").glob("*ssl*.log")):
            if p.read_bytes()[:1].startswith(b"{") == json_first:
                files.append(p)
    elif shared and target == "envoy-json":
        files += sorted((shared / "samples" / "envoy").glob("*.jsonl"))
    known = load_targets().get(target)
    limit = MAX_SANITIZED_SEED if known is not None and known.sanitized else MAX_SEED
    return [p for p in files if p.stat().st_size <= limit]


#: Where the child's account of a failure starts: atheris' traceback, faulthandler's stack, libFuzzer's verdict.
#: A sanitizer's report (ASan's ``==pid==ERROR: AddressSanitizer``, UBSan's ``file:line:col: runtime error``)
#: comes before libFuzzer's "deadly signal" that its abort causes.
_FAILURE_START = re.compile(r"^( === Uncaught Python exception|Fatal Python error|==\d+== ERROR: libFuzzer"
                            r"|==\d+==ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer)"
                            r"|\S+:\d+:\d+: runtime error: )")


def failure_report(log: str, limit: int = 80) -> list[str]:
    """The lines of ``log`` that tell the failure (from its first marker on), not the readers' warnings
    before it; the last ``limit`` lines when no marker is there."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if _FAILURE_START.match(line)), max(len(lines) - limit, 0))
    return lines[start:start + limit]


def _minimised(target: str, artifact: Path, env: dict[str, str], seconds: float) -> bytes:
    """The finding reduced by :mod:`fuzz.minimise` in a child (a crash there costs the reduction only)."""
    out = artifact.with_name(artifact.name + ".min")
    cmd = [sys.executable, "-m", "fuzz.child", "--minimize", target, str(artifact), str(out), str(seconds)]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=seconds + 120, check=False)
    data = artifact.read_bytes()
    if out.exists() and 0 < out.stat().st_size < len(data):
        return out.read_bytes()
    return data


def _save(target: str, artifact: Path, report: str, crashes: Path, data: bytes) -> Path:
    kind = artifact.name.split("-", 1)[0]
    folder = crashes / target
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
    dest.write_bytes(data)
    tail = "\n".join(failure_report(report))
    replay = f".venv/bin/python -m fuzz.child {target} {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
    size = f"{len(data)} bytes (found as {artifact.stat().st_size}; reduced by fuzz/minimise.py)"
    dest.with_name(dest.name + ".txt").write_text(
        f"target: {target}\nkind: {kind}\nsize: {size}\nreplay: {replay}\n\n{tail}\n")
    return dest


def child_env(target: str, base: dict[str, str] | None = None, targets_module: str | None = None) -> dict[str, str]:
    """The environment of ``target``'s fuzzing child: the project on ``PYTHONPATH``, and for a sanitized
    target the ASan/UBSan build of the C core (built here first; :class:`fuzz.sanitized.UnavailableError`
    when it cannot be)."""
    from fuzz import sanitized

    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if targets_module:
        env["TLSDETECT_FUZZ_TARGETS"] = targets_module
    known = load_targets().get(target)
    if known is not None and known.sanitized:
        env = sanitized.child_env(sanitized.build(), env)
    return env


def run_target(target: str, seconds: float, *, seed: int = 1, corpus: Path | None = None,
               shared: Path | None = None, crashes: Path = CRASHES, timeout: int = 30,
               rss_limit_mb: int = 2048, targets_module: str | None = None,
               minimise_seconds: float = 30) -> RunStats:
    """Fuzz ``target`` for ``seconds`` in a child process; findings are saved under ``crashes``."""
    with tempfile.TemporaryDirectory(prefix=f"tlsdetect-fuzz-{target}-") as tmp:
        work = Path(tmp)
        seeds = work / "seeds"
        seeds.mkdir()
        for i, f in enumerate(seed_files(target, shared)):
            shutil.copyfile(f, seeds / f"{i:03d}-{f.name}")
        grown = corpus / target if corpus else work / "corpus"
        grown.mkdir(parents=True, exist_ok=True)
        artifacts = work / "artifacts"
        artifacts.mkdir()
        env = child_env(target, targets_module=targets_module)
        cmd = [sys.executable, "-m", "fuzz.child", target, f"-seed={seed}", f"-max_total_time={int(seconds)}",
               f"-timeout={timeout}", f"-rss_limit_mb={rss_limit_mb}", "-print_final_stats=1",
               f"-artifact_prefix={artifacts}/", str(grown), str(seeds)]
        env["TLSDETECT_FUZZ_SCRATCH"] = str(work)  # the child's input files, removed with this directory
        start = time.monotonic()
        # libFuzzer reads every seed before its clock starts: under ASan on a loaded host that read alone took
        # ~290 s (stop 30), so the guard leaves it 900 s; it only catches a child that hangs
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=seconds + timeout + 900, check=False)
        log = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("INFO: Instrumenting "))
        stats = parse_stats(target, log)
        stats.seconds = time.monotonic() - start
        stats.returncode = proc.returncode
        found = sorted(p for p in artifacts.iterdir() if _ARTIFACT.match(p.name))
        stats.findings = [_save(target, p, log, crashes, _minimised(target, p, env, minimise_seconds)
                                if p.name.startswith("crash-") else p.read_bytes()) for p in found]
        if proc.returncode != 0 and not found:
            raise RuntimeError(f"fuzz target {target}: the fuzzer exited {proc.returncode} without a finding:\n"
                               + "\n".join(log.splitlines()[-30:]))
        return stats


def shared_corpus() -> Path | None:
    """``$TLSDETECT_SHARED`` or ``../shared`` beside the project, when it is there."""
    raw = os.environ.get("TLSDETECT_SHARED")
    path = Path(raw) if raw else ROOT.parent / "shared"
    return path if (path / "pcaps").is_dir() else None
