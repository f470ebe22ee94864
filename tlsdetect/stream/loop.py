"""``tlsdetect stream``: follow an Envoy access log, score each line, deliver alerts to sinks, checkpoint.

Pipeline
--------
:class:`Follower` reads whole lines from the log at a byte offset, surviving rotation; the streamer
groups them into micro-batches (up to ``batch_lines`` lines, or whatever is there when the follower
reaches the end of the file, or after ``batch_ms``), parses each batch with
:func:`tlsdetect.readers.envoy.parse_envoy_lines` and scores it with :func:`tlsdetect.detect.scoring.score`
(the same code as ``tlsdetect detect``), turns the rows whose verdict is not ``ok`` into alerts,
hands them to every sink and, only once every sink acknowledged (delivered, or spooled on disk for a
sink that is down), commits the checkpoint. A crash between delivery and commit replays that batch:
at-least-once, and no duplicate where the sink dedupes on the alert id.

Checkpoint
----------
SQLite ``stream.sqlite`` in ``--state``: per source path, the file identity (``st_dev``, ``st_ino`` and
the SHA-256 of the file's first line, so a reused inode is not mistaken for the same file), the byte
offset just after the last delivered line and that line's number.

Rotation
--------
* rename (logrotate ``create``): the path now names another inode. The open descriptor of the old file
  is read to its end, then the new file is read from its start. On a restart, a checkpointed file that
  was renamed is found again by inode among the files beside the path (``access.log.1`` ...) and
  finished first.
* copytruncate: the same inode got shorter than the offset, or its first line changed: read again
  from the start.

Standard input
--------------
``--source envoy:-``: :class:`StdinFollower` reads whatever a log shipper pipes in until it ends. A pipe
cannot be read again from an offset, so no checkpoint is kept: a restart starts with what comes next.

Alert ids
---------
``id`` = the first 32 hex digits of SHA-256 over the *connection* as the line records it: START_TIME,
client ip:port, server ip:port, Envoy connection id, JA4, JA3, client-certificate SHA-256 and SNI.
It does not depend on the file, offset or rotation, so a replay after a crash (or of a rotated copy)
yields the same ids; a sink or collector dedupes on it (``event.id`` in ECS, ``id`` in the syslog
structured data, ``externalId`` in CEF).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.scoring import score
from tlsdetect.readers.envoy import parse_envoy_lines
from tlsdetect.readers.logs import DeadLetter, LogStats
from tlsdetect.sinks.alerts.spool import AlertSink, SinkError, SinkRejectedError, Spooled, SpoolFullError
from tlsdetect.sinks.files import _plain

__all__ = [
    "ALERT_FIELDS", "STDIN", "Batch", "Checkpoint", "CheckpointStore", "Follower", "Metrics", "Processor",
    "StdinFollower", "Streamer", "alert_id", "alerts_of", "open_sink", "resume_decision",
]  # fmt: skip

log = logging.getLogger("tlsdetect.stream.loop")

HEAD_BYTES = 1024
#: After a rename, how long the writer may still append to the old file (a last line without newline
#: is taken whole after this).
ROTATE_GRACE = 1.0
#: The ``file`` of alerts and dead letters read from standard input.
STDIN = "<stdin>"
ID_FIELDS = ("ts", "client_ip", "client_port", "server_ip", "server_port", "conn_id", "ja4", "ja3",
             "peer_cert_sha256", "sni")  # fmt: skip
ALERT_FIELDS = (
    "ts", "client_ip", "client_port", "server_ip", "server_port", "conn_id", "sni", "tls_version", "ja3", "ja4",
    "peer_subject", "peer_issuer", "peer_cert_sha256", "peer_uri_san", "server_subject", "server_issuer",
    "server_cert_sha256", "user_agent", "client_id", "issuer_class", "known_product", "score", "verdict",
    "reasons", "compared",
)  # fmt: skip


# ------------------------------------------------------------------------------------- pure logic


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source stands: the file (device, inode, first-line hash), offset after the last line, its number."""

    dev: int
    ino: int
    head: str
    offset: int
    line: int  # number of lines before ``offset`` (the next line is ``line + 1``)


def head_hash(first: bytes) -> str:
    """Identity of a file's content: SHA-256 of its first line (at most :data:`HEAD_BYTES`); "" when none yet."""
    cut = first.find(b"\n")
    if cut < 0 and len(first) < HEAD_BYTES:
        return ""
    return hashlib.sha256(first[: cut if 0 <= cut < HEAD_BYTES else HEAD_BYTES]).hexdigest()


