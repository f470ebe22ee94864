"""The reader contract: one ReadStats that merges, and the log readers' names as views of it."""

from __future__ import annotations

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.logs import DeadLetter, LogStats


def test_merge_adds_every_field_and_keeps_warnings_once() -> None:
    a = ReadStats(files=1, bytes_read=10, rows=2, warnings=["damaged at 7"])
    a.counts["packets"] += 5
    b = ReadStats(files=2, bytes_read=5, rows=1, warnings=["damaged at 7", "other"])
    b.counts.update({"packets": 1, "frames": 3})
    b.skipped["bad json"] += 2
    assert a.merge(b) is a
    assert (a.files, a.bytes_read, a.rows) == (3, 15, 3)
    assert a.counts == {"packets": 6, "frames": 3}
    assert a.skipped == {"bad json": 2}
    assert a.warnings == ["damaged at 7", "other"]


def test_log_stats_names_are_counts_and_skips() -> None:
    stats = LogStats()
    stats.lines += 4
    with DeadLetter(stats=stats) as letters:
        letters.add("x.log", 3, "bad json: Expecting value", "{")
    assert (stats.bad_lines, stats.reasons) == (1, {"bad json": 1})
    assert stats.counts == {"lines": 4, "bad_lines": 1}
    assert ReadStats().merge(stats).skipped == {"bad json": 1}
    assert stats.summary() == "1 of 4 lines could not be read: bad json (1)"
