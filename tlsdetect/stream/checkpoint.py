"""The stream's checkpoint: where each source stands, kept in SQLite under ``--state``.

Per source path: the file identity (``st_dev``, ``st_ino`` and the SHA-256 of its first line, so a
reused inode is not mistaken for the same file), the byte offset just after the last delivered line
and that line's number. The streamer commits it only after every sink took the batch, so a crash
replays a batch and never skips one. The same database holds the ids of the alerts each sink took
(:mod:`tlsdetect.stream.dedupe`), so a replay does not send them again.

A checkpoint that cannot be trusted is never taken as "start from the beginning": a database that was
there and is gone (``stream.created`` says one was made), an empty, truncated or foreign file, a table
of another shape, or a row with impossible values is a :class:`CheckpointError` (one line for the user),
unless the caller says what to do (``recover="start"`` or ``"end"``: the broken file is kept aside as
``stream.sqlite.broken-TIME`` and a new one is made).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DB_NAME", "MARKER", "Checkpoint", "CheckpointError", "CheckpointStore", "Recover", "StateDirError",
           "check_state_dir"]  # fmt: skip

log = logging.getLogger("tlsdetect.stream.loop")

#: The checkpoint database's file name in the state directory.
DB_NAME = "stream.sqlite"
#: Written beside the database once it exists: without it, a missing database is a first run.
MARKER = "stream.created"
#: What to do without a usable checkpoint: read the log from its start, or from its end.
Recover = Literal["start", "end"]
#: The checkpoint table's columns, in order (a table of another shape is not ours).
COLUMNS = ("source", "dev", "ino", "head", "offset", "line", "updated")
RECOVER_HINT = ("rerun with --from-start (read the log again from its start; alerts still in the dedupe window are "
                "not sent twice) or --from-end (go on at the end of the log; what it holds now is not scored)")


class StateDirError(ValueError):
    """The state directory cannot be created or written (one line for the user, no traceback)."""


class CheckpointError(StateDirError):
    """The checkpoint is lost or cannot be trusted, and nobody said where to start (one line, with the way out)."""


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


def _problem(db: sqlite3.Connection) -> str | None:
    """What is wrong with an opened database (None: a checkpoint table of our shape, or no table yet)."""
    check = db.execute("PRAGMA quick_check").fetchall()
    if check != [("ok",)]:
        return f"damaged ({'; '.join(str(r[0]) for r in check[:2])})"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "checkpoint" not in tables:
        return f"holds no checkpoint table (tables: {', '.join(sorted(tables))})" if tables else None
    cols = tuple(r[1] for r in db.execute("PRAGMA table_info(checkpoint)"))
    if cols != COLUMNS:
        return f"its checkpoint table has the columns ({', '.join(cols)}), not ({', '.join(COLUMNS)})"
    return None


class CheckpointStore:
    """Checkpoints in SQLite (``STATE/stream.sqlite``), one row per source, committed atomically.

    ``recover``: what to do when the database is lost or broken (see the module docstring); None raises
    :class:`CheckpointError`. After a recovery :attr:`recovered` says why, for the log.
    """

    def __init__(self, state_dir: Path, *, recover: Recover | None = None) -> None:
        check_state_dir(state_dir)
        self.state_dir, self.path = state_dir, state_dir / DB_NAME
        self.recover = recover
        self.recovered: str | None = None
        db, problem = self._open()
        if problem is not None:
            if db is not None:
                db.close()
            if recover is None:
                raise CheckpointError(f"--state {state_dir}: {DB_NAME} {problem}: the checkpoint is lost; "
                                      f"{RECOVER_HINT}")  # fmt: skip
            self._set_aside()
            self.recovered = problem
            log.warning("%s %s: kept aside, starting a new checkpoint from the %s of the log", self.path, problem,
                        recover)  # fmt: skip
            db, again = self._open()
            if again is not None or db is None:  # a fresh file in a directory we can write: not expected
                raise StateDirError(f"--state {state_dir}: {DB_NAME} {again}")
        assert db is not None
        self.db = db
        try:
            (state_dir / MARKER).write_text("tlsdetect stream: the checkpoint database was created here\n")
        except OSError as exc:
            raise StateDirError(f"--state {state_dir}: cannot be written ({exc.strerror or exc})") from None

    def _open(self) -> tuple[sqlite3.Connection | None, str | None]:
        """Open (or create) the database; what makes it untrustworthy, if anything."""
        existed = self.path.exists()
        if not existed and (self.state_dir / MARKER).exists():
            return None, "is missing (the state directory had one)"  # not opened: connecting would create it
        if existed and self.path.stat().st_size == 0:
            return None, "is empty"
        db = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            problem = _problem(db)
            if problem is not None:
                return db, problem
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"CREATE TABLE IF NOT EXISTS checkpoint ({COLUMNS[0]} TEXT PRIMARY KEY, dev INTEGER,"
                       " ino INTEGER, head TEXT, offset INTEGER, line INTEGER, updated REAL)")  # fmt: skip
        except sqlite3.DatabaseError as exc:  # not a database, or damaged beyond quick_check's reach
            return db, f"is not a usable database ({exc})"
        return db, None

    def _set_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                p.rename(Path(f"{self.path}.broken-{stamp}{suffix}"))
        (self.state_dir / MARKER).unlink(missing_ok=True)  # written again with the new database

    def load(self, source: str) -> Checkpoint | None:
        """The source's checkpoint, None when it has none; :class:`CheckpointError` when its row is impossible."""
        sql = "SELECT dev, ino, head, offset, line FROM checkpoint WHERE source = ?"
        try:
            row = self.db.execute(sql, (source,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(f"--state {self.state_dir}: {DB_NAME} cannot be read ({exc}): the checkpoint is "
                                  f"lost; {RECOVER_HINT}") from None  # fmt: skip
        if row is None:
            return None
        dev, ino, head, offset, line = row
        ints = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (dev, ino, offset, line))
        if not ints or not isinstance(head, str) or (line > offset):
            if self.recover is None:
                raise CheckpointError(f"--state {self.state_dir}: {DB_NAME}: the checkpoint of {source} holds "
                                      f"impossible values {row!r}; {RECOVER_HINT}")  # fmt: skip
            log.warning("the checkpoint of %s holds impossible values %r: reading from the %s", source, row,
                        self.recover)  # fmt: skip
            self.recovered = f"impossible checkpoint values {row!r}"
            return None
        return Checkpoint(dev, ino, head, offset, line)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write (the checkpoint with the dedupe ids of the same step)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def commit(self, source: str, cp: Checkpoint) -> None:
        self.db.execute(
            "INSERT INTO checkpoint VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET"
            " dev=excluded.dev, ino=excluded.ino, head=excluded.head, offset=excluded.offset, line=excluded.line,"
            " updated=excluded.updated",
            (source, cp.dev, cp.ino, cp.head, cp.offset, cp.line, time.time()),
        )

    def close(self) -> None:
        self.db.close()
