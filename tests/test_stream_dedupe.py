"""``stream/dedupe.py``: the ids each sink took, kept with the checkpoint, so a replay sends nothing twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.test_stream import ListSink, conns, streamer, write
from tlsdetect.detect.baseline import Baseline
from tlsdetect.stream.checkpoint import CheckpointError, CheckpointStore
from tlsdetect.stream.dedupe import DeliveredIds
from tlsdetect.stream.loop import Processor, StreamConfig, Streamer


def _ids(*hexes: str) -> list[dict[str, str]]:
    return [{"id": h * 32 if len(h) == 1 else h} for h in hexes]


def test_took_committed_survives_a_restart_per_sink(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    d = DeliveredIds(db)
    assert d.unseen("a", _ids("1", "2", "1")) == _ids("1", "2")  # a repeat within a batch goes once
    d.took("a", _ids("1", "2"))
    assert d.pending
    assert d.unseen("a", _ids("1", "3")) == _ids("3")  # staged counts before the commit
    assert d.commit() == 2
    assert not d.pending
    db.close()
    d = DeliveredIds(sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None))
    assert d.unseen("a", _ids("1", "2", "3")) == _ids("3")
    assert d.unseen("b", _ids("1", "2")) == _ids("1", "2")  # another sink took nothing
    assert d.unseen("a", _ids("not-hex-id")) == _ids("not-hex-id")


def test_window_keeps_the_newest_ids(tmp_path: Path) -> None:
    d = DeliveredIds(sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None), window=3)
    for h in "12345":
        d.took("a", _ids(h))
        d.commit()
    assert d.count("a") == 3
    assert d.unseen("a", _ids("1", "2", "3", "4", "5")) == _ids("1", "2")  # older than the window: sent again
    with pytest.raises(ValueError, match="window"):
        DeliveredIds(d.db, window=-1)


def test_no_window_sends_everything(tmp_path: Path) -> None:
    d = DeliveredIds(sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None), window=0)
    d.took("a", _ids("1"))
    d.commit()
    assert d.unseen("a", _ids("1", "1")) == _ids("1", "1")


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    from tests.test_stream import SAMPLE_BASELINE

    return Baseline.load(SAMPLE_BASELINE)


def test_replay_from_start_sends_nothing_twice(tmp_path: Path, baseline: Baseline) -> None:
    """issue 18 #10: a checkpoint past the end of the log replayed it all (+1 duplicate per alert, per replay)."""
    log = tmp_path / "access.log"
    write(log, range(30))
    first = ListSink()
    s = streamer(tmp_path, baseline, [first], lines=7)
    s.run()
    s.close()
    assert conns(first.got) == list(range(30))
    data = log.read_bytes()  # the file keeps its first line, loses its tail: the checkpoint is past its end
    log.write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
    write(log, range(30, 33))
    with pytest.raises(CheckpointError, match="past the end of the file"):
        streamer(tmp_path, baseline, [ListSink()], lines=7)
    again = ListSink()
    s = Streamer(log, Processor(baseline), [again], CheckpointStore(tmp_path / "state"),
                 config=StreamConfig(batch_lines=7, recover="start"))  # fmt: skip
    m = s.run()
    s.close()
    assert conns(again.got) == [30, 31, 32]  # only the connections no sink had
    assert m.sink_deduped["list"] == m.alerts - 3 > 0
