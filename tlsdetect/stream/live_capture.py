"""``tlsdetect stream --source pcap:IFACE`` and ``pcap:-``: a live capture as a stream source.

The capture is a separate, privileged process, never this one: ``dumpcap`` (Wireshark's capture
tool, the one with ``cap_net_raw``) writes a ring buffer of files in a spool directory,
filtered in the kernel by :func:`~tlsdetect.readers.pcap.bpf.capture_filter`. For ``pcap:-`` a
thread cuts standard input (``tcpdump -w -``) into windows
(:class:`~tlsdetect.readers.pcap.splitter.StreamSplitter`) written in the same pattern. Either
way :class:`~tlsdetect.stream.ring.RingQueue` hands finished files out oldest first, bounded on
disk (the oldest dropped and counted when scoring falls behind), and one
:class:`~tlsdetect.readers.pcap.rolling.RollingEngine` reads them all, so a handshake spanning
two files gives one row. The rows settled by a file (by the files queued together, when
reading is behind) are one batch of the stream's loop, in the shape of a follower, scored by
:class:`~tlsdetect.stream.rows_processor.RowsProcessor` and sent to the sinks like any other
source's. No checkpoint: a packet is read once, from a file that
is deleted once read.

Counts (``/metrics``, ``tlsdetect_stream_capture_total{name}``): ``ring_files_read``,
``ring_files_dropped``, ``ring_bytes_dropped``, ``ring_files_missing``, ``packets``,
``unreadable_files``.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from tlsdetect.readers.pcap.bpf import capture_filter
from tlsdetect.readers.pcap.capture import WINDOW, CaptureError
from tlsdetect.readers.pcap.rolling import RollingEngine
from tlsdetect.readers.pcap.splitter import StreamSplitter
from tlsdetect.stream.checkpoint import Checkpoint
from tlsdetect.stream.follow import Batch
from tlsdetect.stream.metrics import Metrics
from tlsdetect.stream.ring import RingQueue, ring_name

__all__ = ["LiveCapture", "LiveCaptureError", "parse_live"]

log = logging.getLogger("tlsdetect.stream.loop")

PREFIX = "ring"
#: How long dumpcap may take to open the interface and write its first file.
START_S = 10.0
#: A capture quiet this long (wall clock) has its open handshakes settled with what was kept.
QUIET_NS = 1_000_000_000
#: A pipe whose packets were this close to the wall clock when read is live (its clock is ours):
#: only then does the wall clock settle its handshakes (a pipe replaying an old capture keeps its
#: own clock). An interface is always live, however far behind scoring is.
LIVE_SKEW_NS = 60_000_000_000
#: How much earlier than a ring file's last write a packet may still be delivered to dumpcap and
#: land in the next file (the kernel hands packets over in blocks, 250 ms apart at most).
EDGE_SLACK_NS = 500_000_000
#: Queued ring files read into one batch at most (files, bytes past the first): a catching-up
#: reader's batches stay a few seconds of capture each.
BATCH_FILES = 16
BATCH_BYTES = 64 << 20


class LiveCaptureError(ValueError):
    """A capture that cannot start (no dumpcap, no such interface, no privilege): one line, with dumpcap's."""


def parse_live(spec: str) -> str | None:
    """The interface of ``pcap:IFACE`` (``-``: standard input), None when ``spec`` is not a capture source."""
    kind, sep, iface = spec.partition(":")
    if kind != "pcap" or not sep:
        return None
    if not iface or iface.startswith("//"):
        raise LiveCaptureError(f"{spec!r}: expected pcap:IFACE or pcap:-")
    return iface


