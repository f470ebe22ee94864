"""What scoring one batch of log lines gives the streamer: alerts, counts, dead letters, ledger events.

Its own module so the loop (:mod:`tlsdetect.stream.loop`) and the crash guard
(:mod:`tlsdetect.stream.isolate`) share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeadRecord", "Scored"]

#: A line that could not be scored: file, line number, reason, the line.
DeadRecord = tuple[str, int, str, str | bytes]


@dataclass(slots=True)
class Scored:
    """One batch's result (picklable: worker and child processes send it back)."""

    alerts: list[dict[str, Any]]
    rows: int
    lines: int
    dead: list[DeadRecord]
    newest_ts: float | None
    #: the batch's anomaly ledger events by name (see :func:`tlsdetect.stream.loop.ledger_events`)
    weird: dict[str, int] = field(default_factory=dict)
