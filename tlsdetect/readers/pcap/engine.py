"""The native pcap/pcapng engine: capture bytes -> connections table, in chunks.

Per window of the file (see :mod:`.capture`) everything up to "which packets matter" is numpy:

1. index the records, decode link/IP/TCP headers (:mod:`.packets`);
2. mark packets whose payload starts a TLS handshake record (``16 03 0x .. .. 01|02``): the
   lowest-sequence such packet of a flow direction opens it, wherever it is in the stream
   (after an HTTP CONNECT, SOCKS or STARTTLS preamble) and on any port;
3. hand complete, ordinary handshakes to the fast lane (:mod:`.fastlane`), which fingerprints
   them once per distinct hello, without Python per connection; the packets of young handshakes
   not yet complete are carried (:mod:`.carry`) in front of the next window's, where the fast
   lane sees more of them;
4. for the rest, select the segments whose sequence range lies inside the bytes each open
   direction still needs.

Only those segments reach Python, where :func:`.tls_stream.reassemble` orders them (any arrival
order, retransmissions, overlaps) and :class:`.tls_stream.Connection` parses the handshake and
says how many more bytes each side needs. Step 4 then repeats on the same window for the
directions whose need grew (a HelloRetryRequest, a long certificate chain), so data packets
past the handshake are never touched by Python.

UDP takes a path of its own (:mod:`.datagrams`): numpy picks the datagrams that can carry a QUIC
Initial or a DTLS hello (in the prefetch thread), and only those are decrypted and read, one state
per connection, into rows with ``transport`` ``quic`` or ``dtls``.

:func:`iter_connections` is the reader: its slow-lane rows carry hello lists but no fingerprints
and no issuer keys, which :func:`tlsdetect.fingerprint.enrich` adds as the stage after reading
(the registry applies it). :func:`iter_pcap` and :func:`read_pcap` are that reader plus the
stage, for callers outside the registry. The one fingerprint computed here is of a
HelloRetryRequest's first ClientHello (``ja3_retry``/``ja4_retry``): the table keeps no hello
lists of it, so no later stage could.

Memory: one window, one chunk of rows, the carry and the pending handshakes, which :mod:`.pending`
caps as a whole (open directions and held bytes; the carry is kept within the room they leave; the
oldest-idle are evicted with a counted reason).

Size: one module because the window steps share the pending state and its accounting; the
prefetch thread and the table merge at the end are short.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect import schema
from tlsdetect.fingerprint import client_fingerprints, enrich
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap import carry, ccore, pending
from tlsdetect.readers.pcap.capture import WINDOW, CaptureReader, PacketBatch
from tlsdetect.readers.pcap.datagrams import Candidates, Datagrams, select
from tlsdetect.readers.pcap.fastlane import FastLane, Segments
from tlsdetect.readers.pcap.keylog_rows import decrypted_columns, keyed_starts, mark_unkeyed, random_table
from tlsdetect.readers.pcap.packets import PROTO_TCP, Decoded, decode, flow_hash, linktype_name
from tlsdetect.readers.pcap.pending import DIRECTION_COST, EVICTED, EVICTED_WHOLE, SEGMENT_COST, evict
from tlsdetect.readers.pcap.tls_stream import (
    Connection,
    Endpoint,
    conflicting_segments,
    read_direction,
    reassemble_runs,
)
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.keylog import KeyLog
from tlsdetect.wire.tls import ClientHello

__all__ = ["iter_connections", "iter_pcap", "read_pcap"]

log = logging.getLogger(__name__)

#: Most bytes of one direction we ever reassemble (Suricata's ``stream.reassembly.depth``): hellos and
#: a long chain. In bytes, never records or rounds (a fixed number of rounds was an evasion).
MAX_STREAM = 256 * 1024
#: A connection untouched for this long in capture time is finished with what it has; so are the
#: retransmissions of a fast-lane hello swallowed for this long. Capture time, not a count of
#: windows: how much traffic a window holds depends on the window size and the rate (a count of 8
#: windows of 64 KiB at 50,000 connections/s was ~1 ms, less than a round trip). Memory is bounded
#: by :mod:`.pending`'s caps, not by this.
IDLE_NS = 5_000_000_000
#: Rounds per window that read exactly what the parser asks for; then a direction still growing reads
#: ahead, doubling each round: rounds stay logarithmic in its bytes (40k one-byte records: ~25).
EXACT_ROUNDS = 8
#: Bytes of a server's first flight taken at once (a typical chain fits).
SERVER_FIRST_FLIGHT = 16 * 1024
#: Rows per chunk handed to the sinks.
CHUNK_ROWS = 10_000
#: ``incomplete`` of a connection whose handshake segments overlapped with different bytes (also the counted
#: skip's name when the row already says another reason).
OVERLAP_CONFLICT = "overlap_conflict"

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class _Direction:
    conn: Connection
    forward: bool
    base_seq: int
    need: int
    segments: list[tuple[int, bytes, int]] = field(default_factory=list)  # (offset, bytes, capture position)
    dirty: bool = False
    #: offset -> index in ``segments`` of the longest kept there: a retransmission no longer than it adds
    #: nothing (its bytes are compared with the kept ones: other bytes are a conflict).
    seen: dict[int, int] = field(default_factory=dict)
    #: offsets of retransmissions at a kept offset whose bytes differed (partial overlaps are found at the end)
    conflicts: list[int] = field(default_factory=list)
    held: int = DIRECTION_COST  # estimated bytes of it, ``segments`` and the reassembled prefix (``.pending``)
    #: the furthest stream offset any of its segments reached, chosen or not: past the reassembled bytes,
    #: the direction has bytes after a gap (a flight walk ending there was cut, see ``records.ran_out``)
    far: int = 0


@dataclass(slots=True)
class _State:
    flows: dict[int, _Direction] = field(default_factory=dict)
    touched: dict[int, int] = field(default_factory=dict)  # id(conn) -> capture time (ns) last touched
    conns: dict[int, Connection] = field(default_factory=dict)
    #: id(conn) -> {forward: flow key}; both keys are known when the first direction opens.
    conn_keys: dict[int, dict[bool, int]] = field(default_factory=dict)
    rows: list[dict[str, object]] = field(default_factory=list)
    window: int = 0
    now: int = 0  # the latest capture time (ns) seen so far
    held: int = 0  # the sum of every open direction's ``held`` (see :mod:`.pending`)


def _start_mask(buf: npt.NDArray[np.uint8], p: I64, plen: I64) -> npt.NDArray[np.bool_]:
    """Payloads that begin a TLS handshake record carrying a Client- or ServerHello.

    A first segment may be shorter than the record header (a hello split after 1-5 bytes), so
    each test applies only where its byte was captured.
    """
    g = Gather(buf)
    b0, b1, b2, b5 = g.u8(p), g.u8(p + 1), g.u8(p + 2), g.u8(p + 5)
    mask: npt.NDArray[np.bool_] = (
        (b0 == 0x16)
        & ((plen < 2) | (b1 == 3))
        & ((plen < 3) | (b2 <= 4))
        & ((plen < 6) | (b5 == 1) | (b5 == 2))
    )
    return mask


@dataclass(slots=True)
class _Window:
    """What the engine needs of one window and can be had without its state: the TCP payload
    packets (flow keys included, sorted by key once) and which of them start a hello. The
    prefetch thread prepares it while the engine works on the window before."""

    buf: npt.NDArray[np.uint8]
    seg: Segments
    start: I64
    fragments: int
    unsupported: dict[int, int]
    udp: Candidates  # the UDP datagrams that may carry a QUIC or DTLS hello (:mod:`.datagrams`)


def _prepare(batch: PacketBatch, dec: Decoded, *, compiled: bool | None = None) -> _Window:
    idx = np.flatnonzero(dec.valid & (dec.proto == PROTO_TCP) & (dec.payload_len > 0))
    src_hi, src_lo, dst_hi, dst_lo = dec.src_hi[idx], dec.src_lo[idx], dec.dst_hi[idx], dec.dst_lo[idx]
    sport, dport = dec.sport[idx], dec.dport[idx]
    keys = flow_hash(src_hi, src_lo, dst_hi, dst_lo, sport, dport, compiled=compiled)
    payload, plen = dec.payload[idx], dec.payload_len[idx]
    seg = Segments(keys, dec.seq[idx], payload, plen, batch.ts_ns[idx], src_hi, src_lo, dst_hi, dst_lo, sport, dport)
    start = np.flatnonzero(_start_mask(batch.buf, payload, plen))
    if len(start):
        seg.by_key()  # the fast lane's flow-key order
    return _Window(batch.buf, seg, start, dec.fragments, dec.unsupported, select(batch.buf, dec, batch.ts_ns))


class _Engine:
    def __init__(self, source: str, *, fast_lane: bool = True, slow_batch: int = 1, keylog: KeyLog | None = None,
                 carry_bytes: int = pending.MAX_PENDING_BYTES
                 ) -> None:
        self.source = source
        #: ``--keylog``: connections it has secrets for go to the reassembling lane, which decrypts their chain.
        self.keylog = keylog
        self.keyed = random_table(keylog) if keylog is not None else None
        # Slow-lane rows wait until there are this many (or the file ends): each batch costs a
        # table conversion and a merge, worth paying for a thousand rows, not for eight.
        self.slow_batch = slow_batch
        self.state = _State()
        #: counts: tcp_payload_packets, handshake_start_packets, segments_parsed, connections,
        #: fast_lane_connections, ip_fragments_skipped, carried_connections (carried into the next window,
        #: once per window it was carried out of)
        self.stats = ReadStats()
        self.fast = FastLane(recent_ns=IDLE_NS)
        #: Packets of handshakes the fast lane will finish in a later window (see :mod:`.carry`), at
        #: most ``carry_bytes`` of them and within the room :mod:`.pending`'s caps leave. Not a
        #: window's bytes: handshakes waiting on a flight (TLS 1.3 with no server record after the
        #: client's Finished) stay carried until quiet for ``window_flights.QUIET_NS``, and at 50,000
        #: connections/s they outgrew a 16 MiB window's budget (~4x), sending most to the slow lane.
        self.carry = carry.Carry.empty()
        self.carry_bytes = carry_bytes
        self.use_fast_lane = fast_lane
        self.udp = Datagrams(self.stats)
        self.emitted = 0
        #: Capture position of the window's first TCP payload packet (the packets before it).
        self.base = 0

    # -- per window ---------------------------------------------------------------------------

    def window(self, w: _Window, *, final: bool = False) -> None:
        """One window's packets, after the carried ones (``final``: nothing is carried further)."""
        st = self.state
        st.window += 1
        counts = self.stats.counts
        counts["ip_fragments_skipped"] += w.fragments
        for code, packets in w.unsupported.items():
            self.stats.skipped[f"unsupported link type {code} ({linktype_name(code)})"] += packets
        self.udp.window(w.buf, w.udp)
        counts["tcp_payload_packets"] += len(w.seg.keys)
        counts["handshake_start_packets"] += len(w.start)
        if len(w.seg.keys):
            st.now = max(st.now, int(w.seg.ts.max()))
        # Carried packets go first, at the capture positions just before the window's (their order
        # among themselves and before the window's is what the lanes compare, within a connection).
        held, self.carry = self.carry, carry.Carry.empty()
        buf, seg, start = carry.merge(held, w.buf, w.seg, w.start)
        base = self.base - len(held)
        self.base += len(w.seg.keys)
        if len(seg.keys) == 0:
            self._expire()
            return
        if len(start) and self.use_fast_lane:
            busy = np.fromiter(st.flows.keys(), dtype=np.uint64, count=len(st.flows))
            # --keylog: connections it has secrets for go to the reassembling lane (it decrypts their chain),
            # neither fast nor carried
            keyed = keyed_starts(buf, seg.payload[start], seg.plen[start], self.keyed) if self.keyed is not None \
                else np.zeros(len(start), dtype=bool)
            fast = np.zeros(len(start), dtype=bool)
            fast[~keyed] = self.fast.claim_handshakes(buf, seg, start[~keyed], busy, base, final=final)
            start, keyed = start[~fast], keyed[~fast]
            if len(start) and not final:
                carried = np.zeros(len(start), dtype=bool)
                carried[~keyed] = self._carry(buf, seg, start[~keyed], busy)
                start = start[~carried]
        if len(start):
            self._open_new(buf, seg, start)
        self._select_rounds(buf, seg.keys, seg.seq, seg.payload, seg.plen, base)
        self._expire()

    def flush(self) -> None:
        """At the end of the capture: the carried handshakes, taken or followed as they stand."""
        if len(self.carry):
            empty = carry.Carry.empty()
            self.window(_Window(empty.buf, empty.seg, np.zeros(0, dtype=np.int64), 0, {}, Candidates.empty()),
                        final=True)

    def _carry(self, buf: npt.NDArray[np.uint8], seg: Segments, start: I64, busy: npt.NDArray[np.uint64]
               ) -> npt.NDArray[np.bool_]:
        """Keep the connections of the hello starts ``start`` (not taken by the fast lane) for the next
        window where :mod:`.carry` allows; the mask of ``start`` carried. A connection the slow lane
        already follows in either direction stays with it."""
        st = self.state
        keys = seg.keys[start]
        rev = flow_hash(seg.dst_hi[start], seg.dst_lo[start], seg.src_hi[start], seg.src_lo[start],
                        seg.dport[start], seg.sport[start])
        _, conn = np.unique(np.minimum(keys, rev), return_inverse=True)
        conn = conn.reshape(-1)
        n = int(conn.max()) + 1
        free = np.ones(n, dtype=bool)
        if len(busy):
            busy = np.sort(busy)
            for k in (keys, rev):
                pos = np.minimum(np.searchsorted(busy, k), len(busy) - 1)
                free[conn[busy[pos] == k]] = False
        first_ts = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_ts, conn, seg.ts[start])
        dir_keys, at = np.unique(np.concatenate([keys, rev]), return_index=True)
        dir_conn = np.concatenate([conn, conn])[at]
        dir_held, _ = carry.held(seg, start, dir_keys, depth=MAX_STREAM)
        conn_held = np.bincount(dir_conn, weights=dir_held, minlength=n).astype(np.int64)
        room_bytes = min(pending.MAX_PENDING_BYTES - st.held, self.carry_bytes)
        chosen = free & carry.choose(first_ts, conn_held, st.now,
                                     room_directions=pending.MAX_PENDING_DIRECTIONS - len(st.flows),
                                     room_bytes=room_bytes)
        if not chosen.any():
            return np.zeros(len(start), dtype=bool)
        self.carry, _, _ = carry.keep(buf, seg, start, dir_keys[chosen[dir_conn]], depth=MAX_STREAM)
        self.stats.counts["carried_connections"] += int(chosen.sum())
        mask: npt.NDArray[np.bool_] = chosen[conn]
        return mask

    def _open_new(self, buf: npt.NDArray[np.uint8], seg: Segments, start: I64) -> None:
        """Open the flow directions that the hello-start packets ``start`` begin, if new."""
        st = self.state
        rev = flow_hash(
            seg.dst_hi[start], seg.dst_lo[start], seg.src_hi[start], seg.src_lo[start], seg.dport[start],
            seg.sport[start],
        )
        uniq, first = carry.lowest_start(seg.keys[start], seg.seq[start])
        known = np.fromiter(st.flows.keys(), dtype=np.uint64, count=len(st.flows))
        fresh = ~np.isin(uniq, known)
        # Room first: a window of new flows must not pile on a full table; nor may one window's burst
        # pass the caps (the directions past the room are not opened: each new connection among them is
        # a row that says ``pending_evicted``, at once).
        self._bound(min(int(fresh.sum()), pending.MAX_PENDING_DIRECTIONS))
        free = pending.room(len(st.flows), st.held, max_directions=pending.MAX_PENDING_DIRECTIONS,
                            max_bytes=pending.MAX_PENDING_BYTES)
        refused: set[int] = set()
        for j in np.sort(first[fresh]).tolist():  # one Python step per new flow direction
            i = int(start[j])
            key, back = int(seg.keys[i]), int(rev[j])
            if free <= 0 and back not in st.flows:
                if back not in refused:  # one row per connection, from the side seen first
                    self._refuse(seg, i)
                refused.add(key)
                continue
            free -= 1
            self._open(
                key,
                back,
                Endpoint(int(seg.src_hi[i]), int(seg.src_lo[i]), int(seg.sport[i])),
                Endpoint(int(seg.dst_hi[i]), int(seg.dst_lo[i]), int(seg.dport[i])),
                int(seg.seq[i]),
                int(seg.ts[i]),
                buf,
                int(seg.payload[i]),
                int(seg.plen[i]),
            )

    def _refuse(self, seg: Segments, i: int) -> None:
        """The row of a connection the table had no room to open (its hello was never read)."""
        conn = Connection(
            a=Endpoint(int(seg.src_hi[i]), int(seg.src_lo[i]), int(seg.sport[i])),
            b=Endpoint(int(seg.dst_hi[i]), int(seg.dst_lo[i]), int(seg.dport[i])),
            ts_ns=int(seg.ts[i]),
        )
        row = conn.row()
        row["incomplete"] = EVICTED
        self.state.rows.append(row)
        self.stats.counts[EVICTED] += 1

    def _open(
        self, key: int, rev: int, src: Endpoint, dst: Endpoint, seq: int, ts: int,
        buf: npt.NDArray[np.uint8], p: int, plen: int,
    ) -> None:
        st = self.state
        other = st.flows.get(rev)
        if other is not None:
            conn, forward = other.conn, not other.forward
        else:
            conn, forward = Connection(a=src, b=dst, ts_ns=ts), True
            st.conns[id(conn)] = conn
            st.conn_keys[id(conn)] = {True: key, False: rev}
        need = 5
        if plen >= 5:
            need = 5 + ((int(buf[p + 3]) << 8) | int(buf[p + 4]))
        if plen >= 6 and buf[p + 5] == 2:
            # A server's first flight (ServerHello, certificates, key exchange) is read in one
            # round instead of one round per record.
            need = max(need, SERVER_FIRST_FLIGHT)
        st.flows[key] = _Direction(conn=conn, forward=forward, base_seq=seq, need=need)
        st.held += DIRECTION_COST
        st.touched[id(conn)] = st.now

    def _select_rounds(
        self, buf: npt.NDArray[np.uint8], keys: npt.NDArray[np.uint64], seq: I64, payload: I64, plen: I64, first_at: int
    ) -> None:
        st = self.state
        if not st.flows:
            return
        # Only packets of open directions can be chosen (none opens during the rounds): the rounds look at those.
        open_keys = np.sort(np.fromiter(st.flows.keys(), dtype=np.uint64, count=len(st.flows)))
        pos = np.minimum(np.searchsorted(open_keys, keys), len(open_keys) - 1)
        sub = np.flatnonzero(open_keys[pos] == keys)
        rounds = 0
        while len(sub):  # each round takes at least one packet of ``sub`` or ends
            rounds += 1
            wanting = [(k, d) for k, d in st.flows.items() if d.need > 0]
            if not wanting:
                return
            k_arr = np.fromiter((k for k, _ in wanting), dtype=np.uint64, count=len(wanting))
            order = np.argsort(k_arr)
            k_arr = k_arr[order]
            base = np.fromiter((d.base_seq for _, d in wanting), dtype=np.int64, count=len(wanting))[order]
            need = np.fromiter((d.need for _, d in wanting), dtype=np.int64, count=len(wanting))[order]
            if rounds > EXACT_ROUNDS:
                need = np.minimum(need << min(rounds - EXACT_ROUNDS, 20), MAX_STREAM)
            s_keys = keys[sub]
            pos = np.minimum(np.searchsorted(k_arr, s_keys), len(k_arr) - 1)
            rel = (seq[sub] - base[pos]) & 0xFFFFFFFF
            rel = np.where(rel >= 1 << 31, rel - (1 << 32), rel)
            hit = (k_arr[pos] == s_keys) & (rel + plen[sub] > 0) & (rel < need[pos])
            chosen, chosen_rel, sub = sub[hit], rel[hit].tolist(), sub[~hit]
            if len(chosen) == 0:
                self._note_far(s_keys, k_arr[pos] == s_keys, rel + plen[sub])
                return
            self.stats.counts["segments_parsed"] += len(chosen)
            touched: dict[int, Connection] = {}
            for j, r in zip(chosen.tolist(), chosen_rel, strict=True):  # Python only for segments inside a handshake
                d = st.flows[int(keys[j])]
                size = int(plen[j]) + min(r, 0)
                start = int(payload[j]) - min(r, 0)
                kept = d.seen.get(max(r, 0))
                if kept is not None and len(d.segments[kept][1]) >= size:
                    # a retransmission adds nothing (the earlier copy wins) and is no progress; other bytes
                    # than the kept ones are a conflict (the server may have read either)
                    if d.segments[kept][1][:size] != buf[start : start + size].tobytes():
                        d.conflicts.append(max(r, 0))
                    continue
                touched[id(d.conn)] = d.conn
                d.segments.append((max(r, 0), buf[start : start + size].tobytes(), first_at + j))
                d.far = max(d.far, max(r, 0) + size)
                d.seen[max(r, 0)] = len(d.segments) - 1
                d.held += size + SEGMENT_COST
                st.held += size + SEGMENT_COST
                d.dirty = True
            self._reparse(touched.values())

    def _note_far(self, s_keys: npt.NDArray[np.uint64], mine: npt.NDArray[np.bool_], end: I64) -> None:
        """Remember how far the segments left unchosen by the rounds reach in their directions (the wanting
        ones: ``mine``), once per direction that has any past what it holds."""
        if not mine.any():
            return
        k, e = s_keys[mine], end[mine]
        order = np.lexsort((e, k))
        last = np.r_[k[order][1:] != k[order][:-1], True]
        flows = self.state.flows
        for key, far in zip(k[order][last].tolist(), e[order][last].tolist(), strict=True):
            d = flows[key]
            d.far = max(d.far, far)

    def _reparse(self, conns: Iterable[Connection]) -> None:
        st = self.state
        for conn in conns:
            st.touched[id(conn)] = st.now
            dirs = self._directions(conn)
            for d in dirs:
                if d.dirty:
                    data, starts, arrivals = reassemble_runs(d.segments, MAX_STREAM)
                    old = conn.views.get(d.forward)
                    grew = len(data) - (0 if old is None else len(old.data))
                    d.held += grew
                    st.held += grew
                    view = conn.views[d.forward] = read_direction(data, old)
                    view.data, view.starts, view.arrivals = data, starts, arrivals
                    view.capped = len(data) >= MAX_STREAM
                    d.dirty = False
            for d in dirs:
                want = conn.want(d.forward)
                d.need = 0 if want is None else min(want, MAX_STREAM)
            if conn.settled():
                self._finish(conn)

    def _directions(self, conn: Connection) -> list[_Direction]:
        return [d for d in (self._dir_of(conn, True), self._dir_of(conn, False)) if d is not None]

    def _dir_of(self, conn: Connection, forward: bool) -> _Direction | None:
        return self.state.flows.get(self.state.conn_keys[id(conn)][forward])

    def _finish(self, conn: Connection, reason: str | None = None) -> None:
        st = self.state
        conflicts = 0
        for key in st.conn_keys.pop(id(conn)).values():
            d = st.flows.pop(key, None)
            st.held -= 0 if d is None else d.held
            view = None if d is None else conn.views.get(d.forward)
            if d is not None and view is not None:  # within the plaintext handshake the row was read from
                conflicts += sum(o < view.consumed for o in d.conflicts)
                conflicts += conflicting_segments(d.segments, view.data, view.consumed)
                view.hole = d.far > len(view.data) and not view.capped
        st.conns.pop(id(conn), None)
        st.touched.pop(id(conn), None)
        # A hello that began and was never read (cut, too deep, junk) is a row that says so (``incomplete``).
        if reason is not None or any(v.client_hellos or v.server_hellos or v.data for v in conn.views.values()):
            row = conn.row()
            if reason is not None and row["incomplete"] is not None:
                row["incomplete"] = reason
            elif reason is not None:
                self.stats.skipped[EVICTED_WHOLE] += 1
            if self.keylog is not None:
                row.update(decrypted_columns(conn, self.keylog, self.stats))
            if conflicts and row["incomplete"] is None:
                row["incomplete"] = OVERLAP_CONFLICT  # what the sensor read may not be what the server read
            elif conflicts:
                self.stats.skipped[OVERLAP_CONFLICT] += 1
            st.rows.append(row)

    def _expire(self) -> None:
        st = self.state
        old = [cid for cid, t in st.touched.items() if st.now - t > IDLE_NS]
        for cid in old:
            self._finish(st.conns[cid])
        self._bound()

    def _bound(self, opening: int = 0) -> None:
        """Evict the oldest-idle connections while the pending ones (and ``opening`` directions
        about to open) pass :mod:`.pending`'s caps."""
        st = self.state
        max_dirs = max(0, pending.MAX_PENDING_DIRECTIONS - opening)
        max_bytes = max(0, pending.MAX_PENDING_BYTES - opening * DIRECTION_COST)
        if len(st.flows) <= max_dirs and st.held <= max_bytes:
            return
        conns = list(st.conns.values())
        dirs = [self._directions(c) for c in conns]
        victims = evict(
            np.fromiter((st.touched[id(c)] for c in conns), dtype=np.int64, count=len(conns)),
            np.fromiter((len(ds) for ds in dirs), dtype=np.int64, count=len(conns)),
            np.fromiter((sum(d.held for d in ds) for ds in dirs), dtype=np.int64, count=len(conns)),
            max_directions=max_dirs, max_bytes=max_bytes,
        )
        self.stats.counts[EVICTED] += len(victims)
        for i in victims.tolist():
            self._finish(conns[i], EVICTED)

    def pending_rows(self) -> int:
        return len(self.state.rows) + len(self.fast) + len(self.udp.done)

    def drain(self, *, final: bool = False) -> pd.DataFrame:
        """Finished connections so far as a table (``final``: finish every open one first)."""
        if final:
            for conn in list(self.state.conns.values()):
                self._finish(conn)
        rows: list[dict[str, object]] = []
        if final or len(self.state.rows) >= self.slow_batch:
            rows, self.state.rows = self.state.rows, []
        rows += self.udp.rows(final=final)
        self.stats.rows += len(rows) + len(self.fast)
        self.stats.counts["connections"] += len(rows) + len(self.fast)
        self.stats.counts["fast_lane_connections"] += len(self.fast)
        df = _to_frame(rows, self.fast.drain())
        numbers = pc.cast(pa.array(np.arange(self.emitted, self.emitted + len(df), dtype=np.int64)), pa.string())
        prefix = pa.scalar(f"{self.source}#", pa.string())
        df["conn_id"] = pd.array(pc.binary_join_element_wise(prefix, numbers, ""), dtype="string")
        self.emitted += len(df)
        return df


