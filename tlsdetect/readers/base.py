"""The one contract every reader keeps: files of one kind in, connections-table chunks out, one stats.

Why one shape: the CLI, the stream and Spark read a capture and a log the same way, merge what
each reader counted into one summary, and never ask which reader it was (no ``getattr`` of a
field one reader happens to have). Reader-specific counts (packets, frames, fast-lane
connections) live in :attr:`ReadStats.counts` under their own names; every skip is named and
counted in :attr:`ReadStats.skipped`, so nothing is lost silently. A reader does not fingerprint:
:func:`tlsdetect.fingerprint.enrich` is the one stage after any reader (the registry applies it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pandas as pd

__all__ = ["DnOrder", "FileProgress", "Progress", "ReadStats", "Reader"]

#: Called with the bytes of the current file read so far (drives a progress bar); may be None.
Progress = Callable[[int], None]
#: Walks the files of one read, yielding each with its :data:`Progress` callback (or None): the
#: caller's bar opens before the first file and closes after the last.
FileProgress = Callable[[list[Path]], Iterator[tuple[Path, Progress | None]]]
#: How a source prints certificate DNs: most specific RDN first (``rfc2253``: OpenSSL, Zeek, Envoy,
#: the wire readers) or certificate order (``x509``: Suricata). The issuer keys need to know.
DnOrder = Literal["rfc2253", "x509"]


@dataclass(slots=True)
class ReadStats:
    """What a reader read: for the summary line, the benchmarks, and tests that nothing was lost."""

    files: int = 0
    bytes_read: int = 0
    #: connections-table rows produced
    rows: int = 0
    #: reader-specific counters by name (``packets``, ``lines``, ``fast_lane_connections``, ...)
    counts: Counter[str] = field(default_factory=Counter)
    #: named, counted skips: reason -> how many (dead-lettered lines by reason, ``not-tls`` events, ...)
    skipped: Counter[str] = field(default_factory=Counter)
    #: sentences for the user (damage with its byte offset, files of no known kind, ...)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Add a warning once (readers of several files see the same problem again)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def merge(self, other: ReadStats) -> ReadStats:
        """Add ``other`` into this one (in place) and return it, so readers' stats sum up."""
        self.files += other.files
        self.bytes_read += other.bytes_read
        self.rows += other.rows
        self.counts.update(other.counts)
        self.skipped.update(other.skipped)
        for w in other.warnings:
            self.warn(w)
        return self


class Reader(Protocol):
    """Reads files of one kind (``kind``: ``pcap``, ``zeek``, ``suricata``, ``envoy``, ...).

    ``read`` yields chunks of the connections table (``schema.py``) as it goes and counts into
    ``stats``; a line it cannot read goes to the dead letters held by the reader. It does not
    fingerprint: that is the one stage after reading (``fingerprint.enrich``), which keys issuers
    in the reader's ``dn_order``.
    """

    kind: str
    dn_order: DnOrder

    def read(self, paths: Sequence[Path], stats: ReadStats,
             progress: FileProgress | None = None) -> Iterator[pd.DataFrame]:
        """Chunks of the connections table from ``paths``; counts go into ``stats``."""
        ...
