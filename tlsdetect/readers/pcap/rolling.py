"""One engine over a sequence of capture files: a live capture's ring files, a pipe's windows.

``tlsdetect fingerprint`` reads each file with an engine of its own. A ring buffer cuts the
traffic at arbitrary points, so a handshake may begin in one ring file and end in the next;
:class:`RollingEngine` keeps one :class:`~tlsdetect.readers.pcap.engine` state across files
(the fast lane's carry, :mod:`.carry`, and the reassembling lane's open connections), so such a
connection gives the one row it gives when the files are read as one. Each :meth:`feed` returns
the connections settled so far; :meth:`finish` the rest, when the capture ends.

A file read alone waits for capture time to settle a handshake (the carry and the slow lane
follow a handshake whose flights are undecided until it is quiet for ``QUIET_NS``). A
live capture's clock is the wall clock, and a quiet interface adds no packets to move it, so
:meth:`settle` ends, by the wall clock, the handshakes quiet for ``quiet_ns``:
what a capture filter kept of them is all there will be.
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
        self.engine = _Engine(name, slow_batch=1)
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

    def settle(self, now_ns: int, quiet_ns: int) -> pd.DataFrame:
        """Rows of the handshakes with no packet for ``quiet_ns`` before ``now_ns`` (capture clock).

        The carried ones go to the reassembling lane (as at the end of a capture), whose
        connections quiet that long are finished with what they have."""
        eng = self.engine
        st = eng.state
        if now_ns - st.now < quiet_ns:
            return eng.drain()
        if len(eng.carry):
            eng.flush()
        st.now = max(st.now, now_ns)
        for cid in [cid for cid, t in st.touched.items() if st.now - t >= quiet_ns]:
            eng._finish(st.conns[cid])
        return eng.drain()

    @property
    def last_packet_ns(self) -> int:
        """Capture time of the newest packet read (0 before any)."""
        return self.engine.state.now

    def finish(self) -> pd.DataFrame:
        """The end of the capture: carried and open handshakes finished as they stand."""
        self.engine.flush()
        return self.engine.drain(final=True)

    @property
    def stats(self) -> ReadStats:
        """The engine's counts and the readers' together (a fresh object: safe to keep)."""
        return ReadStats().merge(self.engine.stats).merge(self.read)
