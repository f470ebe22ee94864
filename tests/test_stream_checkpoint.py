"""``stream/checkpoint.py``: checkpoints in SQLite, and a state directory that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.stream.checkpoint import Checkpoint, CheckpointError, CheckpointStore, StateDirError, check_state_dir


def test_commit_and_load(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "a" / "b")  # created with its parents
    assert store.load("x") is None
    store.commit("x", Checkpoint(1, 2, "h", 10, 3))
    store.commit("x", Checkpoint(1, 2, "h", 20, 5))
    store.close()
    assert CheckpointStore(tmp_path / "a" / "b").load("x") == Checkpoint(1, 2, "h", 20, 5)


def test_state_dir_errors_name_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").touch()
    with pytest.raises(StateDirError, match="exists and is not a directory"):
        check_state_dir(tmp_path / "file")
    (tmp_path / "st" / "stream.sqlite").mkdir(parents=True)
    with pytest.raises(StateDirError, match=r"stream\.sqlite is not a file"):
        CheckpointStore(tmp_path / "st")

    def refuse(self: Path, *_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(StateDirError, match=r"cannot be created \(Permission denied\)"):
        check_state_dir(tmp_path / "new")


@pytest.mark.parametrize("case", ["mkdir", "sqlite"])
def test_cli_unusable_state_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """issue 14 leftover: `stream --state DIR` that cannot be created or used ends in one line, no traceback."""
    log = tmp_path / "access.log"
    log.write_text("")
    state = tmp_path / "state"
    if case == "mkdir":
        def refuse(self: Path, *_: object, **__: object) -> None:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "mkdir", refuse)
        want = f"Error: --state {state}: cannot be created (Permission denied)"
    else:
        (state / "stream.sqlite").mkdir(parents=True)
        want = f"Error: --state {state}: {state / 'stream.sqlite'} is not a file"
    res = CliRunner().invoke(main, ["stream", "--source", f"envoy:{log}", "--sink", "jsonl:-", "--state", str(state)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [want]
    assert res.exception is None or isinstance(res.exception, SystemExit)


# ------------------------------------------------------- issue 18 #10: a checkpoint that cannot be trusted


def _break(state: Path, how: str) -> None:
    db = state / "stream.sqlite"
    if how == "lost":
        for p in state.glob("stream.sqlite*"):
            p.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2] or data[:100])
    elif how == "garbage":
        db.write_bytes(b"GARBAGE\n" * 600)
    elif how == "wrong-schema":
        import sqlite3

        for p in state.glob("stream.sqlite*"):
            p.unlink()
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE checkpoint (source TEXT PRIMARY KEY, position INTEGER)")
        con.commit()
        con.close()


def _filled(state: Path) -> None:
    store = CheckpointStore(state)
    store.commit("x", Checkpoint(1, 2, "h", 20, 5))
    for i in range(300):  # pages enough that half the file is a damaged database, not an empty one
        store.commit(f"s{i}", Checkpoint(1, i, "h" * 64, 20, 5))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


@pytest.mark.parametrize("how", ["lost", "empty", "truncated", "garbage", "wrong-schema"])
def test_broken_checkpoint_is_an_error_unless_told(tmp_path: Path, how: str) -> None:
    """Each of these was a silent replay of the whole log (or a traceback for garbage)."""
    state = tmp_path / "st"
    _filled(state)
    _break(state, how)
    with pytest.raises(CheckpointError, match=r"the checkpoint is lost; rerun with --from-start .* or --from-end"):
        CheckpointStore(state)
    assert (state / "stream.sqlite").exists() == (how != "lost")  # nothing was touched
    store = CheckpointStore(state, recover="start")
    assert store.recovered is not None
    assert store.load("x") is None
    store.commit("x", Checkpoint(1, 2, "h", 7, 1))
    store.close()
    assert CheckpointStore(state).load("x") == Checkpoint(1, 2, "h", 7, 1)  # a new, good one
    if how != "lost":
        assert len(list(state.glob("stream.sqlite.broken-*"))) >= 1  # the broken file is kept aside


def test_first_run_and_an_old_database_are_fine(tmp_path: Path) -> None:
    import sqlite3

    assert CheckpointStore(tmp_path / "new").load("x") is None  # no database, no marker: a first run
    old = tmp_path / "old"
    old.mkdir()
    con = sqlite3.connect(old / "stream.sqlite")  # the layout before the marker and the dedupe tables
    con.execute("CREATE TABLE checkpoint (source TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, head TEXT,"
                " offset INTEGER, line INTEGER, updated REAL)")  # fmt: skip
    con.execute("INSERT INTO checkpoint VALUES ('x', 1, 2, 'h', 20, 5, 0)")
    con.commit()
    con.close()
    assert CheckpointStore(old).load("x") == Checkpoint(1, 2, "h", 20, 5)


def test_impossible_row_is_an_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.db.execute("INSERT INTO checkpoint VALUES ('x', 1, 2, 'h', -5, 3, 0)")
    with pytest.raises(CheckpointError, match="impossible values"):
        store.load("x")
    store.close()
    assert CheckpointStore(tmp_path, recover="end").load("x") is None


def _args(tmp_path: Path, *extra: str) -> list[str]:
    from tests.test_stream import SAMPLE_BASELINE

    return ["stream", "--baseline", str(SAMPLE_BASELINE), "--source", f"envoy:{tmp_path / 'access.log'}", "--sink",
            f"jsonl:{tmp_path / 'a.jsonl'}", "--state", str(tmp_path / "st"), *extra]  # fmt: skip


@pytest.mark.parametrize("how", ["garbage", "past-end"])
def test_cli_broken_checkpoint_one_line_then_from_start_or_end(tmp_path: Path, how: str) -> None:
    from tests.test_stream import write

    log = tmp_path / "access.log"
    write(log, range(8))
    assert CliRunner().invoke(main, _args(tmp_path)).exit_code == 0
    if how == "garbage":
        (tmp_path / "st" / "stream.sqlite").write_bytes(b"\x00garbage" * 1000)
        for p in (tmp_path / "st").glob("stream.sqlite-*"):
            p.unlink()
        want = f"Error: --state {tmp_path / 'st'}: stream.sqlite is not a usable database"
    else:  # the log keeps its first line but is shorter than the offset (a wrong offset, not a rotation)
        data = log.read_bytes()
        log.write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
        want = f"Error: the checkpoint of {log} is at byte {len(data)}, past the end of the file"
    res = CliRunner().invoke(main, _args(tmp_path))
    assert res.exit_code == 1
    assert len(res.output.strip().splitlines()) == 1
    assert res.output.startswith(want), res.output
    assert "--from-start" in res.output
    assert "--from-end" in res.output
    write(log, range(8, 10))
    res = CliRunner().invoke(main, _args(tmp_path, "--from-end"))
    assert res.exit_code == 0, res.output
    assert "0 lines" in res.output  # at the end: nothing of what the log holds is scored again
    write(log, range(10, 12))
    res = CliRunner().invoke(main, _args(tmp_path, "--from-start"))  # the new checkpoint is good: flags unused
    assert "2 lines, 2 connections, 2 alerts" in res.output
