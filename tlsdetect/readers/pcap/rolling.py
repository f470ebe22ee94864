"""One engine over a sequence of capture files: a live capture's ring files, a pipe's windows.

``tlsdetect fingerprint`` reads each file with an engine of its own. A ring buffer cuts the
traffic at arbitrary points, so a handshake may begin in one ring file and end in the next;
:class:`RollingEngine` keeps one :class:`~tlsdetect.readers.pcap.engine` state across files
(the fast lane's carry, :mod:`.carry`, and the reassembling lane's open connections), so such a
connection gives the one row it gives when the files are read as one. Each :meth:`feed` returns
the connections settled so far (:meth:`read_file` then :meth:`settled`: files queued behind one
another are read first and give one table); :meth:`finish` the rest, when the capture ends.

Quiet handshakes, in capture time. A capture filter (:mod:`.bpf`) drops the segments that
continue a record, so many handshakes never complete: the reassembling lane would follow each for
``engine.IDLE_NS`` (5 s) of capture time, and at a few thousand connections/s its table fills and
the oldest are evicted (rows that say ``pending_evicted``). With ``quiet_ns`` set, after every
file the connections the reassembling lane has not seen a segment of for ``quiet_ns`` of capture
time are finished with what they have: the row a file read gives them at ``IDLE_NS`` (no more
packets came), a few seconds sooner, so the table holds a second of traffic, not five. A
handshake that pauses longer than that mid-way and then goes on gives a row without the rest.

A quiet interface adds no packets to move the capture clock, so :meth:`settle` ends, at a time
the caller knows every packet before has been read (the live edge), the handshakes quiet for
``quiet_ns`` by then: what a capture filter kept of them is all there will be.
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

    def __init__(self, name: str, *, window: int = WINDOW, quiet_ns: int | None = None) -> None:
        self.window = window
        #: capture time after which a quiet connection of the reassembling lane is finished (None: IDLE_NS)
        self.quiet_ns = quiet_ns
        self.engine = _Engine(name, slow_batch=1)
        #: the capture readers' counts (packets, bytes_read, warnings) summed over the files fed
        self.read = ReadStats()

    def feed(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """Every window of one file through the engine; the connections settled by now."""
        self.read_file(path)
        return self.settled()

    def read_file(self, path: str | os.PathLike[str]) -> None:
        """Every window of one file through the engine, no rows yet: files queued behind one
        another are read first and :meth:`settled` once (a table and a scoring batch cost ~0.1 s
        of CPU each, whatever their rows)."""
        reader = CaptureReader(path, window=self.window, reuse_buffer=False)
        for prepared, _ in _prefetch(reader):
            self.engine.window(prepared)
        self.read.merge(reader.stats)
        self.read.files += 1
        if self.quiet_ns is not None:  # after every file, batched or not: the table holds ~quiet_ns of traffic
            self._finish_quiet(self.engine.state.now, self.quiet_ns)

    def settled(self) -> pd.DataFrame:
        """The connections settled by the files read so far."""
        return self.engine.drain()

    def _finish_quiet(self, now_ns: int, quiet_ns: int) -> None:
        """Finish the reassembling lane's connections with no segment for ``quiet_ns`` before ``now_ns``."""
        st = self.engine.state
        for cid in [cid for cid, t in st.touched.items() if now_ns - t >= quiet_ns]:
            self.engine._finish(st.conns[cid])

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
        self._finish_quiet(st.now, quiet_ns)
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
