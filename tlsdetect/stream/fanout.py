"""One lane per sink: a bounded buffer in front of it, so a sink that is down holds back only itself.

Each batch's alerts are offered to every lane (:meth:`SinkLane.offer`); a lane sends what it holds oldest
first and, when its sink fails (down, or its disk spool full), keeps the alerts and tries again after a
backoff, while the other lanes go on. What a lane may hold is bounded (``max_alerts``); past the bound its
``when_full`` decides:

* ``block`` (the default): the stream waits for that sink (backpressure: the log is not read further), so
  nothing is lost; the other sinks have had every batch read so far.
* ``drop``: the batch that does not fit is dropped for that sink and counted
  (``tlsdetect_stream_alerts_dropped_total{sink}``): the stream never waits for it.

The checkpoint moves to the newest batch that every lane has finished with (:attr:`SinkLane.done_through`):
a crash replays what a lagging lane still held, and the dedupe ids (:mod:`tlsdetect.stream.dedupe`) keep
the other sinks from taking it twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

from tlsdetect.sinks.alerts.spool import AlertSink, SinkError, SinkRejectedError, Spooled

__all__ = ["DEFAULT_MAX_ALERTS", "WHEN_FULL", "SinkLane", "WhenFull"]

log = logging.getLogger("tlsdetect.stream.loop")

WhenFull = Literal["block", "drop"]
WHEN_FULL: tuple[str, ...] = get_args(WhenFull)
#: Alerts a lane holds in memory at most (about 2 KB each) before ``when_full`` applies.
DEFAULT_MAX_ALERTS = 10_000

Alerts = Sequence[Mapping[str, Any]]


class SinkLane:
    """A sink with its own queue of ``(batch number, alerts)``, backoff and ``when_full`` policy."""

    def __init__(
        self,
        sink: AlertSink | Spooled,
        *,
        when_full: WhenFull = "block",
        max_alerts: int = DEFAULT_MAX_ALERTS,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full={when_full!r}: choose one of {', '.join(WHEN_FULL)}")
        self.sink, self.name = sink, sink.name
        self.when_full: WhenFull = when_full
        self.max_alerts = max(0, max_alerts)
        self.backoff_min, self.backoff_max, self.clock = backoff_min, backoff_max, clock
        self.queue: deque[tuple[int, Alerts]] = deque()
        self.held = 0  # alerts in the queue
        self.last_seq = 0  # the newest batch offered
        self.dropped = 0  # alerts dropped by when_full=drop
        self.down = False
        self.error = ""
        self._delay = 0.0
        self._next_try = 0.0
        self._dropping = False
        #: Alerts the sink refused for good (an unspooled sink's SinkRejectedError), for the dead letters.
        self.rejected: list[tuple[Alerts, str]] = []

    @property
    def done_through(self) -> int:
        """The newest batch number up to which this lane has finished (sent, spooled, refused or dropped)."""
        return self.queue[0][0] - 1 if self.queue else self.last_seq

    @property
    def full(self) -> bool:
        return bool(self.queue) and self.held > self.max_alerts

    def offer(self, seq: int, alerts: Alerts) -> list[Alerts]:
        """Queue a batch's alerts and send what the lane can; returns the alert lists the sink took."""
        self.last_seq = seq
        if not alerts:  # nothing to hold: done once what is before it is (done_through); a spool may drain
            if isinstance(self.sink, Spooled):
                self.sink.drain()
            return self.pump()
        self.queue.append((seq, alerts))
        self.held += len(alerts)
        taken = self.pump()
        if self.when_full == "drop":
            self._shed()
        return taken

    def _shed(self) -> None:
        """``drop``: the newest batches that do not fit go, counted (the oldest stays: order is kept)."""
        while self.full and len(self.queue) > 1:
            _seq, alerts = self.queue.pop()
            self.held -= len(alerts)
            self.dropped += len(alerts)
        if self.full:  # one batch, larger than the whole buffer, that the sink does not take
            _seq, alerts = self.queue.pop()
            self.held -= len(alerts)
            self.dropped += len(alerts)
        if self.dropped and not self._dropping:
            log.error("sink %s cannot take alerts (%s) and its buffer is full: dropping them (when_full=drop), "
                      "%d so far", self.name, self.error or "down", self.dropped)  # fmt: skip
        self._dropping = bool(self.queue)

    def drop_held(self) -> int:
        """Give up what the lane holds (``drop`` at the end of a run); returns how many alerts."""
        n = self.held
        self.dropped += n
        self.queue.clear()
        self.held = 0
        if n:
            log.error("sink %s: %d held alert(s) dropped at the end of the run (when_full=drop)", self.name, n)
        return n

    def pump(self, *, force: bool = False) -> list[Alerts]:
        """Send the held batches oldest first, unless the backoff says wait (``force``: try now)."""
        taken: list[Alerts] = []
        while self.queue:
            if self.down and not force and self.clock() < self._next_try:
                break
            alerts = self.queue[0][1]
            try:
                self.sink.send(alerts)
            except SinkRejectedError as exc:  # refused for good: to the dead letters, not retried
                self.rejected.append((alerts, str(exc)))
            except (SinkError, OSError) as exc:
                self._failed(exc)
                break
            else:
                taken.append(alerts)
            self.queue.popleft()
            self.held -= len(alerts)
            self._ok()
            force = False
        return taken

    def _failed(self, exc: Exception) -> None:
        self.error = str(exc)
        self._delay = min(self.backoff_max, max(self.backoff_min, self._delay * 2))
        self._next_try = self.clock() + self._delay * random.uniform(0.8, 1.2)
        if not self.down:
            log.error("sink %s failed (%s); holding its alerts (%d) and retrying with backoff, the other sinks go on",
                      self.name, exc, self.held)  # fmt: skip
        self.down = True

    def _ok(self) -> None:
        if self.down:
            log.warning("sink %s takes alerts again (%d still held)", self.name, self.held)
        self.down, self.error, self._delay, self._next_try = False, "", 0.0, 0.0
        self._dropping = False
