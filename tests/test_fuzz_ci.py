"""CI's bounded fuzz run (``python -m fuzz``): every target for a fixed seed and time, nothing found.

About two minutes in all (``TLSDETECT_FUZZ_SECONDS`` per target, default 10, plus each child's start);
marked ``slow`` so quick local runs skip it and ``fuzz`` to run it alone (``pytest -m fuzz``). A finding
fails the test with its path under fuzz/crashes/, where tests/test_fuzz_regressions.py replays it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fuzz.runner import ROOT
from fuzz.targets import TARGETS
from tests.conftest import ON_CI


@pytest.mark.slow
@pytest.mark.fuzz
def test_bounded_fuzz_run_finds_nothing() -> None:
    seconds = os.environ.get("TLSDETECT_FUZZ_SECONDS", "10")
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", seconds, "--seed", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60 * len(TARGETS) + 600, check=False)
    print(proc.stdout)  # the statistics, in the CI log
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    execs = dict(re.findall(r"^(\S+): (\d+) execs", proc.stdout, re.M))
    skipped = re.findall(r"^(\S+): skipped: ", proc.stdout, re.M)  # no compiler for a sanitized target
    assert not (skipped and ON_CI), proc.stdout
    assert sorted([*execs, *skipped]) == sorted(TARGETS)
    assert all(int(n) > 0 for n in execs.values()), execs
