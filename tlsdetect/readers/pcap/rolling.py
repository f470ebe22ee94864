"""One engine over a sequence of capture files: a live capture's ring files, a pipe's windows.

``tlsdetect fingerprint`` reads each file with an engine of its own. A ring buffer cuts the
traffic at arbitrary points, so a handshake may begin in one ring file and end in the next;
:class:`RollingEngine` keeps one :class:`~tlsdetect.readers.pcap.engine` state across files
(the fast lane's carry, :mod:`.carry`, and the reassembling lane's open connections), so such a
connection gives the one row it gives when the files are read as one. Each :meth:`feed` returns
the connections settled so far; :meth:`finish` the rest, when the capture ends.
"""

from __future__ import annotations

import os

import pandas as pd

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.capture import WINDOW, CaptureReader
from tlsdetect.readers.pcap.engine import _Engine, _prefetch

__all__ = ["RollingEngine"]


class RollingEngine:
    """Feed capture files in capture order; rows (not enriched) out as their handshakes settle."""

    def __init__(self, name: str, *, window: int = WINDOW) -> None:
        self.window = window
        self.engine = _Engine(name, slow_batch=1, carry_bytes=window)
        #: the capture readers' counts (packets, bytes_read, warnings) summed over the files fed
        self.read = ReadStats()

    def feed(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """Every window of one file through the engine; the connections settled by now."""
        reader = CaptureReader(path, window=self.window, reuse_buffer=False)
        for prepared, _ in _prefetch(reader):
            self.engine.window(prepared)
        self.read.merge(reader.stats)
        self.read.files += 1
        return self.engine.drain()

    def finish(self) -> pd.DataFrame:
        """The end of the capture: carried and open handshakes finished as they stand."""
        self.engine.flush()
        return self.engine.drain(final=True)

    @property
    def stats(self) -> ReadStats:
        """The engine's counts and the readers' together (a fresh object: safe to keep)."""
        return ReadStats().merge(self.engine.stats).merge(self.read)
