"""Reading a log as it grows: whole lines from a checkpoint on, through rotation; or standard input.

:class:`Follower` reads complete lines at a byte offset and hands them out as :class:`Batch` es, each
with the checkpoint just after it.

Rotation
--------
* rename (logrotate ``create``): the path now names another inode. The open descriptor of the old file
  is read to its end, then the new file is read from its start. On a restart, a checkpointed file that
  was renamed is found again by inode among the files beside the path (``access.log.1`` ...) and
  finished first.
* copytruncate: the same inode got shorter than the offset, or its first line changed: read again
  from the start.

A file found at start with the checkpoint's first line but shorter than its offset did not rotate: the
checkpoint is wrong (or the file was cut back). That is a :class:`~tlsdetect.stream.checkpoint.CheckpointError`
unless ``start`` says where to read (``--from-start``/``--from-end``); ``start="end"`` also starts a source
without a checkpoint at its end.

Standard input
--------------
``--source envoy:-``: :class:`StdinFollower` reads whatever a log shipper pipes in until it ends. A pipe
cannot be read again from an offset, so no checkpoint is kept: a restart starts with what comes next.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from tlsdetect.stream.checkpoint import RECOVER_HINT, Checkpoint, CheckpointError, Recover

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["HEAD_BYTES", "ROTATE_GRACE", "STDIN", "Batch", "Follower", "StdinFollower", "cut_lines", "head_hash",
           "resume_decision"]  # fmt: skip

log = logging.getLogger(__name__)

HEAD_BYTES = 1024
#: After a rename, how long the writer may still append to the old file (a last line without newline
#: is taken whole after this).
ROTATE_GRACE = 1.0
#: The ``file`` of alerts and dead letters read from standard input.
STDIN = "<stdin>"


def head_hash(first: bytes) -> str:
    """Identity of a file's content: SHA-256 of its first line (at most :data:`HEAD_BYTES`); "" when none yet."""
    cut = first.find(b"\n")
    if cut < 0 and len(first) < HEAD_BYTES:
        return ""
    return hashlib.sha256(first[: cut if 0 <= cut < HEAD_BYTES else HEAD_BYTES]).hexdigest()


def resume_decision(cp: Checkpoint | None, dev: int, ino: int, size: int, head: str) -> str:
    """What to do with the file now at the path, given the checkpoint: ``resume``, ``truncated``, ``rotated``,
    ``past_end``, ``new``.

    ``resume``: same file, read on from the offset. ``truncated``: same inode but another first line, or
    shorter than the offset with no first line to compare (copytruncate): from the start. ``rotated``: the
    path names another file; look for the checkpointed one beside it. ``past_end``: the same file (same
    first line) but shorter than the offset: the checkpoint cannot be trusted. ``new``: no checkpoint.
    """
    if cp is None:
        return "new"
    if (dev, ino) != (cp.dev, cp.ino):
        return "rotated"
    if size < cp.offset and cp.head and head == cp.head:
        return "past_end"
    if size < cp.offset or (cp.head and head != cp.head):
        return "truncated"
    return "resume"


def cut_lines(data: bytes, max_lines: int) -> bytes:
    """The longest prefix of ``data`` made of at most ``max_lines`` complete lines."""
    if max_lines <= 0:
        return b""
    if data.count(b"\n") <= max_lines:
        return data[: data.rfind(b"\n") + 1]
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return data[: int(ends[max_lines - 1]) + 1]


@dataclass(slots=True)
class Batch:
    """Complete lines of one file: bytes, number of the first line, and the checkpoint after them; or, from a
    source that decodes records itself (a receiver), ``records``: one row of named string cells per record,
    ``lines`` of them, ``data`` empty."""

    data: bytes
    first_line: int
    file: str
    end: Checkpoint
    lines: int
    born: float = field(default_factory=time.monotonic)
    records: pa.Table | None = None


