"""A batch that killed the process is scored again in child processes, so a crash costs one line.

Bounding JSON nesting before ``pyarrow.json`` (:mod:`tlsdetect.readers.json_depth`) removes the native
crash we know of; a native parser may still have others. Without a guard, a line that crashes the
process in ``tlsdetect stream`` is a crash loop: the checkpoint never passes it, so every restart dies
on it again and nothing after it is delivered (issue 18, row 1).

The guard costs one small file write per batch and nothing else while all is well:

* :class:`InFlight` writes ``STATE/stream.inflight-*`` (the file and line range being scored) before a
  batch is scored and removes it at a clean end. It is not fsynced: it only has to outlive the *process*
  (the page cache does), not the machine.
* A run that finds the file left behind knows the previous one died on those lines (a native crash, an
  OOM kill, ``kill -9``). It scores each batch overlapping them with :func:`isolated`: in a forked child;
  when the child dies, the batch is split in halves and each half tried again, down to single lines. A line
  that still kills its child is dead-lettered with the signal's name; every other line is scored as usual.
* With worker processes (a catch-up run), a worker's death breaks the pool: the batches it held are scored
  with :func:`isolated` in the streamer and the pool is started again (:mod:`tlsdetect.stream.loop`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from tlsdetect.stream.scored import DeadRecord, Scored

__all__ = ["INFLIGHT_NAME", "InFlight", "Suspect", "crash_reason", "isolated", "merge_scored"]

log = logging.getLogger("tlsdetect.stream.loop")

#: The marker's file name in the state directory.
INFLIGHT_NAME = "stream.inflight"

Score = Callable[[bytes, int, str], Scored]


@dataclass(frozen=True, slots=True)
class Suspect:
    """Lines a previous run was scoring when it died: ``first`` to ``last`` (inclusive) of ``file``."""

    file: str
    first: int
    last: int

    def overlaps(self, file: str, first: int, lines: int) -> bool:
        return file == self.file and first <= self.last and first + max(lines, 1) - 1 >= self.first


class InFlight:
    """``STATE/stream.inflight-<source hash>``: the batch being scored, so a run after a crash knows where it
    died (one file per source: streams of several logs may share a state directory)."""

    def __init__(self, state_dir: Path, source: str) -> None:
        tag = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.path = state_dir / f"{INFLIGHT_NAME}-{tag}"

    def left_behind(self) -> Suspect | None:
        """The batch a previous run died on (None: it ended cleanly, or never marked one)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Suspect(str(raw["file"]), int(raw["first"]), int(raw["last"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # a torn write: the whole file is suspect from its start
            log.warning("%s cannot be read: the previous run's last batch is unknown", self.path)
            return None

    def mark(self, file: str, first: int, lines: int) -> None:
        """Before scoring: the batch's lines (a write and a rename, no fsync: it must outlive the process only)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"file": file, "first": first, "last": first + max(lines, 1) - 1,
                                   "pid": os.getpid()}), encoding="utf-8")  # fmt: skip
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """At a clean end (or stop): no batch was left half scored."""
        self.path.unlink(missing_ok=True)


def crash_reason(exitcode: int | None) -> str:
    """Why a child ended without an answer, for the dead letter: the signal's name, else the exit status."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"crashed the parser: killed by {name} (scored alone in a child process)"
    return f"crashed the parser: exit status {exitcode} (scored alone in a child process)"


def _child(score: Score, data: bytes, first_line: int, file: str, out: Connection) -> None:
    try:
        out.send(score(data, first_line, file))
    finally:
        out.close()


def _in_child(score: Score, data: bytes, first_line: int, file: str) -> Scored | int | None:
    """``score`` of the lines in a forked child: its result, or the child's exit code when it died."""
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(score, data, first_line, file, send), daemon=True)
    proc.start()
    send.close()
    try:
        result: Scored | None = receive.recv()  # before join: a large result would fill the pipe
    except EOFError:
        result = None
    finally:
        receive.close()
    proc.join()
    return result if result is not None else proc.exitcode


def merge_scored(parts: list[Scored]) -> Scored:
    """One result of several parts of a batch, in line order."""
    weird: Counter[str] = Counter()
    for p in parts:
        weird.update(p.weird)
    newest = [p.newest_ts for p in parts if p.newest_ts is not None]
    return Scored([a for p in parts for a in p.alerts], sum(p.rows for p in parts), sum(p.lines for p in parts),
                  [d for p in parts for d in p.dead], max(newest) if newest else None, dict(weird))  # fmt: skip


def isolated(score: Score, data: bytes, first_line: int, file: str) -> Scored:
    """``score`` of a batch with every part that kills its process dead-lettered, line by line (module
    docstring). Costs one fork while no line crashes."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the batch ends with a newline: no line after it

    def run(lo: int, hi: int) -> list[Scored]:
        got = _in_child(score, b"\n".join(lines[lo:hi]) + b"\n", first_line + lo, file)
        if not isinstance(got, int) and got is not None:
            return [got]
        if hi - lo > 1:
            mid = (lo + hi) // 2
            return run(lo, mid) + run(mid, hi)
        reason = crash_reason(got)
        log.error("%s line %d %s: dead-lettered", file, first_line + lo, reason)
        counted = 1 if lines[lo].strip() else 0
        dead: list[DeadRecord] = [(file, first_line + lo, reason, lines[lo])] if counted else []
        return [Scored([], 0, counted, dead, None, {"crashed the parser": counted} if counted else {})]

    return merge_scored(run(0, len(lines))) if lines else score(data, first_line, file)