def resume_decision(cp: Checkpoint | None, dev: int, ino: int, size: int, head: str) -> str:
    """What to do with the file now at the path, given the checkpoint: ``resume``, ``truncated``, ``rotated``, ``new``.

    ``resume``: same file, read on from the offset. ``truncated``: same inode but shorter than the offset or
    another first line (copytruncate): from the start. ``rotated``: the path names another file; look for
    the checkpointed one beside it. ``new``: no checkpoint.
    """
    if cp is None:
        return "new"
    if (dev, ino) != (cp.dev, cp.ino):
        return "rotated"
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


def alert_id(values: Sequence[Any]) -> str:
    """The stable id of one connection (see the module docstring)."""
    text = "\x1f".join("" if v is None else str(v) for v in values)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def alerts_of(scored: pd.DataFrame, file: str | None = None) -> list[dict[str, Any]]:
    """Alerts (plain dicts, JSON-ready) of the scored rows whose verdict is not ``ok``."""
    flagged = scored[(scored["verdict"].astype(str) != "ok").to_numpy()]
    if flagged.empty:
        return []
    cols = [c for c in ALERT_FIELDS if c in flagged.columns]
    out: list[dict[str, Any]] = []
    for row in flagged[cols].itertuples(index=False):
        rec = {c: _plain(v) for c, v in zip(cols, row, strict=True)}
        rec["id"] = alert_id([rec.get(k) for k in ID_FIELDS])
        if isinstance(rec.get("score"), float):
            rec["score"] = round(rec["score"], 1)
        if file is not None:
            rec["file"] = file
        out.append(rec)
    return out


# -------------------------------------------------------------------------------------- state (I/O)


