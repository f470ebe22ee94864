"""``stream/checkpoint.py``: checkpoints in SQLite, and a state directory that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.stream.checkpoint import Checkpoint, CheckpointStore, StateDirError, check_state_dir


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