class Follower:
    """Reads complete lines of one log from a checkpoint on, through rename and copytruncate rotation."""

    #: At the end of the file, whether more may still come without ``--follow`` (a file: no).
    live = False
    #: Nothing more can ever come (only a stream that ended: a file may always grow).
    ended = False

    def __init__(self, path: Path, start: Checkpoint | None, *, read_bytes: int = 32 << 20,
                 recover: Recover | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        self.recover = recover
        self.read_bytes = read_bytes
        self.fd: int | None = None
        self.file = str(self.path)
        #: The checkpoint store's key: the path the log is followed at (:class:`~tlsdetect.stream.source.Source`)
        self.key = str(self.path.resolve())
        self.dev = self.ino = 0
        self.head = ""
        self.offset = 0
        self.line = 0
        self.draining = False  # reading a rotated-away file to its end, then the path again
        self._rotated_at: float | None = None  # when the path was seen to name another file
        self._avg = 1024.0  # bytes per line, to size reads
        self._pending: Checkpoint | None = None  # the checkpoint, until the file is there
        self._waiting = False
        self.events: list[str] = []
        self._started = False  # --from-end skips what a file holds at start, not a file that appears later
        self._open_initial(start)
        self._started = True

    # -- opening
    def _open(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        self._close()
        st = os.fstat(fd)
        self.fd, self.dev, self.ino, self.file = fd, st.st_dev, st.st_ino, str(path)
        self.head = head_hash(os.pread(fd, HEAD_BYTES, 0))
        return True

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open_initial(self, cp: Checkpoint | None) -> None:
        self._pending = cp
        if not self._open(self.path):
            old = self._find_rotated(cp) if cp is not None else None
            if cp is not None and old is not None and self._open(old):
                self.offset, self.line, self.draining = cp.offset, cp.line, True
                self.events.append(f"resuming rotated file {old} at byte {cp.offset}, then {self.path}")
            elif not self._waiting:
                self._waiting = True
                self.events.append(f"waiting for {self.path} to appear")
            return
        self._pending = None
        assert self.fd is not None
        decision = resume_decision(cp, self.dev, self.ino, os.fstat(self.fd).st_size, self.head)
        if decision == "resume" and cp is not None:
            self.offset, self.line = cp.offset, cp.line
        elif decision == "rotated" and cp is not None:
            old = self._find_rotated(cp)
            if old is not None and self._open(old):
                self.offset, self.line, self.draining = cp.offset, cp.line, True
                self.events.append(f"resuming rotated file {old} at byte {cp.offset}, then {self.path}")
            else:
                self.events.append(f"checkpointed file (inode {cp.ino}) is gone; reading {self.path} from its start")
        elif decision == "truncated":
            self.events.append(f"{self.path} was truncated (copytruncate); reading it from its start")
        elif decision == "past_end" and cp is not None:
            size = os.fstat(self.fd).st_size
            if self.recover is None:
                self._close()
                raise CheckpointError(f"the checkpoint of {self.path} is at byte {cp.offset}, past the end of the "
                                      f"file ({size} bytes) with the same first line; {RECOVER_HINT}")  # fmt: skip
            self.events.append(f"the checkpoint of {self.path} is at byte {cp.offset}, past its end ({size} bytes): "
                               f"reading from its {self.recover}")  # fmt: skip
            if self.recover == "end":
                self._skip_to_end()
        elif decision == "new" and self.recover == "end" and not self._started:
            self._skip_to_end()
            self.events.append(f"no checkpoint for {self.path}: starting at its end (byte {self.offset})")

    def _skip_to_end(self) -> None:
        """Start after the last complete line now in the file (its lines counted, for the line numbers)."""
        assert self.fd is not None
        pos = lines = last_nl = 0
        while data := os.pread(self.fd, 1 << 24, pos):
            lines += data.count(b"\n")
            cut = data.rfind(b"\n")
            if cut >= 0:
                last_nl = pos + cut + 1
            pos += len(data)
        self.offset, self.line = last_nl, lines

    def _find_rotated(self, cp: Checkpoint) -> Path | None:
        with contextlib.suppress(OSError):
            for p in sorted(self.path.parent.iterdir()):
                if p.name.startswith(self.path.name) and p != self.path:
                    st = p.stat()
                    if (st.st_dev, st.st_ino) == (cp.dev, cp.ino):
                        with p.open("rb") as fh:
                            if not cp.head or head_hash(fh.read(HEAD_BYTES)) == cp.head:
                                return p
        return None

    # -- reading
    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.dev, self.ino, self.head, self.offset, self.line)

    def _switch_to_path(self) -> bool:
        """After the rotated file's end: the file now at the path, from its start."""
        if not self._open(self.path):
            return False
        self.offset, self.line, self.draining, self._rotated_at = 0, 0, False, None
        self.events.append(f"{self.path} was rotated (rename); now reading the new file")
        return True

    def _check_truncation(self) -> bool:
        """Copytruncate: shorter than the offset, or another first line (truncated and written again)."""
        assert self.fd is not None
        if self.offset == 0:
            return False
        if os.fstat(self.fd).st_size < self.offset:
            self.events.append(f"{self.file} was truncated (copytruncate); reading it from its start")
        else:
            now = head_hash(os.pread(self.fd, HEAD_BYTES, 0))
            if not self.head or now == self.head:
                self.head = now
                return False
            self.events.append(f"{self.file} was truncated and written again; reading it from its start")
        self.offset, self.line = 0, 0
        self.head = head_hash(os.pread(self.fd, HEAD_BYTES, 0))
        return True

    def _check_rotation(self) -> bool:
        """At the end of the open file: True when reading should go on (rotation or truncation found)."""
        assert self.fd is not None
        if self._check_truncation():
            return True
        if self.draining:
            return self._switch_to_path()
        try:
            pst = os.stat(self.path)
        except FileNotFoundError:
            return False
        if (pst.st_dev, pst.st_ino) != (self.dev, self.ino):
            # renamed away: what the writer adds before it reopens the path is read first
            if self._rotated_at is None:
                self._rotated_at = time.monotonic()
                return True
            old_more = os.fstat(self.fd).st_size > self.offset
            writer_moved = pst.st_size > 0  # the writer reopened the path and wrote there
            if self._rotated_for(ROTATE_GRACE) or (writer_moved and not old_more):
                return True if old_more else self._switch_to_path()
            return old_more  # lines may still come to the old file: read on, or look again at the next poll
        return False

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        """The next complete lines (at most ``max_lines``), None at the end for now.

        ``final``: a last line without its newline at the end of the file is taken too (a batch run; also
        the end of a rotated-away file, once the writer has had :data:`ROTATE_GRACE` seconds to finish it).
        """
        if self.fd is None:
            self._open_initial(self._pending)
            if self.fd is None:
                return None
        self._check_truncation()
        for _ in range(3):
            assert self.fd is not None
            size = min(self.read_bytes, max(1 << 16, int(max_lines * self._avg * 1.25)))
            data = os.pread(self.fd, size, self.offset)
            chunk = cut_lines(data, max_lines)
            if not chunk and data:  # no whole line in the read: a long line, or a last one still being written
                pos = self.offset + len(data)
                while more := os.pread(self.fd, self.read_bytes, pos):
                    nl = more.find(b"\n")
                    if nl >= 0:
                        data += more[: nl + 1]
                        break
                    data += more
                    pos += len(more)
                if data.endswith(b"\n") or final or self._rotated_for(ROTATE_GRACE):
                    chunk = data
            if chunk:
                first = self.line + 1
                self.offset += len(chunk)
                n = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
                self.line += n
                self._avg = 0.8 * self._avg + 0.2 * (len(chunk) / n)
                if not self.head:
                    self.head = head_hash(os.pread(self.fd, HEAD_BYTES, 0))
                return Batch(chunk, first, self.file, self.checkpoint, n)
            if not self._check_rotation():
                return None
        return None

    def _rotated_for(self, seconds: float) -> bool:
        """The open file was renamed away (or is a rotated file being finished) at least ``seconds`` ago."""
        if self.draining:
            return True
        return self._rotated_at is not None and time.monotonic() - self._rotated_at >= seconds

    def lag_bytes(self) -> int:
        if self.fd is None:
            return 0
        return max(0, os.fstat(self.fd).st_size - self.offset)

    def close(self) -> None:
        self._close()


class StdinFollower:
    """Reads complete lines from a byte stream (standard input) until it ends, in the shape of :class:`Follower`.

    A thread does the blocking reads, so the stream's loop keeps its batch deadline and drains spools while
    the writer is quiet. There is no checkpoint to resume from: a pipe cannot be read again from an offset.
    """

    live = True

    def __init__(self, stream: BinaryIO, *, read_bytes: int = 32 << 20, chunk: int = 1 << 16) -> None:
        self.file = STDIN
        self.key = ""  # a pipe has no offsets: no checkpoint
        self.read_bytes = read_bytes
        self.events: list[str] = []
        self.ended = False
        self.offset = 0
        self.line = 0
        self._pending = bytearray()
        self._eof = False
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=max(4, read_bytes // chunk))  # backpressure
        threading.Thread(target=self._pump, args=(stream, chunk), daemon=True, name="stdin").start()

    def _pump(self, stream: BinaryIO, chunk: int) -> None:
        read = getattr(stream, "read1", stream.read)  # read1: what the pipe has, without waiting for a full chunk
        try:
            while data := read(chunk):
                self._chunks.put(bytes(data))
        except (OSError, ValueError) as exc:
            log.error("reading standard input failed (%s): taking it as its end", exc)
        finally:
            self._chunks.put(b"")  # the end

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(0, 0, "", self.offset, self.line)

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        """The next complete lines that have arrived (at most ``max_lines``); None when none has for now, or
        at the end (then :attr:`ended`). A last line without its newline is taken at the end of the stream."""
        while not self._eof and len(self._pending) < self.read_bytes:
            try:
                data = self._chunks.get_nowait()
            except queue.Empty:
                break
            if not data:
                self._eof = True
            self._pending += data
        chunk = bytes(cut_lines(self._pending, max_lines))  # type: ignore[arg-type]
        if not chunk and self._eof and self._pending and max_lines > 0:
            chunk = bytes(self._pending)
        if not chunk:
            self.ended = self._eof and not self._pending
            return None
        del self._pending[: len(chunk)]
        first = self.line + 1
        n = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        self.offset += len(chunk)
        self.line += n
        return Batch(chunk, first, self.file, self.checkpoint, n)

    def lag_bytes(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        pass  # the reading thread is a daemon: it ends with the process, or when the writer closes the pipe
