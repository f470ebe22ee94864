"""Timing and file order of *interleaved* synthetic traffic for ``make_big_pcap.py --rate``.

Why: a file whose connections follow one another closely (the generator's default: packets of
16 connections shuffled, a few microseconds apart) never puts a ClientHello and its ServerHello
far apart in the file. Real traffic at tens of thousands of connections per second does: the
ServerHello comes an RTT after the ClientHello, and in between the capture holds the packets of
thousands of other connections. A reader that works in fixed-size windows (tlsdetect's 16 MiB)
then sees many handshakes straddle a window boundary. This module gives every packet a time
(Poisson connection arrivals, per-connection RTT with jitter) and writes the records in time
order, carrying the packets of connections still open over to the next batch.

All of it is vectorised over packets; the only Python loop is per batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
U8Array = npt.NDArray[np.uint8]

#: Tags of the records whose file offsets the manifest compares (window straddles): the first
#: ClientHello segment, the first ServerHello segment, the client's first payload after it, the
#: server's first application data, the connection's last packet.
TAG_NONE, TAG_CLIENT_HELLO, TAG_SERVER_HELLO, TAG_CLIENT_NEXT, TAG_SERVER_NEXT, TAG_LAST = 0, 1, 2, 3, 4, 5
#: Benchmarking range (RFC 2544), 198.18.0.0/15: room for 131,072 server addresses.
SERVER_BASE, SERVER_ROOM = (198 << 24) | (18 << 16), 1 << 17


def server_pool(n: int) -> npt.NDArray[np.uint32]:
    """``n`` distinct server IPv4 addresses from 198.18.0.0/15 (skipping .0 and .255 hosts)."""
    if not 1 <= n <= SERVER_ROOM // 2:
        raise ValueError(f"--servers must be between 1 and {SERVER_ROOM // 2}, got {n}")
    hosts = np.arange(SERVER_ROOM, dtype=np.int64)
    hosts = hosts[(hosts & 0xFF != 0) & (hosts & 0xFF != 255)]
    pool: npt.NDArray[np.uint32] = (SERVER_BASE + hosts[:n]).astype(np.uint32)
    return pool


@dataclass(frozen=True)
class Timing:
    """Knobs of the timing model, in microseconds (``rtt_us``) and per second (``rate``)."""

    rate: float  # new connections per second (Poisson arrivals)
    rtt_us: float  # median round-trip time; each connection draws its own (log-normal jitter)
    rtt_jitter: float = 0.35  # sigma of log(rtt)
    server_think_us: float = 300.0  # mean time a server takes to answer a ClientHello
    data_gap_us: float = 2_000.0  # mean gap between application-data packets


def connection_starts(rng: np.random.Generator, n: int, after_us: float, rate: float) -> npt.NDArray[np.float64]:
    """Start times of ``n`` connections arriving as a Poisson process of ``rate`` per second."""
    if not 0 < rate <= 1e6:
        raise ValueError(f"--rate must be in (0, 1,000,000] connections/s, got {rate}")
    return after_us + np.cumsum(rng.exponential(1e6 / rate, n))


def packet_gaps(rng: np.random.Generator, timing: Timing, *, conn: IntArray, rtt: npt.NDArray[np.float64],
                phase: IntArray) -> npt.NDArray[np.float64]:
    """Gap of each packet after the previous packet of its connection (connection order).

    ``phase`` names what the gap waits for: 0 nothing (first packet), 1 a round trip (SYN/ACK,
    the server's first segment after the ClientHello, the client's flight after the server's),
    2 the server thinking and a round trip, 3 a back-to-back segment of the same flight, 4 a
    gap inside the application data.
    """
    n = len(conn)
    gaps = np.zeros(n)
    r = rtt[conn]
    gaps = np.where(phase == 1, r, gaps)
    gaps = np.where(phase == 2, r + rng.exponential(timing.server_think_us, n), gaps)
    gaps = np.where(phase == 3, 12.0, gaps)  # ~1,500 bytes at 1 Gbit/s
    gaps = np.where(phase == 4, rng.exponential(timing.data_gap_us, n), gaps)
    return gaps


def connection_times(gaps: npt.NDArray[np.float64], conn_first: IntArray, conn: IntArray,
                     starts: npt.NDArray[np.float64]) -> IntArray:
    """Absolute time (integer microseconds) of every packet: its connection's start plus its gaps."""
    run = np.cumsum(gaps)
    since_start = run - run[conn_first][conn]  # the first packet's own gap is not counted
    return (starts[conn] + since_start).astype(np.int64)


@dataclass
class TimeOrderedWriter:
    """Merges batches of time-sorted records into one time-ordered stream.

    A batch holds every packet of its connections, some of them later than the first packets
    of the next batch. Records up to the ``safe_us`` a batch is given (the last connection start
    of that batch: no later batch has a packet before it) are released; the rest wait to be merged
    with the next batch. Offsets of tagged records (ClientHello, ServerHello) in the output are
    kept, to count the handshakes a windowed reader sees split over two windows.
    """

    file_offset: int  # bytes already in the file (the pcap global header)
    held: U8Array = field(default_factory=lambda: np.empty(0, np.uint8))
    held_ts: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    held_len: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    held_tag: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    held_conn: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    tagged: list[IntArray] = field(default_factory=list)  # rows of (connection, tag, file offset)
    last_ts: int = -1

    def push(self, buf: U8Array, ts: IntArray, rec_len: IntArray, tag: IntArray, conn: IntArray,
             safe_us: float | None) -> U8Array:
        """Merge a batch (records in time order) with what is held; return the bytes now final."""
        cat = np.concatenate
        all_ts, all_len = cat([self.held_ts, ts]), cat([self.held_len, rec_len])
        all_tag, all_conn = cat([self.held_tag, tag]), cat([self.held_conn, conn])
        data = cat([self.held, buf])
        order = np.argsort(all_ts, kind="stable")  # held records first on ties: they are older
        src_start = np.zeros(len(all_len), np.int64)
        np.cumsum(all_len[:-1], out=src_start[1:])
        lengths = all_len[order]
        dst_start = np.zeros(len(order), np.int64)
        np.cumsum(lengths[:-1], out=dst_start[1:])
        within = np.arange(int(lengths.sum())) - np.repeat(dst_start, lengths)
        merged = data[np.repeat(src_start[order], lengths) + within]
        ts_sorted, tag_sorted, conn_sorted = all_ts[order], all_tag[order], all_conn[order]
        n_out = len(order) if safe_us is None else int(np.searchsorted(ts_sorted, safe_us, side="right"))
        cut = int(dst_start[n_out]) if n_out < len(order) else len(merged)
        out: U8Array = merged[:cut]
        if n_out:
            if ts_sorted[0] < self.last_ts:
                raise AssertionError("time order broken: a batch started before released records")
            self.last_ts = int(ts_sorted[n_out - 1])
        marked = np.flatnonzero(tag_sorted[:n_out] != TAG_NONE)
        self.tagged.append(np.stack([conn_sorted[marked], tag_sorted[marked],
                                     self.file_offset + dst_start[marked]], axis=1))
        self.file_offset += cut
        self.held, self.held_ts, self.held_len = merged[cut:], ts_sorted[n_out:], lengths[n_out:]
        self.held_tag, self.held_conn = tag_sorted[n_out:], conn_sorted[n_out:]
        return out

    def offsets(self, n_conn: int) -> IntArray:
        """[tag, connection] file offset of each tagged record (-1: the connection has none)."""
        rows = np.concatenate(self.tagged) if self.tagged else np.empty((0, 3), np.int64)
        offsets = np.full((TAG_LAST + 1, n_conn), -1, np.int64)
        offsets[rows[:, 1], rows[:, 0]] = rows[:, 2]
        return offsets

    def hello_offsets(self, n_conn: int) -> tuple[IntArray, IntArray]:
        """File offset of each connection's first ClientHello and ServerHello record (-1: none)."""
        offsets = self.offsets(n_conn)
        return offsets[TAG_CLIENT_HELLO], offsets[TAG_SERVER_HELLO]

    def straddles(self, window: int, n_conn: int) -> int:
        """Connections whose ClientHello and ServerHello start in different ``window``-byte windows."""
        ch, sh = self.hello_offsets(n_conn)
        both = (ch >= 0) & (sh >= 0)
        return int((ch[both] // window != sh[both] // window).sum())
