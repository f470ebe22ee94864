"""``stream/follow.py``: whole lines from a checkpoint on, through rename and copytruncate, and standard input."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_stream import line, write
from tlsdetect.stream.checkpoint import Checkpoint
from tlsdetect.stream.follow import Follower, cut_lines, head_hash, resume_decision


def test_resume_decision() -> None:
    cp = Checkpoint(1, 2, "h", 100, 10)
    assert resume_decision(None, 1, 2, 0, "") == "new"
    assert resume_decision(cp, 1, 2, 150, "h") == "resume"
    assert resume_decision(cp, 1, 2, 100, "h") == "resume"
    assert resume_decision(cp, 1, 2, 50, "") == "truncated"  # copytruncate, nothing written yet
    assert resume_decision(cp, 1, 2, 50, "h") == "past_end"  # same first line, shorter: the checkpoint is wrong
    assert resume_decision(cp, 1, 2, 500, "other") == "truncated"  # truncated and grown past the offset
    assert resume_decision(cp, 1, 3, 500, "h") == "rotated"  # rename
    assert resume_decision(Checkpoint(1, 2, "", 0, 0), 1, 2, 10, "x") == "resume"


def test_cut_lines_and_head() -> None:
    assert cut_lines(b"a\nb\nc", 5) == b"a\nb\n"
    assert cut_lines(b"a\nb\nc\n", 2) == b"a\nb\n"
    assert cut_lines(b"abc", 3) == b""
    assert head_hash(b"abc") == ""  # no complete first line yet
    assert head_hash(b"abc\nd") == head_hash(b"abc\nxyz")
    assert head_hash(b"x" * 2000) != ""


def test_follower_rename_rotation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, range(3))
    f = Follower(log, None)
    b = f.read(100)
    assert b is not None
    assert (b.first_line, b.lines) == (1, 3)
    assert f.read(100) is None
    write(log, range(3, 5))  # written before the rename, read after it
    log.rename(tmp_path / "access.log.1")
    write(log, range(5, 7))
    got = []
    while (b := f.read(100)) is not None:
        got.append(b)
    assert [(x.file, x.first_line, x.lines) for x in got] == [(str(log), 4, 2), (str(log), 1, 2)]
    assert got[1].end.ino == os.stat(log).st_ino
    assert any("rotated" in e for e in f.events)


def test_follower_rename_waits_for_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tlsdetect.stream.follow as stream_mod

    log = tmp_path / "access.log"
    write(log, range(2))
    f = Follower(log, None)
    assert f.read(100) is not None
    log.rename(tmp_path / "access.log.1")
    log.touch()  # logrotate created the new file; the writer has not reopened it yet
    assert f.read(100) is None
    with (tmp_path / "access.log.1").open("a") as fh:  # the writer still appends to the old file
        fh.write(line(2) + line(3)[:30])  # ... and dies in the middle of a line
    b = f.read(100)
    assert b is not None
    assert (b.file, b.first_line, b.lines) == (str(log), 3, 1)
    assert f.read(100) is None  # half a line: wait for the grace
    monkeypatch.setattr(stream_mod, "ROTATE_GRACE", 0.0)
    b = f.read(100)
    assert b is not None
    assert b.data == line(3)[:30].encode()  # taken whole, then the dead letter's business
    write(log, range(4, 5))
    b = f.read(100)
    assert b is not None
    assert (b.file, b.first_line, b.lines) == (str(log), 1, 1)
    assert b.end.ino == os.stat(log).st_ino


def test_follower_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, range(5))
    f = Follower(log, None)
    assert f.read(100) is not None
    shutil.copyfile(log, tmp_path / "access.log.1")
    with log.open("r+") as fh:
        fh.truncate(0)
    write(log, range(5, 7))  # shorter than the offset
    b = f.read(100)
    assert b is not None
    assert (b.first_line, b.lines) == (1, 2)
    assert b"1029" in b.data  # connection 5
    # truncated again and grown past the old offset before the next look: the first line tells
    with log.open("r+") as fh:
        fh.truncate(0)
    write(log, range(100, 110))
    b = f.read(100)
    assert b is not None
    assert (b.first_line, b.lines) == (1, 10)


def test_follower_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    text = line(1)
    log.write_text(line(0) + text[:20])
    f = Follower(log, None)
    b = f.read(100)
    assert b is not None
    assert b.lines == 1
    assert f.read(100) is None  # half a line: wait for its end
    with log.open("a") as fh:
        fh.write(text[20:])
    b = f.read(100)
    assert b is not None
    assert b.data == text.encode()


def test_restart_finds_renamed_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, range(3))
    f = Follower(log, None)
    b = f.read(100)
    assert b is not None
    cp = b.end
    f.close()
    write(log, range(3, 5))
    log.rename(tmp_path / "access.log.1")
    write(log, range(5, 8))
    g = Follower(log, cp)
    got = []
    while (b := g.read(100)) is not None:
        got.append((b.first_line, b.lines))
    assert got == [(4, 2), (1, 3)]


def test_restart_while_the_path_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, range(3))
    f = Follower(log, None)
    b = f.read(2)
    assert b is not None
    f.close()
    log.rename(tmp_path / "access.log.1")  # rotated; the new file is not there yet
    g = Follower(log, b.end)
    b2 = g.read(100)
    assert b2 is not None
    assert (b2.first_line, b2.lines) == (3, 1)
    h = Follower(tmp_path / "missing.log", Checkpoint(1, 2, "x", 10, 1))
    assert h.read(10) is None
    write(tmp_path / "missing.log", range(2))  # another file: from its start
    b3 = h.read(10)
    assert b3 is not None
    assert (b3.first_line, b3.lines) == (1, 2)


def test_stdin_follower_lines_as_they_come() -> None:
    """issue 14 item 14: lines from a real pipe, whole lines only, the last one without newline at the end."""
    from tlsdetect.stream.follow import STDIN, StdinFollower

    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader:
        f = StdinFollower(reader)

        def until(pred: Callable[[], Any]) -> Any:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                got = pred()
                if got:
                    return got
                time.sleep(0.01)
            raise AssertionError("timed out")

        os.write(w, line(0).encode() + b'{"half": ')
        b = until(lambda: f.read(100))
        assert (b.data, b.first_line, b.lines, b.file) == (line(0).encode(), 1, 1, STDIN)
        assert f.read(100) is None
        assert not f.ended
        os.write(w, b'1}\n' + line(1).encode() + line(2).encode())
        b = until(lambda: f.read(2))
        assert (b.data, b.first_line, b.lines) == (b'{"half": 1}\n' + line(1).encode(), 2, 2)
        b = until(lambda: f.read(100))
        assert (b.data, b.first_line, b.lines) == (line(2).encode(), 4, 1)
        os.write(w, b"last without newline")
        time.sleep(0.05)
        assert f.read(100) is None  # not whole until the stream ends
        os.close(w)
        b = until(lambda: f.read(100))
        assert (b.data, b.first_line, b.lines) == (b"last without newline", 5, 1)
        assert f.read(100) is None
        assert f.ended
