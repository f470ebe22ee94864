"""Retry with backoff and a bounded on-disk spool in front of any network alert sink.

:class:`Spooled` wraps a sink. ``send(batch)`` returns once the batch is either delivered or written
(fsynced) to the spool directory; the stream's checkpoint may then move past it. While the spool
holds anything, new batches go behind it (order is kept) and the spool is drained oldest first, one
attempt per backoff step (exponential from ``backoff_min`` to ``backoff_max`` seconds, with jitter).
Every change of state is logged (``sink X is down ...``, ``sink X is back ...``): the process never
dies of a sink that is down.

A batch the receiver refuses for good (:class:`SinkRejectedError`: Splunk HEC's 4xx other than 429, a bad
token or a wrong index) is neither retried nor spooled: it is kept in :attr:`Spooled.rejected` with the
reason, for the stream to write to its dead letters and count, and the next batch goes on.

The spool is bounded (``max_bytes``). When a batch does not fit, :class:`SpoolFullError` is raised: the
caller must not checkpoint past that batch and should try again later (backpressure), so nothing is
lost and nothing is silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AlertSink", "SinkError", "SinkRejectedError", "SpoolFullError", "Spooled"]

log = logging.getLogger("tlsdetect.stream.loop")


class SinkError(Exception):
    """A sink could not deliver a batch (down, refused, timed out); worth retrying."""


class SinkRejectedError(SinkError):
    """The receiver answered and refused the batch for good (a bad token, a wrong index): a retry would be
    refused the same way, so the batch goes to the dead letters instead of blocking every later one."""


class SpoolFullError(SinkError):
    """The sink is down and its spool cannot take another batch."""


class AlertSink(Protocol):
    name: str
    sent: int

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None: ...

    def close(self) -> None: ...


class Spooled:
    """A sink with retries, backoff and a bounded on-disk spool (``directory``)."""

    def __init__(
        self,
        sink: AlertSink,
        directory: Path,
        *,
        max_bytes: int = 256 << 20,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.clock = clock
        self._delay = 0.0
        self._next_try = 0.0
        self.down = False
        self.errors = 0
        self.refusing = False
        #: Batches refused for good and why, until the stream takes them (:meth:`take_rejected`).
        self.rejected: list[tuple[list[dict[str, Any]], str]] = []
        self.rejected_alerts = 0
        self._seq = max((int(p.stem) for p in self._segments()), default=0)
        if self._segments():
            log.warning(
                "sink %s: %d spooled batch(es) from an earlier run will be sent first", self.name, len(self._segments())
            )

    @property
    def sent(self) -> int:
        return self.sink.sent

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.jsonl"), key=lambda p: int(p.stem))

    @property
    def spooled_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._segments())

    @property
    def spooled_batches(self) -> int:
        return len(self._segments())

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._delay = min(self.backoff_max, max(self.backoff_min, self._delay * 2))
        self._next_try = self.clock() + self._delay * random.uniform(0.8, 1.2)
        if not self.down:
            log.warning("sink %s is down (%s); spooling to %s, retrying with backoff", self.name, exc, self.dir)
        else:
            log.info("sink %s still down (%s); next try in %.1f s", self.name, exc, self._delay)
        self.down = True

    def _rejected(self, alerts: Sequence[Mapping[str, Any]], exc: SinkRejectedError) -> None:
        self.rejected.append(([dict(a) for a in alerts], str(exc)))
        self.rejected_alerts += len(alerts)
        if not self.refusing:
            log.error("sink %s refuses alerts (%s): they go to the dead letters, not retried", self.name, exc)
        else:
            log.info("sink %s refused %d more alert(s) (%s)", self.name, len(alerts), exc)
        self.refusing = True

    def take_rejected(self) -> list[tuple[list[dict[str, Any]], str]]:
        """The refused batches with their reasons since the last call (the caller dead-letters them)."""
        out, self.rejected = self.rejected, []
        return out

    def _ok(self) -> None:
        if self.down:
            log.warning("sink %s is back; spool drained", self.name)
        self.down = False
        self._delay = 0.0
        self._next_try = 0.0

    def _spool(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(a, ensure_ascii=False, default=str) + "\n" for a in alerts).encode("utf-8")
        if self.spooled_bytes + len(data) > self.max_bytes:
            raise SpoolFullError(f"sink {self.name} is down and its spool is full ({self.max_bytes} bytes)")
        self._seq += 1
        tmp = self.dir / f"{self._seq}.tmp"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(self.dir / f"{self._seq}.jsonl")

    def drain(self, *, force: bool = False) -> bool:
        """Send spooled batches oldest first (when the backoff allows); True when the spool is empty."""
        segments = self._segments()
        if not segments:
            return True
        if not force and self.clock() < self._next_try:
            return False
        for seg in segments:
            alerts = [json.loads(line) for line in seg.read_text(encoding="utf-8").splitlines() if line.strip()]
            try:
                self.sink.send(alerts)
                self.refusing = False
            except SinkRejectedError as exc:
                self._rejected(alerts, exc)
            except SinkError as exc:
                self._failed(exc)
                return False
            seg.unlink()
        self._ok()
        return True

    def send(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Deliver or spool; raises :class:`SpoolFullError` when neither is possible."""
        if not alerts:
            self.drain()
            return
        if self.drain():
            try:
                self.sink.send(alerts)
                if self.refusing:
                    log.warning("sink %s takes alerts again", self.name)
                self.refusing = False
                self._ok()
                return
            except SinkRejectedError as exc:
                self._rejected(alerts, exc)
                self._ok()  # it answered: not down
                return
            except SinkError as exc:
                self._failed(exc)
        self._spool(alerts)

    def close(self) -> None:
        self.drain(force=True)
        self.sink.close()
