"""The sanitized build of the C capture core (fuzz/sanitized.py) and the ``ccore`` fuzz target run with it.

What must hold: the build really has ASan and UBSan and lands beside, not over, the normal one; a child
with :func:`child_env` loads that file and turns a bad read or an undefined shift into a failing exit
with the sanitizer's report; every capture we have reads cleanly through it; a bounded fuzz run finds
nothing. Without a compiler these skip with the reason, and fail under CI (``CI`` set), as the corpus does.
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
from tests.fuzz_selftest import PROBE_C

#: Seconds of the bounded sanitized fuzz run (CI: the default; a long local run: set it higher).
SECONDS = float(os.environ.get("TLSDETECT_SANITIZED_FUZZ_SECONDS", "90"))


def _build() -> Path:
    try:
        return sanitized.build()
    except sanitized.UnavailableError as exc:
        if ON_CI:
            pytest.fail(f"CI: the sanitized build cannot be made: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def so() -> Path:
    return _build()


def _env(so: Path) -> dict[str, str]:
    return sanitized.child_env(so, {**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_build_is_sanitized_and_apart_from_the_normal_one(so: Path) -> None:
    assert sanitized.is_sanitized(so)
    assert so.is_relative_to(sanitized.BUILD)
    normal = sorted((ROOT / "tlsdetect" / "readers" / "pcap").glob("_ccore*.so"))
    assert so not in normal
    for path in normal:  # the installed build stays the fast one
        assert not sanitized.is_sanitized(path)
    assert sanitized.build() == so  # built once per source and flags


def test_a_child_loads_the_sanitized_file(so: Path) -> None:
    code = "from fuzz import sanitized; sanitized.install(); print(sanitized.loaded())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(so), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"capture core: {so}" in proc.stdout
    assert "ASan runtime loaded" in proc.stdout


def test_install_refuses_a_process_without_the_asan_runtime(so: Path) -> None:
    code = "from fuzz import sanitized; sanitized.install()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), sanitized.ENV_SO: str(so)}
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0
    assert "ASan runtime is not loaded" in proc.stderr


@pytest.fixture(scope="module")
def probe(so: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.c").write_text(PROBE_C)
    return sanitized.compile_shared([folder / "probe.c"], folder / "probe.so")


@pytest.mark.parametrize(("call", "report"), [("probe_read(8)", "AddressSanitizer: heap-buffer-overflow"),
                                              ("probe_shift(1, 40)", "runtime error: shift exponent 40")])
def test_a_bad_read_or_undefined_behaviour_aborts_with_the_report(so: Path, probe: Path, call: str,
                                                                   report: str) -> None:
    code = f"import ctypes; ctypes.CDLL({str(probe)!r}).{call}; print('survived')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(so), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0
    assert "survived" not in proc.stdout
    assert report in proc.stderr, proc.stderr[-3000:]


def test_the_runner_saves_a_sanitizer_report_as_a_finding(so: Path, probe: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLSDETECT_FUZZ_TARGETS", "tests.fuzz_selftest")
    monkeypatch.setenv("TLSDETECT_FUZZ_PROBE", str(probe))
    stats = run_target("selftest-asan", 60, crashes=tmp_path, targets_module="tests.fuzz_selftest")
    assert stats.returncode != 0
    assert len(stats.findings) == 1
    found = stats.findings[0]
    assert found.read_bytes()[0] >= 0x40
    report = found.with_name(found.name + ".txt").read_text()
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in report
    assert "probe_read" in report  # the C frame, symbolised


@pytest.mark.slow
@pytest.mark.fuzz
def test_every_capture_reads_cleanly_through_the_sanitized_core(so: Path) -> None:
    files = sanitized.corpus()
    if ON_CI:
        assert shared_corpus() is not None
    proc = subprocess.run([sys.executable, "-m", "fuzz.sanitized"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"capture core: {so}" in proc.stdout
    assert "ASan runtime loaded" in proc.stdout
    assert f"checked {len(files)} captures" in proc.stdout
    assert len(files) > 40 if shared_corpus() else len(files) > 0


@pytest.mark.slow
@pytest.mark.fuzz
def test_bounded_sanitized_fuzz_finds_nothing(so: Path) -> None:
    stats = run_target("ccore", SECONDS, seed=1, shared=shared_corpus(), crashes=CRASHES)
    print(stats.line())
    assert stats.findings == [], stats.line()
    assert stats.returncode == 0
    assert stats.execs > 0
    assert stats.cov > 0  # libFuzzer saw coverage: the shim in front of libasan works, the run is guided
