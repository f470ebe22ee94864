"""Every input the fuzzer ever found (fuzz/crashes/<target>/) replayed through its target: fixed stays fixed.

The replay runs in the fuzzing child (libFuzzer's replay mode), so an input that crashes a native parser
fails this test instead of killing the test run. Each finding has its report (``.txt``) beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fuzz.runner import CRASHES, ROOT
from fuzz.targets import TARGETS


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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fuzz.child", target, *files], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          timeout=300, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("INFO: Instrumenting ")]
    assert proc.returncode == 0, "\n".join(lines[-40:])
    assert sum(ln.startswith("Executed ") for ln in lines) == len(files)