class LiveCapture:
    """Ring files from dumpcap (or windows of standard input) -> one engine -> a batch of rows per file."""

    live = True
    #: No offsets, no checkpoint (the stream's Source interface: "" commits nothing).
    key = ""

    def __init__(
        self, iface: str, spool: Path, *, metrics: Metrics | None = None, max_files: int = 3600,
        max_bytes: int = 1 << 30,
        ring_bytes: int = 16 << 20, ring_seconds: int = 1, bpf: str | None = None, window: int = WINDOW,
        stdin: BinaryIO | None = None, dumpcap: str = "dumpcap",
    ) -> None:  # fmt: skip
        self.iface = iface
        self.file = f"pcap:{iface}"
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        for stale in self.spool.glob(f"{PREFIX}_*"):  # a previous run's files: their connections are gone
            stale.unlink()
        self.metrics = metrics if metrics is not None else Metrics()
        self.events: list[str] = []
        self.ended = False
        self._finished = False
        self.rows = 0
        self.engine = RollingEngine(self.file, window=window, quiet_ns=QUIET_NS)
        self._warned: set[str] = set()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stdin_done = threading.Event()
        self._stop = threading.Event()
        self.error: str | None = None
        self._settled_at = 0
        #: the live edge: wall time before which every captured packet is in a file already read
        #: (files are read in order, so the handshakes quiet since before it are quiet indeed)
        self._edge_ns = 0
        self._written_ns = 0  # pcap:-: when the stdin thread last had every byte read in a file
        self._live = iface != "-"  # a pipe: once its packets are seen to be fresh
        if iface == "-":
            self.queue = RingQueue(self.spool, PREFIX, max_files, max_bytes, newest_open=False)
            self._thread = threading.Thread(target=self._read_stdin, args=(stdin, ring_bytes, ring_seconds),
                                            daemon=True, name="pcap-stdin")  # fmt: skip
            self._thread.start()
        else:
            self.queue = RingQueue(self.spool, PREFIX, max_files, max_bytes, newest_open=True)
            self.command = self._dumpcap_command(dumpcap, max_files, ring_bytes, ring_seconds, bpf)
            self._start_dumpcap()

    # -- producers
    def _dumpcap_command(self, dumpcap: str, max_files: int, ring_bytes: int, ring_seconds: int,
                         bpf: str | None) -> list[str]:  # fmt: skip
        exe = shutil.which(dumpcap)
        if exe is None:
            raise LiveCaptureError(f"{self.file}: {dumpcap} not found (Debian: apt-get install tshark, which has it)")
        # files: a disk ceiling of dumpcap's own, above ours: what it deletes shows as a gap and is counted
        return [exe, "-q", "-n", "-i", self.iface, "-f", capture_filter() if bpf is None else bpf,
                "-w", str(self.spool / f"{PREFIX}.pcapng"), "-b", f"filesize:{max(1, ring_bytes // 1024)}",
                "-b", f"duration:{max(1, ring_seconds)}", "-b", f"files:{max_files + 8}"]  # fmt: skip

    def _start_dumpcap(self) -> None:
        self._stderr = (self.spool / "dumpcap.log").open("w+b")
        self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self._stderr)  # fmt: skip
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LiveCaptureError(f"{self.file}: dumpcap exited ({self._proc.returncode}): {self._dumpcap_said()}")
            if self.queue.files():
                return
            time.sleep(0.02)
        self.close()
        said = self._dumpcap_said()
        raise LiveCaptureError(f"{self.file}: dumpcap wrote no ring file within {START_S:.0f} s: {said}")

    def _dumpcap_said(self) -> str:
        self._stderr.seek(0)
        lines = [x.strip() for x in self._stderr.read().decode("utf-8", "replace").splitlines() if x.strip()]
        useful = [x for x in lines if not x.startswith(("Capturing on", "File:"))]
        return " / ".join(useful[-3:]) or "(nothing on stderr)"

    def _read_stdin(self, stream: BinaryIO | None, window_bytes: int, window_s: int) -> None:
        """Cut standard input into ring files: at ``window_bytes`` of records or ``window_s`` after a window began."""
        splitter, number = StreamSplitter(), 0
        fd = (stream if stream is not None else os.fdopen(0, "rb", closefd=False)).fileno()

        def write() -> None:
            nonlocal number
            data = splitter.cut()
            if data is None:
                return
            number += 1
            final = self.spool / ring_name(PREFIX, number)
            tmp = final.with_name(final.name + ".part")
            tmp.write_bytes(data)
            tmp.rename(final)  # whole, or not there

        began = time.monotonic()
        try:
            while not self._stop.is_set():
                idle_since = time.time_ns()
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready and not splitter.buffered:  # every byte before idle_since is in a file
                    self._written_ns = idle_since
                if ready:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    splitter.feed(chunk)
                if splitter.pending >= window_bytes or (splitter.pending and time.monotonic() - began >= window_s):
                    write()
                    began = time.monotonic()
            write()
        except (CaptureError, OSError) as exc:
            self.error = str(exc)
            write()  # the whole records before the damage
        finally:
            self._stdin_done.set()

    def _producer_done(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        return self._stdin_done.is_set()

    # -- the follower's face
    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(0, 0, "", 0, self.rows)

    def read(self, max_lines: int, *, final: bool = False) -> Batch | None:
        """The rows settled by the next finished ring files (None when no file is finished yet).

        The files queued when it is called, up to :data:`BATCH_FILES` and :data:`BATCH_BYTES`, are
        read one after another and their rows are one batch: behind, the reader catches up with
        one table and one scoring call per batch, not per file. ``max_lines`` does not cut a
        batch's rows (they are one table)."""
        del max_lines, final
        if self.ended:
            return None
        done = self._producer_done()
        written = self._written_ns  # before take: the files holding the bytes before it are on disk by now
        paths = self.queue.take_many(producer_done=done, max_files=BATCH_FILES, max_bytes=BATCH_BYTES)
        rows: pd.DataFrame | None = None
        name = ""
        if paths:
            name = paths[0].name if len(paths) == 1 else f"{paths[0].name}..{paths[-1].name}"
            for path in paths:
                self._read_file(path)
            rows = self.engine.settled()
        elif not done:
            rows, name = self._settle(written), "settled"
        elif not self._finished:
            self._finished = True
            rows, name = self.engine.finish(), "end"
            self._ended_note()
        elif done:
            self.ended = True
        self._count()
        if rows is None or not len(rows):
            return None
        first = self.rows + 1
        self.rows += len(rows)
        return Batch(pickle.dumps(rows, protocol=5), first, f"{self.file}/{name}", self.checkpoint, len(rows))

    def _read_file(self, path: Path) -> None:
        """One ring file through the engine, then deleted; an unreadable one skipped, counted, said."""
        try:
            edge = path.stat().st_mtime_ns - EDGE_SLACK_NS if self._proc is not None else 0
            self.engine.read_file(path)
            self._edge_ns = max(self._edge_ns, edge)
            self._live = self._live or abs(time.time_ns() - self.engine.last_packet_ns) < LIVE_SKEW_NS
        except (CaptureError, OSError) as exc:  # a file dumpcap left unreadable
            self.metrics.capture["unreadable_files"] = self.metrics.capture.get("unreadable_files", 0) + 1
            self.events.append(f"{self.file}: {path.name} skipped: {exc}")
        finally:
            path.unlink(missing_ok=True)

    def _settle(self, written: int) -> pd.DataFrame | None:
        """Rows of handshakes quiet for :data:`QUIET_NS` at the live edge (at most 4 times a second).

        Not the wall clock: the file dumpcap is writing (the pipe's bytes not yet cut) may hold
        packets of a handshake that looks quiet, so only the time up to which every packet has
        been read counts: a file's last write, less :data:`EDGE_SLACK_NS` (dumpcap closes a file
        a second even when the interface is quiet); for the pipe, when its thread last had every
        byte in a file (``written``, read before the queue was found empty)."""
        now = time.time_ns()
        if now - self._settled_at < 250_000_000 or not self.engine.last_packet_ns or not self._live:
            return None
        self._settled_at = now
        edge = self._edge_ns if self._proc is not None else written
        return self.engine.settle(min(now, edge), QUIET_NS)

    def _ended_note(self) -> None:
        if self._proc is not None and self._proc.returncode not in (0, None) and not self._stop.is_set():
            self.events.append(f"{self.file}: dumpcap exited ({self._proc.returncode}): {self._dumpcap_said()}")
        if self.error:
            self.events.append(f"{self.file}: {self.error}")

    def _count(self) -> None:
        c, q, s = self.metrics.capture, self.queue, self.engine.stats
        c["ring_files_read"] = q.taken
        c["ring_files_dropped"] = q.dropped_files
        c["ring_bytes_dropped"] = q.dropped_bytes
        c["ring_files_missing"] = q.missing_files
        c["packets"] = int(s.counts.get("packets", 0))
        for w in s.warnings:
            if w not in self._warned:
                self._warned.add(w)
                self.events.append(w)

    def lag_bytes(self) -> int:
        return self.queue.queued_bytes()

    def close(self) -> None:
        """Stop the producer (dumpcap gets SIGTERM and closes its file) and the stdin thread."""
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            self._stderr.close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def stop_capture(self) -> None:
        """End the capture but keep reading: what dumpcap wrote is scored, then the source ends."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
