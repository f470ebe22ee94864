"""The pushed-message walk (``_pushwire.c``: Envoy ALS and OTLP bytes from the network) under AddressSanitizer
and UBSan: its build, a child that loads it, and a bounded fuzz of the ``pushed`` target.

What must hold: the walk's sanitized build has ASan and lands beside the normal one; a sanitized child loads
it in place of the installed walk; the ``pushed`` target's seeds read through it as protobuf reads them; a
bounded fuzz run finds nothing and is guided by coverage. Without a compiler these skip with the reason,
and fail under CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import sanitized
from fuzz.runner import CRASHES, ROOT, run_target, shared_corpus
from tests.conftest import ON_CI

#: Seconds of the bounded fuzz run of the ``pushed`` target (CI: the default; a long local run: set it higher).
SECONDS = float(os.environ.get("TLSDETECT_SANITIZED_PUSHED_FUZZ_SECONDS", "20"))

_CHILD = """
import sys
from pathlib import Path
from fuzz import sanitized
sanitized.install()
from fuzz.targets import TARGETS, is_expected
read = 0
for name in sys.argv[1:]:
    try:
        TARGETS["pushed"].run(Path(name).read_bytes())
    except Exception as exc:
        if not is_expected(TARGETS["pushed"], exc):
            raise
    read += 1
print(sanitized.loaded(), flush=True)  # after the reads: the walk is imported by the first one
print(f"checked {read} inputs: the walk equals protobuf, no sanitizer report")
"""


@pytest.fixture(scope="module")
def builds() -> tuple[Path, Path]:
    try:
        return sanitized.build(), sanitized.build_push()
    except (sanitized.UnavailableError, RuntimeError) as exc:
        if ON_CI:
            pytest.fail(f"CI: the sanitized pushed-message walk cannot be built: {exc}", pytrace=False)
        pytest.skip(str(exc))


def _env(so: Path) -> dict[str, str]:
    return sanitized.child_env(so, {**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_walk_build_is_sanitized_and_apart_from_the_normal_one(builds: tuple[Path, Path]) -> None:
    _, push = builds
    assert sanitized.is_sanitized(push)
    assert push.is_relative_to(sanitized.BUILD)
    normal = sorted((ROOT / "tlsdetect" / "readers" / "envoy").glob("_pushwire*.so"))
    assert push not in normal
    for path in normal:
        assert not sanitized.is_sanitized(path)
    assert sanitized.build_push() == push  # built once per source and flags


@pytest.mark.slow
@pytest.mark.fuzz
def test_seeds_read_cleanly_through_the_sanitized_walk(builds: tuple[Path, Path]) -> None:
    so, push = builds
    files = sorted((ROOT / "fuzz" / "seeds" / "pushed").glob("*"))
    # saved findings, without their reports (``.txt``: the traceback, not an input)
    files += sorted(p for p in (CRASHES / "pushed").glob("*") if p.suffix != ".txt")  # none when no folder
    assert len(files) >= 2  # an OTLP export and an ALS message
    proc = subprocess.run([sys.executable, "-c", _CHILD, *map(str, files)], cwd=ROOT, env=_env(so),
                          capture_output=True, text=True, timeout=600, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"pushed walk: {push}" in proc.stdout
    assert "ASan runtime loaded" in proc.stdout
    assert f"checked {len(files)} inputs" in proc.stdout


@pytest.mark.slow
@pytest.mark.fuzz
def test_bounded_sanitized_pushed_fuzz_finds_nothing(builds: tuple[Path, Path]) -> None:
    stats = run_target("pushed", SECONDS, seed=1, shared=shared_corpus(), crashes=CRASHES)
    print(stats.line())
    assert stats.findings == [], stats.line()
    assert stats.returncode == 0
    assert stats.execs > 0
    assert stats.cov > 0
