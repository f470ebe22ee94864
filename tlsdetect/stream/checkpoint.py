"""The stream's checkpoint: where each source stands, kept in SQLite under ``--state``.

Per source path: the file identity (``st_dev``, ``st_ino`` and the SHA-256 of its first line, so a
reused inode is not mistaken for the same file), the byte offset just after the last delivered line
and that line's number. The streamer commits it only after every sink took the batch, so a crash
replays a batch and never skips one.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DB_NAME", "Checkpoint", "CheckpointStore", "StateDirError", "check_state_dir"]

#: The checkpoint database's file name in the state directory.
DB_NAME = "stream.sqlite"


class StateDirError(ValueError):
    """The state directory cannot be created or written (one line for the user, no traceback)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source stands: the file (device, inode, first-line hash), offset after the last line, its number."""

    dev: int
    ino: int
    head: str
    offset: int
    line: int  # number of lines before ``offset`` (the next line is ``line + 1``)


def check_state_dir(state_dir: Path) -> Path:
    """Create the state directory (with its parents) and check that files can be written in it.

    Raises :class:`StateDirError` naming the directory and what is wrong, before anything is read.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(f"--state {state_dir}: exists and is not a directory") from None
    except OSError as exc:
        raise StateDirError(f"--state {state_dir}: cannot be created ({exc.strerror or exc})") from None
    db = state_dir / DB_NAME
    if db.exists() and not db.is_file():
        raise StateDirError(f"--state {state_dir}: {db} is not a file")
    try:  # os.access says yes to root on a read-only file system: write a file instead
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        raise StateDirError(f"--state {state_dir}: cannot be written ({exc.strerror or exc})") from None
    return state_dir


class CheckpointStore:
    """Checkpoints in SQLite (``STATE/stream.sqlite``), one row per source, committed atomically."""

    def __init__(self, state_dir: Path) -> None:
        check_state_dir(state_dir)
        try:
            self.db = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS checkpoint (source TEXT PRIMARY KEY, dev INTEGER, ino INTEGER,"
                " head TEXT, offset INTEGER, line INTEGER, updated REAL)"
            )
        except sqlite3.Error as exc:
            raise StateDirError(f"--state {state_dir}: {DB_NAME}: {exc}") from None

    def load(self, source: str) -> Checkpoint | None:
        sql = "SELECT dev, ino, head, offset, line FROM checkpoint WHERE source = ?"
        row = self.db.execute(sql, (source,)).fetchone()
        return Checkpoint(*row) if row else None

    def commit(self, source: str, cp: Checkpoint) -> None:
        self.db.execute(
            "INSERT INTO checkpoint VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET"
            " dev=excluded.dev, ino=excluded.ino, head=excluded.head, offset=excluded.offset, line=excluded.line,"
            " updated=excluded.updated",
            (source, cp.dev, cp.ino, cp.head, cp.offset, cp.line, time.time()),
        )

    def close(self) -> None:
        self.db.close()
