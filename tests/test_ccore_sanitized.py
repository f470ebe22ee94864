"""Issue 19 item 2: the C capture core (``tlsdetect/readers/pcap/_ccore.c``) built with AddressSanitizer
and UBSan, run over every capture we have and a bounded mutation fuzz (``fuzz/ccore_sanitized.py``).

A child process loads the sanitized build with libasan preloaded; any bad read or write, undefined
behaviour or difference from the numpy core ends it with a non-zero status, and the input it was
reading is kept under ``tests/data/ccore_crashes/`` as a regression input (replayed first next time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, ROOT

SOURCE = ROOT / "tlsdetect" / "readers" / "pcap" / "_ccore.c"
CRASHES = ROOT / "tests" / "data" / "ccore_crashes"
#: Seconds of mutation fuzzing after the corpus (raise it for a deep run).
SECONDS = float(os.environ.get("TLSDETECT_CCORE_FUZZ_SECONDS", "90"))


def _libasan() -> str | None:
    if shutil.which("gcc") is None:
        return None
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], check=False, capture_output=True, text=True)
    path = found.stdout.strip()
    return path if os.path.isabs(path) and Path(path).exists() else None


def _inputs() -> list[Path]:
    files = sorted(CRASHES.glob("*")) if CRASHES.is_dir() else []
    for folder in (REFERENCE, INTERCEPTION):
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.suffix not in (".json", ".md") and p.is_file())
    return files + sorted(PROJECT_PCAPS.glob("*.pcap*"))


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.skipif(_libasan() is None, reason="gcc with libasan is not installed")
def test_sanitized_core_over_the_corpus_and_mutations(tmp_path: Path) -> None:
    so = tmp_path / "_ccore_asan.so"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-std=c99", "-shared", "-fPIC", f"-I{include}", str(SOURCE), "-o", str(so)],
        check=True,
    )
    last = tmp_path / "last.bin"
    env = dict(os.environ, LD_PRELOAD=str(_libasan()), ASAN_OPTIONS="detect_leaks=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    inputs = _inputs()
    assert len(inputs) > 10
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.ccore_sanitized", str(so), str(last), str(SECONDS), "1", *map(str, inputs)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS + 600,
    )
    if proc.returncode != 0 and last.exists():
        CRASHES.mkdir(parents=True, exist_ok=True)
        kept = CRASHES / f"{hashlib.sha256(last.read_bytes()).hexdigest()[:16]}.pcap"
        shutil.copy(last, kept)
        pytest.fail(f"the sanitized core failed (input kept as {kept}):\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no finding" in proc.stdout
