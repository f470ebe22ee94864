"""Every input the fuzzer ever found (fuzz/crashes/<target>/) replayed through its target: fixed stays fixed.

The replay runs in the fuzzing child (libFuzzer's replay mode), so an input that crashes a native parser
fails this test instead of killing the test run; a sanitized target's inputs (``ccore``) replay under its
ASan/UBSan build. Each finding has its report (``.txt``) beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fuzz.runner import CRASHES, ROOT, child_env
from fuzz.sanitized import UnavailableError
from fuzz.targets import TARGETS
from tests.conftest import ON_CI


def _findings(target: str) -> list[str]:
    folder = CRASHES / target
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix != ".txt")


def test_findings_are_filed_under_a_target_with_their_report() -> None:
    if not CRASHES.is_dir():
        return
    for folder in CRASHES.iterdir():
        assert folder.name in TARGETS, f"{folder}: no such fuzz target"
        for data in _findings(folder.name):
            assert os.path.exists(data + ".txt"), f"{data}: its report is missing"


@pytest.mark.parametrize("target", sorted(t for t in TARGETS if _findings(t)))
def test_saved_findings_no_longer_fail(target: str) -> None:
    files = _findings(target)
    try:
        env = child_env(target)
    except UnavailableError as exc:  # no compiler for the sanitized build: a skip here, a failure in CI
        if ON_CI:
            pytest.fail(f"CI: {target}: {exc}", pytrace=False)
        pytest.skip(f"{target}: {exc}")
    proc = subprocess.run([sys.executable, "-m", "fuzz.child", target, *files], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          timeout=300, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("INFO: Instrumenting ")]
    assert proc.returncode == 0, "\n".join(lines[-40:])
    assert sum(ln.startswith("Executed ") for ln in lines) == len(files)
    if TARGETS[target].sanitized:  # the sanitized build is what ran
        assert any(ln.startswith("capture core: ") and "ASan runtime loaded" in ln for ln in lines), lines[:5]
