"""What the stream's loop reads from: the one interface every source implements.

A source hands out :class:`~tlsdetect.stream.follow.Batch` es: lines (``data``: a followed file, standard
input) or records already in columns (``records``: the gRPC access-log service, OTLP; a live capture may
hand either). The loop (:class:`tlsdetect.stream.loop.Streamer`) micro-batches, scores, delivers, counts
(one :class:`~tlsdetect.stream.metrics.Metrics` for all) and checkpoints them the same way whatever the source.

Checkpoints: only a source with offsets has one. A file's is its inode and byte offset
(:class:`~tlsdetect.stream.follow.Follower`, keyed by its path). A source without offsets (standard input, a
gRPC stream, an OTLP export, a live interface) has ``key == ""``: nothing is committed, delivery is
at-least-once from the sender's side (it keeps what it could not send) and what was queued here and not yet
scored is lost on a restart.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tlsdetect.stream.checkpoint import Checkpoint
from tlsdetect.stream.follow import Batch

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """A source of batches for the loop (a file follower, standard input, a receiver, a capture)."""

    #: Names the source in alerts, dead letters and logs (``envoy-als://127.0.0.1:9001``, a path).
    file: str
    #: The checkpoint store's key; "" for a source without offsets (nothing is committed).
    key: str
    #: More may come at the end of data even without ``--follow`` (a receiver, a capture).
    live: bool
    #: Nothing more can ever come (a stream that ended).
    ended: bool
    #: Warnings for the log since the loop last read them (it clears the list).
    events: list[str]

    @property
    def checkpoint(self) -> Checkpoint:
        """Where the source is now (only meaningful with a ``key``)."""
        ...

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        """Up to ``max_lines`` lines or records; None when there is nothing yet."""
        ...

    def lag_bytes(self) -> int:
        """How far behind the source the loop is (file bytes not read, bytes queued by a receiver)."""
        ...

    def close(self) -> None: ...