def _retry_fingerprints(rows: list[dict[str, object]]) -> None:
    for row in rows:
        hello = row.pop("retry_hello", None)
        if isinstance(hello, ClientHello):
            fps = client_fingerprints("t", hello)
            row["ja3_retry"], row["ja4_retry"] = fps.ja3, fps.ja4


def _prefetch(reader: CaptureReader, depth: int = 2) -> Iterator[tuple[_Window, int]]:
    """Index, decode and prepare the next windows in a thread while the caller works on this one.

    numpy releases the GIL inside its loops, so on two cores reading, indexing and decoding
    overlap with the handshake work; errors raised while reading reach the caller unchanged.
    """
    done = object()
    queue: Queue[object] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                reader.stats.counts["decoded_by_c" if reader.compiled else "decoded_by_numpy"] += len(batch)
                dec = decode(batch, compiled=reader.compiled)
                item = (_prepare(batch, dec, compiled=reader.compiled), reader.stats.bytes_read)
                while not stop.is_set():
                    try:
                        queue.put(item, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(done)
        except BaseException as exc:  # handed over to the consumer, which re-raises it
            queue.put(exc)

    thread = threading.Thread(target=produce, name="tlsdetect-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
        thread.join()


def _to_frame(rows: list[dict[str, object]], fast: pd.DataFrame) -> pd.DataFrame:
    """Slow-lane rows (hello lists, fingerprinted by the stage after reading) and fast-lane rows
    (already fingerprinted) as one table in time order.

    The fast lane hands its rows over sorted by time, so a chunk is reordered only to merge in
    the few slow-lane rows (one take per column), never sorted column by column from scratch.
    """
    _retry_fingerprints(rows)
    parts = []
    if rows:
        slow = pd.DataFrame.from_records(rows)
        slow["ts"] = pd.to_datetime(slow["ts"].astype("int64"), unit="ns", utc=True)
        parts.append(schema.conform(slow))
    if len(fast):
        fast["ts"] = pd.to_datetime(fast["ts"], unit="ns", utc=True)
        parts.append(schema.conform(fast))
    if not parts:
        return schema.empty()
    df = parts[0] if len(parts) == 1 else schema.concat(parts)
    df["source"] = pd.Series(schema.category_from_codes(["pcap"], np.zeros(len(df), dtype=np.int64)), index=df.index)
    if not df["ts"].is_monotonic_increasing:
        df = df.sort_values("ts", kind="stable", ignore_index=True)
    return df


def iter_connections(
    path: str | os.PathLike[str],
    *,
    stats: ReadStats | None = None,
    progress: Callable[[int], None] | None = None,
    window: int | None = None,
    fast_lane: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    keylog: KeyLog | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the connections of one capture in chunks of about ``chunk_rows`` rows (not enriched).

    Memory holds one window of the file and one chunk of rows, however large the capture.
    Rows are in time order within a chunk; a connection is emitted when its handshake is
    settled, so chunks overlap a little in time. The rare connection that needed the
    reassembling path waits until ``chunk_rows // 8`` such connections have gathered (or the
    file ends): its chunk may come later than its neighbours' in time. Damage ends the file
    with a warning in ``stats.warnings`` (everything before it is kept). ``progress`` gets the
    bytes consumed. ``stats.counts`` gains the capture reader's counts (``packets``, ...) and the engine's.
    ``fast_lane=False`` sends every handshake through the reassembling path (the tests compare).
    ``keylog``: TLS 1.3 chains decrypted with its secrets, and the ``keylog`` column (:mod:`.keylog_rows`).
    """
    total = stats if stats is not None else ReadStats()
    reader = CaptureReader(path, window=window or WINDOW, reuse_buffer=False)
    core = ccore.status() if reader.compiled == ccore.enabled() else ("compiled C" if reader.compiled else "numpy")
    log.info("%s: capture core: %s", Path(path).name, core)
    engine = _Engine(Path(path).name, fast_lane=fast_lane, slow_batch=max(1, chunk_rows // 8), keylog=keylog)
    for prepared, position in _prefetch(reader):
        engine.window(prepared)
        if progress is not None:
            progress(position)
        if engine.pending_rows() >= chunk_rows:
            chunk = engine.drain()
            yield chunk if keylog is None else mark_unkeyed(chunk, engine.stats)
    engine.flush()
    last = engine.drain(final=True)
    if keylog is not None:
        last = mark_unkeyed(last, engine.stats)
    engine.stats.files += 1
    for name in [n for n in engine.stats.skipped if n.startswith("unsupported link type")]:
        engine.stats.warn(f"{Path(path).name}: {name}: {engine.stats.skipped[name]} packets skipped")
    total.merge(engine.stats).merge(reader.stats)  # the capture's: bytes_read, packets, warnings
    for w in [*reader.stats.warnings, *engine.stats.warnings]:
        log.warning(w)
    if len(last):
        yield last


def iter_pcap(
    path: str | os.PathLike[str],
    *,
    stats: ReadStats | None = None,
    progress: Callable[[int], None] | None = None,
    window: int | None = None,
    fast_lane: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    keylog: KeyLog | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`iter_connections` with the enrichment stage applied to each chunk."""
    for chunk in iter_connections(path, stats=stats, progress=progress, window=window, fast_lane=fast_lane,
                                  chunk_rows=chunk_rows, keylog=keylog):
        yield enrich(chunk)


def read_pcap(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    progress: Callable[[int], None] | None = None,
    window: int | None = None,
    fast_lane: bool = True,
    keylog: KeyLog | None = None,
) -> tuple[pd.DataFrame, ReadStats]:
    """Every TLS handshake of one or more captures as one table, and what was read.

    Convenience over :func:`iter_pcap` for inputs whose table fits in memory.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    total = ReadStats()
    frames = [
        chunk
        for path in paths
        for chunk in iter_pcap(path, stats=total, progress=progress, window=window, fast_lane=fast_lane,
                               keylog=keylog)
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty(), total
    return (frames[0] if len(frames) == 1 else schema.concat(frames)), total
