"""The fuzzing harness (fuzz/runner.py, fuzz/child.py): a raised bug and a signal are both findings, saved
as regression files; a documented error is not; libFuzzer's statistics are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.runner import ROOT, failure_report, parse_stats, run_target, seed_files
from fuzz.targets import TARGETS

_LOG = """INFO: Seed: 1
#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 150Mb
#4096\tpulse  cov: 40 ft: 57 corp: 10/300b lim: 4 exec/s: 1365 rss: 160Mb
Done 19089 runs in 16 second(s)
stat::number_of_executed_units: 19089
stat::average_exec_per_sec:     1193
stat::new_units_added:          42
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              160
"""


def test_parse_stats_reads_the_final_counters() -> None:
    s = parse_stats("api", _LOG)
    assert (s.execs, s.cov, s.ft, s.corpus, s.new_units, s.peak_rss_mb) == (19089, 40, 57, 10, 42, 160)


def test_parse_stats_of_a_silent_child_is_zero() -> None:
    s = parse_stats("api", "Traceback (most recent call last):\n")
    assert (s.execs, s.cov, s.findings) == (0, 0, [])


def test_every_target_has_committed_seeds() -> None:
    for name in TARGETS:
        seeds = seed_files(name, None)
        assert seeds, name
        assert all(p.stat().st_size > 0 for p in seeds)
    assert any(p.parent == ROOT / "pcaps" for p in seed_files("pcap", None))


@pytest.fixture
def selftest(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TLSDETECT_FUZZ_TARGETS", "tests.fuzz_selftest")
    return "tests.fuzz_selftest"


@pytest.mark.parametrize(("target", "first"), [("selftest-raise", b"K"), ("selftest-segv", b"S")])
def test_a_bug_or_a_signal_is_saved_as_a_regression_file(tmp_path: Path, selftest: str, target: str,
                                                         first: bytes) -> None:
    stats = run_target(target, 60, crashes=tmp_path, targets_module=selftest)
    assert stats.returncode != 0
    assert len(stats.findings) == 1
    found = stats.findings[0]
    assert found.parent == tmp_path / target
    assert found.name.startswith("crash-")
    assert found.read_bytes()[:1] == first
    report = found.with_name(found.name + ".txt").read_text()
    assert ("KeyError" if first == b"K" else "Segmentation fault") in report
    assert "_segfaults" in report or "_raises" in report  # the Python stack that led to it
    assert stats.seconds < 55  # it stopped at the finding, not at the budget


def test_documented_errors_are_not_findings(tmp_path: Path, selftest: str) -> None:
    stats = run_target("selftest-documented", 3, crashes=tmp_path, targets_module=selftest)
    assert stats.returncode == 0
    assert stats.findings == []
    assert stats.execs > 100
    assert not (tmp_path / "selftest-documented").exists()


def test_failure_report_starts_at_the_failure_not_the_warnings() -> None:
    log = "\n".join(["capture.pcapng: truncated packet at byte 24; read up to the damage"] * 500
                    + [" === Uncaught Python exception: ===", "KeyError: 'x'", "Traceback (most recent call last):",
                       "==1== ERROR: libFuzzer: fuzz target exited", "stat::peak_rss_mb: 160"])
    report = failure_report(log)
    assert report[0] == " === Uncaught Python exception: ==="
    assert report[-1] == "stat::peak_rss_mb: 160"
    assert failure_report("a\nb\nc", limit=2) == ["b", "c"]