class CheckpointStore:
    """Checkpoints in SQLite (``STATE/stream.sqlite``), one row per source, committed atomically."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(state_dir / "stream.sqlite", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint (source TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, head TEXT,"
            " offset INTEGER, line INTEGER, updated REAL)"
        )

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


@dataclass(slots=True)
class Batch:
    """Complete lines of one file: bytes, number of the first line, and the checkpoint after them."""

    data: bytes
    first_line: int
    file: str
    end: Checkpoint
    lines: int
    born: float = field(default_factory=time.monotonic)


class Follower:
    """Reads complete lines of one log from a checkpoint on, through rename and copytruncate rotation."""

    #: At the end of the file, whether more may still come without ``--follow`` (a file: no).
    live = False
    #: Nothing more can ever come (only a stream that ended: a file may always grow).
    ended = False

    def __init__(self, path: Path, start: Checkpoint | None, *, read_bytes: int = 32 << 20) -> None:
        self.path = Path(path)
        self.read_bytes = read_bytes
        self.fd: int | None = None
        self.file = str(self.path)
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
        self._open_initial(start)

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


# ------------------------------------------------------------------------------------------ scoring


class _Collect(DeadLetter):
    """Dead letters kept in memory (a worker process hands them back to the writer)."""

    def __init__(self) -> None:
        super().__init__(None, LogStats())
        self.records: list[tuple[str, int, str, str]] = []

    def add(self, file: str | os.PathLike[str], line_no: int, reason: str, line: str | bytes) -> None:
        super().add(file, line_no, reason, line)
        text = line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else line
        self.records.append((str(file), line_no, reason, text))


@dataclass(slots=True)
class Scored:
    alerts: list[dict[str, Any]]
    rows: int
    lines: int
    dead: list[tuple[str, int, str, str]]
    newest_ts: float | None


class Processor:
    """Parse + score one batch (picklable: runs in worker processes too)."""

    def __init__(
        self, baseline: Baseline | None, mapping: Mapping[str, str] | None = None, text_format: str | None = None
    ) -> None:
        self.baseline, self.mapping, self.text_format = baseline, dict(mapping or {}), text_format

    def __call__(self, data: bytes, first_line: int, file: str) -> Scored:
        dead = _Collect()
        try:
            df = parse_envoy_lines(data, source=Path(file), first_line=first_line, dead_letter=dead,
                                   mapping=self.mapping or None, text_format=self.text_format)  # fmt: skip
            newest: float | None = None
            alerts: list[dict[str, Any]] = []
            if len(df):
                ts = df["ts"].max()
                newest = None if pd.isna(ts) else float(ts.timestamp())
                alerts = alerts_of(score(df, self.baseline), file)
        except Exception as exc:  # a bug must not stop the stream: the batch's lines go to the dead letters, loudly
            log.exception("parsing/scoring failed for %s lines %d..: dead-lettering the batch", file, first_line)
            dead = _Collect()
            for i, raw in enumerate(data.split(b"\n")):
                if raw.strip():
                    dead.stats.lines += 1
                    dead.add(file, first_line + i, f"internal error: {type(exc).__name__}: {exc}", raw)
            return Scored([], 0, dead.stats.lines, dead.records, None)
        return Scored(alerts, len(df), dead.stats.lines, dead.records, newest)


_WORKER: Processor | None = None


def _init_worker(proc: Processor) -> None:
    global _WORKER  # noqa: PLW0603
    _WORKER = proc
    import pyarrow as pa

    pa.set_cpu_count(1)  # the processes are the parallelism: no Arrow thread pools competing for the cores
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_worker(data: bytes, first_line: int, file: str) -> Scored:
    assert _WORKER is not None
    return _WORKER(data, first_line, file)


# ------------------------------------------------------------------------------------------ metrics


@dataclass
class Metrics:
    lines_read: int = 0
    rows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    batches: int = 0
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    sink_sent: dict[str, int] = field(default_factory=dict)
    sink_rejected: dict[str, int] = field(default_factory=dict)
    sink_up: dict[str, int] = field(default_factory=dict)
    spool_bytes: dict[str, int] = field(default_factory=dict)

    def prometheus(self) -> str:
        out = []

        def metric(name: str, kind: str, help_: str, values: Iterable[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}")
            for labels, v in values:
                out.append(f"{name}{labels} {v}")

        metric("tlsdetect_stream_lines_read_total", "counter", "Log lines read.", [("", self.lines_read)])
        metric("tlsdetect_stream_rows_total", "counter", "Connections parsed and scored.", [("", self.rows)])
        metric("tlsdetect_stream_alerts_total", "counter", "Alerts produced (verdict not ok).", [("", self.alerts)])
        metric(
            "tlsdetect_stream_dead_letters_total",
            "counter",
            "Lines that could not be parsed.",
            [("", self.dead_letters)],
        )
        metric("tlsdetect_stream_batches_total", "counter", "Micro-batches committed.", [("", self.batches)])
        metric("tlsdetect_stream_lag_bytes", "gauge", "Bytes of the log not yet read.", [("", self.lag_bytes)])
        metric(
            "tlsdetect_stream_lag_seconds",
            "gauge",
            "Now minus START_TIME of the newest line processed.",
            [("", round(self.lag_seconds, 3))],
        )

        def lab(k: str) -> str:
            return '{sink="' + k.replace("\\", "\\\\").replace('"', '\\"') + '"}'

        metric(
            "tlsdetect_stream_alerts_sent_total",
            "counter",
            "Alerts a sink acknowledged.",
            [(lab(k), v) for k, v in self.sink_sent.items()],
        )
        metric(
            "tlsdetect_stream_alerts_rejected_total",
            "counter",
            "Alerts a sink refused for good (HEC 4xx other than 408/429), written to the dead letters.",
            [(lab(k), v) for k, v in self.sink_rejected.items()],
        )
        metric(
            "tlsdetect_stream_sink_up",
            "gauge",
            "1 when the sink took the last batch.",
            [(lab(k), v) for k, v in self.sink_up.items()],
        )
        metric(
            "tlsdetect_stream_spool_bytes",
            "gauge",
            "Bytes waiting in a sink's spool.",
            [(lab(k), v) for k, v in self.spool_bytes.items()],
        )
        return "\n".join(out) + "\n"


def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """``GET /metrics`` (Prometheus text format) on a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


# ------------------------------------------------------------------------------------------- sinks


