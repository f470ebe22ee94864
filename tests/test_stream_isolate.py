"""``stream/isolate.py``: a line that kills the process costs that line, not the stream (issue 18, row 1).

The crash is real: the processor below sends itself SIGSEGV on a poison line, as a native parser would.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest

from tests.test_stream import SAMPLE_BASELINE, ListSink, conns, line
from tlsdetect.detect.baseline import Baseline
from tlsdetect.stream.checkpoint import CheckpointStore
from tlsdetect.stream.isolate import InFlight, Suspect, crash_reason, isolated
from tlsdetect.stream.loop import Processor, Scored, StreamConfig, Streamer

POISON = b'{"poison": true}\n'


class Poisoned(Processor):
    """The stream's processor, except that a batch holding the poison line kills its process."""

    def __call__(self, data: bytes, first_line: int, file: str) -> Scored:
        if POISON.strip() in data:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().__call__(data, first_line, file)


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline.load(SAMPLE_BASELINE)


def _log(path: Path, poison_at: int, n: int) -> None:
    path.write_bytes(b"".join(POISON if i == poison_at else line(i).encode() for i in range(n)))


def test_isolated_dead_letters_only_the_line_that_kills(baseline: Baseline) -> None:
    data = b"".join(POISON if i == 5 else line(i).encode() for i in range(9))
    got = isolated(Poisoned(baseline), data, 11, "x.log")
    assert sorted(conns(got.alerts)) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert [(d[1], d[2]) for d in got.dead] == [(16, crash_reason(-signal.SIGSEGV))]
    assert "SIGSEGV" in got.dead[0][2]
    assert got.dead[0][3] == POISON.strip()
    assert (got.rows, got.lines, got.weird) == (8, 9, {"crashed the parser": 1})


def test_isolated_without_a_crash_equals_the_processor(baseline: Baseline) -> None:
    data = b"".join(line(i).encode() for i in range(4)) + b"{broken\n"
    direct = Processor(baseline)(data, 1, "x.log")
    got = isolated(Processor(baseline), data, 1, "x.log")
    assert (conns(got.alerts), got.rows, got.lines, got.dead, got.weird) == (
        conns(direct.alerts), direct.rows, direct.lines, direct.dead, direct.weird)


def test_suspect_overlap_and_a_torn_marker(tmp_path: Path) -> None:
    s = Suspect("a.log", 10, 19)
    assert [s.overlaps("a.log", 15, 100), s.overlaps("a.log", 1, 10), s.overlaps("a.log", 19, 1)] == [True] * 3
    assert [s.overlaps("a.log", 20, 5), s.overlaps("a.log", 1, 9), s.overlaps("b.log", 10, 5)] == [False] * 3
    mark = InFlight(tmp_path, "/logs/a.log")
    assert mark.left_behind() is None
    mark.mark("a.log", 10, 10)
    assert mark.left_behind() == s
    assert InFlight(tmp_path, "/logs/b.log").left_behind() is None  # one marker per source
    mark.path.write_text('{"file": "a.log", "fir')
    assert mark.left_behind() is None  # torn: unknown, not a traceback
    mark.clear()
    assert not mark.path.exists()


def _run_and_die(tmp_path: Path, baseline: Baseline) -> int | None:
    """A stream over the log in a forked process, which the poison line kills for real."""
    def target() -> None:
        s = Streamer(tmp_path / "access.log", Poisoned(baseline), [ListSink()], CheckpointStore(tmp_path / "state"),
                     dead_letter=tmp_path / "dead.jsonl", config=StreamConfig(batch_lines=4, batch_ms=50, poll_ms=5))
        s.run()
        s.close()

    proc = mp.get_context("fork").Process(target=target)
    proc.start()
    proc.join(60)
    return proc.exitcode


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crash_loop_costs_one_line(tmp_path: Path, baseline: Baseline, workers: int) -> None:
    _log(tmp_path / "access.log", poison_at=6, n=12)
    cfg = StreamConfig(batch_lines=4, batch_ms=50, poll_ms=5, workers=workers)
    if workers == 1:
        # the first run dies on the poison line: the checkpoint stays before its batch, the marker names it
        assert _run_and_die(tmp_path, baseline) == -signal.SIGSEGV
        assert any(p.name.startswith("stream.inflight-") for p in (tmp_path / "state").iterdir())
    sink = ListSink()
    s = Streamer(tmp_path / "access.log", Poisoned(baseline), [sink], CheckpointStore(tmp_path / "state"),
                 dead_letter=tmp_path / "dead.jsonl", config=cfg)
    m = s.run()
    s.close()
    # every other line delivered, once (the dead run had delivered and checkpointed the first batch, lines
    # 1-4); the poison line dead-lettered with the signal; the stream went on
    first = 4 if workers == 1 else 0
    assert sorted(conns(sink.got)) == [i for i in range(first, 12) if i != 6]
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["line"], "SIGSEGV" in d["reason"]) for d in dead] == [(7, True)]
    assert m.weird == {"crashed the parser": 1}
    assert not any(p.name.startswith("stream.inflight-") for p in (tmp_path / "state").iterdir())  # a clean end
    # the next run starts after the poison line: nothing again, no crash
    again = ListSink()
    s = Streamer(tmp_path / "access.log", Poisoned(baseline), [again], CheckpointStore(tmp_path / "state"),
                 dead_letter=tmp_path / "dead.jsonl", config=cfg)
    s.run()
    s.close()
    assert again.got == []
