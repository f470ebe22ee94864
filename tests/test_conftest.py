"""The suite's one way to find the shared corpus (tests/conftest.py): TLSDETECT_SHARED, skip or fail under CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import conftest
from .conftest import ROOT

#: A path to the corpus built by hand instead of through conftest.SHARED.
HARD_CODED = re.compile(r"""/\s*["']shared["']|["']\.\./shared""")


def _pytest(*args: str, shared: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TLSDETECT_SHARED"] = str(shared)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_only_conftest_builds_the_corpus_path() -> None:
    """Issue 14 item 15: no test hard-codes ``../shared`` (test_spark.py did, ignoring TLSDETECT_SHARED)."""
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted((ROOT / "tests").glob("*.py"))
        if p.name not in ("conftest.py", Path(__file__).name)
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if HARD_CODED.search(line)
    ]
    assert not offenders, offenders


def test_require_shared_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 14 item 15: a missing corpus is a skip with the path on a laptop, a failure under CI."""
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    (tmp_path / "samples").mkdir()
    assert conftest.require_shared("samples") == tmp_path / "samples"
    monkeypatch.setattr(conftest, "ON_CI", False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(tmp_path / "knowledge"))):
        conftest.require_shared("samples", "knowledge")
    monkeypatch.setattr(conftest, "ON_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI: shared data not found"):
        conftest.require_shared("samples", "knowledge")


@pytest.mark.skipif(conftest.shared_missing(*conftest.SHARED_PARTS) is not None, reason="needs the real corpus")
def test_tlsdetect_shared_is_followed_and_ci_fails_without_it(tmp_path: Path) -> None:
    """Issue 14 item 15: TLSDETECT_SHARED moves the corpus for every test (Spark's too); under CI a missing one
    stops the run instead of skipping."""
    elsewhere = tmp_path / "corpus-elsewhere"
    elsewhere.symlink_to(conftest.SHARED.resolve(), target_is_directory=True)
    test = "tests/test_logs.py::test_shared_samples_are_detected_by_content"
    found = _pytest(test, shared=elsewhere, ci=True)
    assert found.returncode == 0, found.stdout[-2000:]
    assert "1 passed" in found.stdout

    missing = tmp_path / "no-corpus"
    files = ["tests/test_logs.py", *sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob("test_spark*.py"))]
    selected = _pytest(*files, "-m", "shared_data", "--collect-only", shared=elsewhere, ci=False)
    wanted = [line for line in selected.stdout.splitlines() if "::" in line]
    assert any("test_logs.py" in w for w in wanted), selected.stdout
    assert any("test_spark" in w for w in wanted), selected.stdout
    local = _pytest(*files, "-m", "shared_data", shared=missing, ci=False)
    assert local.returncode == 0, local.stdout[-2000:]
    assert f"shared data not found: {missing}" in local.stdout
    assert re.search(rf"^{len(wanted)} skipped", local.stdout, re.M), local.stdout[-3000:]  # every one of them

    on_ci = _pytest(test, shared=missing, ci=True)
    assert on_ci.returncode != 0
    assert f"CI: shared data not found: {missing}" in on_ci.stdout + on_ci.stderr


def _ci_prelude(tmp_path: Path) -> Path:
    """``.ci/run`` up to the set-up step, in a clone-like folder ``tmp_path/clone`` (its ../shared: tmp_path/shared)."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    head = script[: script.index("bash scripts/setup.sh")]
    run = tmp_path / "clone" / ".ci" / "run"
    run.parent.mkdir(parents=True)
    run.write_text(head, encoding="utf-8")
    return run


@pytest.mark.skipif(conftest.shared_missing(*conftest.SHARED_PARTS) is not None, reason="needs the real corpus")
def test_ci_run_stops_before_anything_without_the_corpus(tmp_path: Path) -> None:
    """Issue 14 item 15: `.ci/run` exports TLSDETECT_SHARED (../shared by default) and fails when it is missing."""
    run = _ci_prelude(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TLSDETECT_SHARED")}
    missing = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0
    assert "CI: shared corpus not found at ../shared" in missing.stderr
    (tmp_path / "shared").symlink_to(conftest.SHARED.resolve(), target_is_directory=True)
    found = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert f"shared corpus: {tmp_path / 'shared'}" in found.stdout
    partial = tmp_path / "partial"
    (partial / "samples").mkdir(parents=True)
    env["TLSDETECT_SHARED"] = str(partial)
    broken = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert f"CI: {partial}/pcaps/reference/expected_ja4.json is missing" in broken.stderr