def open_sink(spec: str, state_dir: Path, *, spool_max_bytes: int = 256 << 20) -> AlertSink | Spooled:
    """A sink from its spec; network sinks come wrapped in :class:`Spooled` (spool under ``STATE/spool``)."""
    from tlsdetect.sinks.alerts.cef import CefFileSink, format_cef
    from tlsdetect.sinks.alerts.ecs import JsonlSink
    from tlsdetect.sinks.alerts.hec import HecSink
    from tlsdetect.sinks.alerts.syslog import SyslogSink

    net: AlertSink
    if spec.startswith("jsonl:"):
        return JsonlSink(spec[len("jsonl:") :])
    if spec.startswith(("cef+syslog+tcp://", "cef+syslog+udp://")):
        net = SyslogSink(spec[len("cef+") :], formatter=format_cef)
        net.name = "cef+" + net.name
    elif spec.startswith("cef:"):
        return CefFileSink(spec[len("cef:") :])
    elif spec.startswith(("syslog+tcp://", "syslog+udp://")):
        net = SyslogSink(spec)
    elif spec.startswith(("hec+https://", "hec+http://")):
        net = HecSink(spec)
    else:
        raise ValueError(
            f"unknown sink {spec!r}: use jsonl:PATH|-, syslog+tcp://HOST:PORT, syslog+udp://HOST:PORT, cef:PATH|-, "
            "cef+syslog+tcp://HOST:PORT, hec+https://HOST:PORT?token=..."
        )
    key = hashlib.sha256(net.name.encode()).hexdigest()[:12]
    return Spooled(net, state_dir / "spool" / key, max_bytes=spool_max_bytes)


# ----------------------------------------------------------------------------------------- streamer


@dataclass
class StreamConfig:
    follow: bool = False
    batch_lines: int = 5000
    batch_ms: int = 200
    poll_ms: int = 20
    workers: int = 1


class Streamer:
    """The loop: follower -> micro-batches -> processor -> sinks -> dead letters flushed -> checkpoint."""

    def __init__(
        self,
        source: Path | BinaryIO,
        processor: Processor,
        sinks: Sequence[AlertSink | Spooled],
        store: CheckpointStore,
        *,
        dead_letter: Path | None = None,
        config: StreamConfig | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processor = processor
        self.sinks = list(sinks)
        self.store = store
        self.config = config or StreamConfig()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.dead_path = dead_letter
        self._dead_fh = dead_letter.open("a", encoding="utf-8") if dead_letter is not None else None
        self.stopping = False
        self.follower: Follower | StdinFollower
        if isinstance(source, str | os.PathLike):
            self.source = Path(source)
            self.key = str(self.source.resolve())
            self.follower = Follower(self.source, store.load(self.key))
        else:  # a stream (standard input): no checkpoint, see StdinFollower
            self.source, self.key = Path(STDIN), ""
            self.follower = StdinFollower(source)
        self._log_events()
        for s in self.sinks:
            self.metrics.sink_up[s.name] = 1
            self.metrics.sink_sent[s.name] = 0
            self.metrics.sink_rejected[s.name] = 0

    def _log_events(self) -> None:
        for e in self.follower.events:
            log.warning("%s", e)
        self.follower.events.clear()

    def stop(self, *_: object) -> None:
        self.stopping = True

    # -- batches
    def batches(self) -> Iterator[Batch]:
        """Micro-batches: up to ``batch_lines`` lines of one file; at the end of data whatever is pending."""
        cfg = self.config
        parts: list[Batch] = []

        def merged() -> Batch:
            first, last = parts[0], parts[-1]
            data = first.data if len(parts) == 1 else b"".join(p.data for p in parts)
            return Batch(data, first.first_line, first.file, last.end, sum(p.lines for p in parts), first.born)

        while not self.stopping:
            want = cfg.batch_lines - sum(p.lines for p in parts)
            got = self.follower.read(want, final=not cfg.follow)
            self._log_events()
            if got is not None:
                last = parts[-1] if parts else None
                if last is not None and (got.file != last.file or got.end.ino != last.end.ino
                                         or got.first_line != last.end.line + 1):  # fmt: skip
                    yield merged()  # another file: a batch never spans two
                    parts = []
                parts.append(got)
            lines = sum(p.lines for p in parts)
            if parts and (got is None or lines >= cfg.batch_lines
                          or (self.clock() - parts[0].born) * 1000 >= cfg.batch_ms):  # fmt: skip
                yield merged()
                parts = []
            if got is None:
                if self.follower.ended or not (cfg.follow or self.follower.live):
                    return
                self.idle()
                time.sleep(cfg.poll_ms / 1000)
        if parts:
            yield merged()

    def idle(self) -> None:
        """Between batches: drain spools when their backoff allows, refresh the lag."""
        for s in self.sinks:
            if isinstance(s, Spooled):
                s.drain()
        self._dead_letter_rejected()
        self._sink_metrics()
        self.metrics.lag_bytes = self.follower.lag_bytes()

    def _sink_metrics(self) -> None:
        for s in self.sinks:
            self.metrics.sink_sent[s.name] = s.sent
            if isinstance(s, Spooled):
                self.metrics.sink_up[s.name] = 0 if s.down else 1
                self.metrics.spool_bytes[s.name] = s.spooled_bytes

    # -- dead letters
    def _write_dead(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append to the dead-letter file and fsync (before the checkpoint moves past what they came from)."""
        if self._dead_fh is None:
            return
        import json

        n = 0
        for rec in records:
            self._dead_fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            n += 1
        if n:
            self._dead_fh.flush()
            os.fsync(self._dead_fh.fileno())

    def _reject(self, sink: str, alerts: Sequence[Mapping[str, Any]], reason: str) -> None:
        """Alerts a sink refused for good: one dead letter each (``text`` is the alert as JSON), and counted."""
        import json

        self.metrics.sink_rejected[sink] = self.metrics.sink_rejected.get(sink, 0) + len(alerts)
        if self._dead_fh is None:
            log.error("sink %s refused %d alert(s) (%s) and there is no dead-letter file: they are lost",
                      sink, len(alerts), reason)  # fmt: skip
        self._write_dead({"file": a.get("file"), "line": None, "sink": sink, "reason": f"refused by the sink: {reason}",
                          "text": json.dumps(a, ensure_ascii=False, default=str)} for a in alerts)  # fmt: skip

    def _dead_letter_rejected(self) -> None:
        for s in self.sinks:
            if isinstance(s, Spooled):
                for alerts, reason in s.take_rejected():
                    self._reject(s.name, alerts, reason)

    # -- delivery
    def deliver(self, batch: Batch, result: Scored) -> None:
        """Send to every sink (waiting out full spools), write dead letters, then commit the checkpoint."""
        for s in self.sinks:
            delay = 0.5
            while True:
                try:
                    s.send(result.alerts)
                    break
                except SinkRejectedError as exc:  # a sink without a spool that refuses the batch for good
                    self._reject(s.name, result.alerts, str(exc))
                    break
                except SpoolFullError as exc:
                    log.error("%s; holding at %s line %d until it drains", exc, batch.file, batch.first_line)
                except SinkError as exc:  # a sink without a spool (a file sink on a full disk ...)
                    log.error("sink %s failed (%s); retrying the batch", s.name, exc)
                except OSError as exc:
                    log.error("sink %s failed (%s); retrying the batch", s.name, exc)
                self.metrics.sink_up[s.name] = 0
                if self.stopping:
                    raise SystemExit(1)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                if isinstance(s, Spooled):
                    s.drain(force=True)
        self._dead_letter_rejected()
        self._write_dead({"file": file, "line": line_no, "reason": reason, "text": text[:4096]}
                         for file, line_no, reason, text in result.dead)  # fmt: skip
        if self.key:  # not standard input
            self.store.commit(self.key, batch.end)
        m = self.metrics
        m.lines_read += result.lines
        m.rows += result.rows
        m.alerts += len(result.alerts)
        m.dead_letters += len(result.dead)
        m.batches += 1
        if result.newest_ts is not None:
            m.lag_seconds = max(0.0, time.time() - result.newest_ts)
        m.lag_bytes = self.follower.lag_bytes()
        self._sink_metrics()

    def run(self) -> Metrics:
        """Until the end of the source (batch mode) or :meth:`stop` (follow mode)."""
        # worker processes pay off on a backlog (a catch-up run); following, batches are small and latency counts
        workers = 1 if self.config.follow else max(1, self.config.workers)
        if workers == 1:
            for batch in self.batches():
                self.deliver(batch, self.processor(batch.data, batch.first_line, batch.file))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(self.processor,)) as pool:  # fmt: skip
                inflight: list[tuple[Batch, Future[Scored]]] = []
                for batch in self.batches():
                    inflight.append((batch, pool.submit(_run_worker, batch.data, batch.first_line, batch.file)))
                    while len(inflight) > 2 * workers or (inflight and inflight[0][1].done()):
                        b, fut = inflight.pop(0)
                        self.deliver(b, fut.result())
                for b, fut in inflight:
                    self.deliver(b, fut.result())
        for s in self.sinks:
            if isinstance(s, Spooled):
                s.drain(force=True)
        self._dead_letter_rejected()
        self._sink_metrics()
        return self.metrics

    def close(self) -> None:
        self.follower.close()
        for s in self.sinks:
            try:
                s.close()
            except (SinkError, OSError) as exc:
                log.warning("sink %s: %s at close", s.name, exc)
        self._dead_letter_rejected()
        if self._dead_fh is not None:
            self._dead_fh.close()
        self.store.close()
