"""The fast lane: ordinary TLS handshakes that need no general reassembly, done in numpy.

Most connections in bulk traffic look the same on the wire: a ClientHello and a ServerHello
each in one segment or in several that follow in sequence (stitched when they tile the record
without a partial overlap; also when the first ends inside the record header), and after them
either nothing in clear (TLS 1.3) or a TLS <= 1.2 first flight (Certificate ... ServerHelloDone,
in its own records or in the ServerHello's) whose segments tile without overlap; a client
certificate flight (its Certificate read whenever it is in clear); a HelloRetryRequest only when neither side
visibly sends another hello. For those, :mod:`..hello_batch` groups the hellos by fingerprint
input, one representative per group is parsed by :mod:`..tls`, and the rows are built
column-wise. Everything else (partial overlaps, gaps, a hello whose partner never came while it
was carried, retransmitted hellos, a second ClientHello) is left to the reassembling slow lane in
:mod:`.engine`, which gives the same row for the same
handshake — the tests compare the two lanes on the reference corpus and on crafted streams.

Why this lane fingerprints its rows itself, although fingerprinting is the stage after reading
(:func:`tlsdetect.fingerprint.enrich`): it already holds each distinct hello parsed once, so its
fingerprints cost one computation per distinct hello, broadcast by Arrow ``take``. The stage
would first have to find the distinct hellos again by hashing the hello-list columns of every
row, which is most of a chunk's cost in bulk traffic (measured: see the issue 15 report). Its
rows say ``fingerprint_origin`` = ``computed`` and the stage keeps them.

Size: one module because every check here decides, on the same window arrays, which handshakes
the lane may take; the row rendering after it is short and shares its group tables.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect import schema
from tlsdetect.fingerprint import CLIENT_FP_COLUMNS, client_fingerprints, server_fingerprint
from tlsdetect.readers.pcap.flight import Flight, assemble_prefix, segments_of, server_flights, slices
from tlsdetect.readers.pcap.packets import flow_hash
from tlsdetect.readers.pcap.records import Sizes, as_tuples, handshake_flight
from tlsdetect.readers.pcap.tls_stream import (
    CLIENT_HELLO_COLUMNS,
    SERVER_HELLO_COLUMNS,
    chain_json,
    client_hello_columns,
    server_hello_columns,
)
from tlsdetect.readers.pcap.window_flights import quiet_at_window_end, session_id_echoed, tls13_window_flights
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.hello_batch import HelloBatch, client_hello_batch, server_hello_batch
from tlsdetect.wire.tls import (
    MAX_RECORD_LENGTH,
    CertInfo,
    ClientHello,
    ServerHello,
    TLSParseError,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
)
from tlsdetect.wire.versions import version_name

__all__ = ["FastLane", "Segments"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Bytes copied after each whole ClientHello record, as the batch walk may peek past its end.
SLACK = 16
#: The ``truncated`` cell per code: 1 the server's flight was cut, 2 the client's, 3 both (TLS 1.3;
#: this lane takes TLS <= 1.2 flights only settled, so never cut).
TRUNCATED = (None, "server_flight", "client_flight", "server_flight,client_flight")
#: Certificate lists kept to recognise a repeated chain without hashing it (see ``_Chains``).
RECENT_CHAINS = 1024
RECENT_PER_PROBE = 4
#: Time slots the taken hellos' keys are kept in (see ``FastLane.recent``).
RECENT_SLOTS = 8


@dataclass(slots=True)
class Segments:
    """Every TCP packet with payload in one window (the arrays the pcap engine already has)."""

    keys: U64
    seq: I64
    payload: I64
    plen: I64
    ts: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64
    _by_key: I64 | None = None

    def by_key(self) -> I64:
        """Segment indices sorted by flow key (stable: arrival order within a flow), computed once."""
        if self._by_key is None:
            self._by_key = np.argsort(self.keys, kind="stable")
        return self._by_key


def _member(values: U64, sorted_set: U64) -> B:
    """``np.isin`` for a sorted ``sorted_set``, by binary search (an empty set holds nothing:
    a window whose hellos were all incomplete leaves an empty entry in ``FastLane.recent``)."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values  # type: ignore[no-any-return]


def _next_segment(seg: Segments, first: I64, need: I64) -> I64:
    """Index of the segment that continues each ``first`` with at least ``need`` bytes, or -1."""
    with np.errstate(over="ignore"):
        composite = seg.keys ^ (seg.seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        wanted_seq = (seg.seq[first] + seg.plen[first]) & 0xFFFFFFFF
        wanted = seg.keys[first] ^ (wanted_seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    order = np.argsort(composite)
    sorted_c = composite[order]
    pos = np.minimum(np.searchsorted(sorted_c, wanted), len(sorted_c) - 1)
    j = order[pos]
    ok = (sorted_c[pos] == wanted) & (seg.keys[j] == seg.keys[first]) & (seg.seq[j] == wanted_seq)
    ok &= seg.plen[j] >= need
    return np.where(ok, j, -1)


def _overlapped(seg: Segments, first: I64, second: I64, span: I64) -> B:
    """Whether any segment other than ``first``/``second`` of the same flow direction carries
    bytes of the stream range ``[0, span)`` that starts at ``first``."""
    idx, owner = segments_of(seg.keys[first], seg.keys, seg.by_key())
    rel = ((seg.seq[idx] - seg.seq[first][owner] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    other = (idx != first[owner]) & (idx != second[owner])
    hits = other & (rel < span[owner]) & (rel + seg.plen[idx] > 0)
    return np.bincount(owner[hits], minlength=len(first)) > 0


def _no_more_hellos(buf: U8, seg: Segments, first: I64, rec_end: I64) -> B:
    """Whether each stream (starting with the hello-carrying segment ``first``) visibly carries
    no further handshake record after its first record (``rec_end`` bytes).

    The bytes that follow are read from the window's segments, stitched as the flight walk
    does (contiguous, exact retransmissions dropped): after any ChangeCipherSpec records the
    next record must start with a byte other than 22 (handshake), e.g. application data. When
    the bytes are missing or anything is odd the answer is False and the slow lane decides.
    """
    limit = int(rec_end.max()) + 16
    data, st, ln = assemble_prefix(
        buf, seg.keys[first], seg.seq[first], seg.keys, seg.seq, seg.payload, seg.plen, limit, seg.by_key()
    )
    n = len(first)
    ok = np.zeros(n, dtype=bool)
    if len(data) == 0:
        return ok
    g = Gather(data)
    pos = rec_end.copy()
    active = np.ones(n, dtype=bool)
    for _ in range(4):
        have = active & (pos < ln)
        c = g.u8(st + pos)
        ok |= have & (c != 20) & (c != 22)
        ccs = have & (c == 20) & (pos + 5 <= ln)
        pos = np.where(ccs, pos + 5 + g.be16(st + pos + 3), pos)
        active = ccs
    # The bytes read must be the ones the slow lane would read: no partly overlapping segment.
    return ok & _tiles(buf, seg, first, np.minimum(pos + 5, ln))


def _tiles(buf: U8, seg: Segments, first: I64, span: I64) -> B:
    """Whether the segments of each stream (starting at segment ``first``) over ``[0, span)``
    tile it: any two of them carry either exactly the same range with the same bytes, or disjoint ones.

    Where they partly overlap, which bytes count is the reassembling lane's rule (lower sequence
    number, then earlier arrival); the numpy stitching only follows an exact chain, so such a
    stream is left to the slow lane. So is one where a resent range carries other bytes: the slow
    lane compares them and the row says ``overlap_conflict`` (a server flight shown to the sensor
    with one certificate and to the client with another).
    """
    n = len(first)
    idx, owner = segments_of(seg.keys[first], seg.keys, seg.by_key())
    rel = ((seg.seq[idx] - seg.seq[first][owner] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    length = seg.plen[idx]
    inside = (rel < span[owner]) & (rel + length > 0)
    owner, rel, length, idx = owner[inside], rel[inside], length[inside], idx[inside]
    srt = np.lexsort((length, rel, owner))
    owner, rel, length, idx = owner[srt], rel[srt], length[srt], idx[srt]
    same = owner[1:] == owner[:-1]
    dup = same & (rel[1:] == rel[:-1]) & (length[1:] == length[:-1])
    overlap = same & ~dup & (rel[1:] < rel[:-1] + length[:-1])
    pair = np.flatnonzero(dup)
    if len(pair):  # resent ranges (rare): their bytes compared in one ragged pass
        size = length[pair + 1]
        of = np.repeat(np.arange(len(pair)), size)
        at = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        differ = buf[seg.payload[idx[pair]][of] + at] != buf[seg.payload[idx[pair + 1]][of] + at]
        overlap[pair[np.bincount(of[differ], minlength=len(pair)) > 0]] = True
    tiled: B = np.bincount(owner[1:][overlap], minlength=n) == 0
    return tiled


def _with_joined(buf: U8, p1: I64, l1: I64, all_payload: I64, second: I64, rec_end: I64) -> tuple[U8, I64]:
    """A small buffer where every hello's record is contiguous, and where each record starts.

    Only the hello records are copied (a slice each, not the window): a whole record with the
    few bytes after it (``SLACK``: the batch walk may peek a byte past a malformed extension), a
    record continued in a ``second`` segment as its two parts.
    """
    tail_at = all_payload[np.maximum(second, 0)] if len(all_payload) else np.zeros(len(p1), dtype=np.int64)
    split = second >= 0
    # Two slices per hello (the second empty for a whole record), bounded as slicing would.
    lo = np.stack([p1, np.where(split, tail_at, p1)], axis=1)
    hi = np.stack([np.where(split, p1 + l1, p1 + rec_end + SLACK), np.where(split, tail_at + rec_end - l1, p1)], axis=1)
    lo = np.minimum(lo, len(buf))
    hi = np.maximum(np.minimum(hi, len(buf)), lo)
    size = (hi - lo).sum(axis=1)
    starts = np.cumsum(size) - size
    if not size.sum():
        return np.zeros(1, dtype=np.uint8), starts
    return slices(buf, lo.ravel(), (hi - lo).ravel()), starts  # in C with the compiled core


@dataclass(slots=True)
class _Stitched:
    """Hello records stitched from several segments: ``data`` holds them one after another,
    ``at`` where each hello-start packet's record begins there, ``ok`` whether it was stitched."""

    data: U8
    at: I64
    ok: B

    @staticmethod
    def empty(n: int) -> _Stitched:
        return _Stitched(np.zeros(0, dtype=np.uint8), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool))

    def into(self, joined: U8, rec: I64, rows: I64) -> tuple[U8, I64]:
        """``joined``/``rec`` (records of the hello starts ``rows``) with the stitched ones' records instead."""
        mine = self.ok[rows]
        if not mine.any():
            return joined, rec
        rec = np.where(mine, len(joined) + self.at[rows], rec)
        return np.concatenate([joined, self.data]), rec


def _stitched(buf: U8, seg: Segments, start: I64, which: I64, rec_end: I64) -> _Stitched:
    """The records (``rec_end`` bytes) of the hello starts ``which`` (into ``start``), each from its
    segment and the ones that follow it in sequence without a gap: stitched where those segments
    cover the record and tile it (no partial overlap; a resent range with the same bytes), which is
    where the reassembling lane reads the same bytes. The record is followed by ``SLACK`` zeros."""
    out = _Stitched.empty(len(start))
    first = start[which]
    end = rec_end[which]
    data, st, ln = assemble_prefix(
        buf, seg.keys[first], seg.seq[first], seg.keys, seg.seq, seg.payload, seg.plen, int(end.max()), seg.by_key()
    )
    ok = (ln >= end) & _tiles(buf, seg, first, end)
    if not ok.any():
        return out
    size = np.where(ok, end + SLACK, 0)
    to = np.cumsum(size) - size
    take = np.where(ok, end, 0)
    within = np.arange(int(take.sum()), dtype=np.int64) - np.repeat(np.cumsum(take) - take, take)
    packed = np.zeros(int(size.sum()), dtype=np.uint8)
    packed[np.repeat(to, take) + within] = data[np.repeat(st, take) + within]
    out.data, out.ok[which], out.at[which] = packed, ok, to
    return out


def _joined_headers(
    buf: U8, seg: Segments, first: I64, plen: I64
) -> tuple[I64, I64, I64, I64]:
    """For hello-start segments shorter than the 9 header bytes: the segment that continues
    each one, and the record length, handshake type and message length read across both.

    -1 / zeros where no continuing segment holds the rest of the header.
    """
    second = _next_segment(seg, first, 9 - plen)
    found = second >= 0
    j = np.maximum(second, 0)
    g = Gather(buf)

    def byte(k: int) -> I64:
        in_first = k < plen
        return np.where(in_first, g.u8(seg.payload[first] + k), g.u8(seg.payload[j] + k - plen))

    rec_len = (byte(3) << 8) | byte(4)
    msg_type = byte(5)
    msg_len = (byte(6) << 16) | (byte(7) << 8) | byte(8)
    zero = np.zeros(len(first), dtype=np.int64)
    return (
        second,
        np.where(found, rec_len, zero),
        np.where(found, msg_type, zero),
        np.where(found, msg_len, zero),
    )


@dataclass(slots=True)
class _Groups:
    """Distinct hellos seen so far (by exact fingerprint-input key) and what parsing the first
    of each gave."""

    index: dict[bytes, int] = field(default_factory=dict)
    parsed: list[ClientHello | ServerHello | None] = field(default_factory=list)

    def ids(
        self, key: list[bytes], local_codes: I64, reps: I64, bodies: list[bytes], parse: Callable[[bytes], object]
    ) -> I64:
        """Global group id per hello; a representative the scalar parser rejects maps to -1."""
        local_to_global = np.empty(len(reps), dtype=np.int64)
        for local, rep in enumerate(reps.tolist()):
            k = key[rep]
            gid = self.index.get(k)
            if gid is None:
                gid = len(self.parsed)
                self.index[k] = gid
                try:
                    self.parsed.append(parse(bodies[local]))  # type: ignore[arg-type]
                except TLSParseError:
                    self.parsed.append(None)
            local_to_global[local] = gid if self.parsed[gid] is not None else -1
        return local_to_global[local_codes]


@dataclass(slots=True)
class _Chains:
    """Distinct certificate chains seen so far and their parsed certificates.

    Chains are told apart by a cryptographic digest of the whole certificate list: a forged
    chain that shares a prefix with a trusted one must never borrow its identity. Hashing the
    chain of every connection is what costs, so ``recent`` keeps the bytes of some chains under
    a cheap probe (length, sampled words): a chain equal byte for byte to a kept one has that
    one's group, which is the group its digest gives, without being hashed again. Bounded:
    ``RECENT_CHAINS`` kept in all, ``RECENT_PER_PROBE`` per probe.
    """

    index: dict[bytes, int] = field(default_factory=dict)
    parsed: list[tuple[CertInfo, ...] | None] = field(default_factory=list)
    recent: dict[tuple[int, ...], list[tuple[bytes, int]]] = field(default_factory=dict)
    kept: int = 0

    def group(self, body: memoryview, probe: tuple[int, ...]) -> int:
        """Group id of the certificate list ``body``; ``probe`` is only a hint for finding it."""
        raw = bytes(body)
        bucket = self.recent.setdefault(probe, [])
        for known, gid in bucket:
            if raw == known:
                return gid
        gid = self._by_digest(raw)
        if self.kept < RECENT_CHAINS and len(bucket) < RECENT_PER_PROBE:
            bucket.append((raw, gid))
            self.kept += 1
        return gid

    def _by_digest(self, raw: bytes) -> int:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        gid = self.index.get(digest)
        if gid is None:
            gid = self.index[digest] = len(self.parsed)
            try:
                self.parsed.append(parse_certificate(raw))
            except TLSParseError:
                self.parsed.append(None)
        return gid


@dataclass(slots=True)
class FastLane:
    """Accumulates fast-lane connections window by window; :meth:`frame` renders them."""

    #: How long (capture time, ns) retransmissions of a taken hello are swallowed.
    recent_ns: int = 5_000_000_000
    clients: _Groups = field(default_factory=_Groups)
    servers: _Groups = field(default_factory=_Groups)
    cols: dict[str, list[npt.NDArray[np.generic]]] = field(default_factory=dict)
    rows: int = 0
    #: Flow keys taken, in time slots of ``recent_ns / RECENT_SLOTS``: (slot's first and last capture
    #: time, its keys sorted). A few sorted arrays, so a window's lookup is a few binary searches and
    #: no key set of the last seconds (~500k keys at 50,000 connections/s) is sorted again per window.
    recent: deque[tuple[int, int, U64]] = field(default_factory=deque)
    now: int = 0  # the latest capture time (ns) seen
    chains: _Chains = field(default_factory=_Chains)

    def _add(self, name: str, values: npt.NDArray[np.generic]) -> None:
        self.cols.setdefault(name, []).append(values)

    def claim_handshakes(self, buf: U8, seg: Segments, start: I64, busy: U64, base: int = 0, *,
                         final: bool = False) -> B:
        """Take over the complete, ordinary handshakes among the hello-start packets ``start`` of a window.

        ``seg`` holds every TCP payload packet of the window; ``busy`` the flow keys the slow
        lane already follows. A ClientHello may span its start segment and the next one in
        sequence (every Chrome hello with an ML-KEM key share does). Returns the mask of start
        packets this lane took; retransmissions of a taken hello are swallowed for
        ``recent_ns`` of capture time. ``base`` is the capture position of the window's first
        segment; a handshake whose flight columns the window cannot decide is left to the carry or
        the slow lane, which read on, unless the capture ends here (``final``): then it is taken
        with the flights it finished (the others missing, said cut where a record was cut).
        """
        keys = seg.keys[start]
        payload, plen = seg.payload[start], seg.plen[start]
        n = len(start)
        taken = np.zeros(n, dtype=bool)
        if len(seg.ts):
            self.now = max(self.now, int(seg.ts.max()))
        for _, _, known in self.recent:
            taken |= _member(keys, known)
        g = Gather(buf)
        rec_len = g.be16(payload + 3)
        msg_type = g.u8(payload + 5)
        msg_len = g.be24(payload + 6)
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        single = (counts[inverse.reshape(-1)] == 1) & ~taken
        if len(busy):
            single &= ~_member(keys, np.sort(busy))
        # A hello whose first segment ends inside the 9 header bytes (a split right after the
        # record header): the header is read across it and the segment that follows it.
        second = np.full(n, -1, dtype=np.int64)
        short = np.flatnonzero(single & (plen < 9))
        if len(short):
            second[short], rec_len[short], msg_type[short], msg_len[short] = _joined_headers(
                buf, seg, start[short], plen[short]
            )
        head_ok = (plen >= 9) | (second >= 0)
        framed = head_ok & (rec_len >= 4 + msg_len) & (msg_len > 0) & (rec_len <= MAX_RECORD_LENGTH)
        whole = framed & (plen >= 5 + rec_len)
        # The second segment of a two-segment ClientHello: same flow, next sequence number.
        split = np.flatnonzero(framed & ~whole & single & (msg_type == 1))
        if len(split):
            second[split] = _next_segment(seg, start[split], 5 + rec_len[split] - plen[split])
        second[(msg_type != 1) | ~framed] = -1
        # A ServerHello message whole in its segment, its record possibly continuing (TLS <= 1.2
        # servers often put ServerHello, Certificate, ... ServerHelloDone in one record): the
        # flight walk below reads the rest and settles it, or leaves it to the slow lane.
        sh_here = framed & single & (msg_type == 2) & (plen >= 9 + msg_len)
        # A hello over more segments (a ServerHello cut by the MSS, a ClientHello in three): its
        # record is stitched from the segments that follow in sequence (see ``_stitched``).
        multi = framed & single & ~whole & (second < 0) & ~sh_here & ((msg_type == 1) | (msg_type == 2))
        stitched = _Stitched.empty(n)
        if multi.any():
            stitched = _stitched(buf, seg, start, np.flatnonzero(multi), 5 + rec_len)
            single[multi] = stitched.ok[multi]
        # Another segment over the hello's bytes (a retransmission, or a conflicting overlap as
        # in evasion) is the reassembling lane's business: it has one rule for who wins. For a
        # ServerHello only its own segment is checked; the flight assembly vets the rest.
        span = np.where(sh_here & ~whole, plen, 5 + rec_len)
        single &= multi | ~_overlapped(seg, start, second, span)
        ch = np.flatnonzero(single & (msg_type == 1) & (whole | (second >= 0) | multi))
        sh = np.flatnonzero((sh_here | multi) & single & (msg_type == 2))
        if len(ch) == 0 or len(sh) == 0:
            self._remember(keys[taken])
            return taken
        c_buf, c_rec = _with_joined(buf, payload[ch], plen[ch], seg.payload, second[ch], 5 + rec_len[ch])
        c_buf, c_rec = stitched.into(c_buf, c_rec, ch)
        s_buf, s_rec = buf, payload[sh]
        if multi[sh].any():  # the ServerHellos as records of their own, each contiguous
            s_buf, s_rec = _with_joined(buf, payload[sh], plen[sh], seg.payload, np.full(len(sh), -1), 9 + msg_len[sh])
            s_buf, s_rec = stitched.into(s_buf, s_rec, sh)
        c_body, s_body = c_rec + 9, s_rec + 9
        cb = client_hello_batch(c_buf, c_body, c_body + msg_len[ch])
        sb = server_hello_batch(s_buf, s_body, s_body + msg_len[sh])
        c_ok = np.flatnonzero(cb.valid)
        # TLS 1.3: nothing after the ServerHello is in clear. TLS <= 1.2: the rest of the
        # server's first flight (certificates) must be whole in this window.
        s_cert = np.full(len(sh), -1, dtype=np.int64)
        # TLS 1.3 sends nothing else in clear after the ServerHello: its record must be whole.
        s_flat = sb.valid & (whole[sh] | multi[sh] | ~sb.selected_tls13)
        # A HelloRetryRequest: taken only when neither side says another hello afterwards (no
        # second ClientHello, no second ServerHello); otherwise the slow lane pairs them up.
        hrr = np.flatnonzero(s_flat & sb.hrr)
        if len(hrr):
            s_flat[hrr] &= _no_more_hellos(buf, seg, start[sh[hrr]], 5 + rec_len[sh[hrr]])
        older = np.flatnonzero(s_flat & ~sb.selected_tls13)
        server_flight: Flight | None = None
        if len(older):
            flight = server_flight = server_flights(
                buf, keys[sh[older]], seg.seq[start[sh[older]]], seg.keys, seg.seq, seg.payload, seg.plen,
                seg.by_key(),
            )
            s_cert[older] = self._cert_groups(flight)
            s_flat[older] &= flight.settled & (s_cert[older] != -2)
            s_flat[older] &= _tiles(buf, seg, start[sh[older]], flight.span)
        s_ok = np.flatnonzero(s_flat)
        # Pair each ClientHello with the ServerHello travelling the other way.
        rev = flow_hash(
            seg.dst_hi[start[ch[c_ok]]], seg.dst_lo[start[ch[c_ok]]], seg.src_hi[start[ch[c_ok]]],
            seg.src_lo[start[ch[c_ok]]], seg.dport[start[ch[c_ok]]], seg.sport[start[ch[c_ok]]],
        )
        order = np.argsort(keys[sh[s_ok]])
        sh_keys = keys[sh[s_ok]][order]
        if len(sh_keys) == 0:
            self._remember(keys[taken])
            return taken
        pos = np.minimum(np.searchsorted(sh_keys, rev), len(sh_keys) - 1)
        paired = np.flatnonzero(sh_keys[pos] == rev)
        if len(paired) == 0:
            self._remember(keys[taken])
            return taken
        c_sel = c_ok[paired]
        s_sel = s_ok[order[pos[paired]]]
        cb, sb = cb.subset(c_sel), sb.subset(s_sel)
        c_gid = self._group(self.clients, cb, c_buf, c_body[c_sel], msg_len[ch[c_sel]], parse_client_hello)
        s_gid = self._group(self.servers, sb, s_buf, s_body[s_sel], msg_len[sh[s_sel]], parse_server_hello)
        good = (c_gid >= 0) & (s_gid >= 0)
        retried = np.flatnonzero(sb.hrr & good)
        if len(retried):
            c_first = ch[c_sel[retried]]
            good[retried] &= _no_more_hellos(buf, seg, start[c_first], 5 + rec_len[c_first])
        # TLS <= 1.2: the client's second flight (its certificate in mTLS) up to ChangeCipherSpec.
        peer = np.full(len(c_sel), -1, dtype=np.int64)
        older_sel = ~sb.selected_tls13 & ~sb.hrr
        c_sizes = Sizes(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(len(c_sel), dtype=bool))
        walked = np.flatnonzero(older_sel & good)
        if len(walked):
            c_first = start[ch[c_sel[walked]]]
            client_flight = server_flights(
                buf, seg.keys[c_first], seg.seq[c_first], seg.keys, seg.seq, seg.payload, seg.plen,
                seg.by_key(),
            )
            # The client's certificate whenever its flight carries one in clear, asked or not (a
            # CertificateRequest the sensor could not read does not unsend it): the reassembling lane's rule.
            peer[walked] = self._cert_groups(client_flight)
            good[walked] &= client_flight.settled & (peer[walked] != -2)
            good[walked] &= _tiles(buf, seg, c_first, client_flight.span)
            sizes = handshake_flight(client_flight.msg_owner, client_flight.msg_size, client_flight.settled)
            c_sizes = Sizes(walked[sizes.owner], sizes.size, np.zeros(len(c_sel), dtype=bool))
            c_sizes.known[walked] = sizes.known
        s_sizes = self._server_sizes(server_flight, older, s_sel, good)
        echoed = session_id_echoed(c_buf, c_body[c_sel], s_buf, s_body[s_sel])
        newer = np.flatnonzero(sb.selected_tls13 & ~sb.hrr & good)
        truncated = np.zeros(len(c_sel), dtype=np.int64)  # TRUNCATED codes (TLS <= 1.2 here: settled, never cut)
        if len(newer):
            w13 = tls13_window_flights(
                buf, seg.keys, seg.seq, seg.payload, seg.plen, seg.by_key(), base, start[ch[c_sel[newer]]],
                start[sh[s_sel[newer]]],
            )
            s13, c13 = w13.server, w13.client
            # Flights not yet decided are followed into the next windows (carry, slow lane): a
            # connection quiet at this window's end may yet speak in the next one, so taking it
            # here would make its row depend on where the window fell. At the capture's end, or
            # after QUIET_NS of capture time without a segment, it is taken with the flights it
            # finished, unless its bytes stop at a hole or an overlap.
            settled = final | quiet_at_window_end(seg.ts, seg.keys, seg.by_key(), start[ch[c_sel[newer]]],
                                                  start[sh[s_sel[newer]]])
            good[newer] &= (s13.known & c13.known) | (settled & ~w13.broken)
            truncated[newer] = w13.server_cut.astype(np.int64) + 2 * w13.client_cut.astype(np.int64)
            s_sizes = _merge_sizes(s_sizes, s13, newer)
            c_sizes = _merge_sizes(c_sizes, c13, newer)
        s_values, s_total = as_tuples(s_sizes)
        c_values, c_total = as_tuples(c_sizes)
        abbreviated = np.bincount(s_sizes.owner, minlength=len(c_sel)) == 0
        resumed = np.where(
            sb.hrr, -1,
            np.where(sb.selected_tls13, self._psk(s_gid), (echoed | (abbreviated & s_sizes.known)).astype(np.int64)),
        )
        c_idx, s_idx = ch[c_sel][good], sh[s_sel][good]
        cert_gid = s_cert[s_sel][good]
        peer_gid = peer[good]
        self._add_sni(c_buf, cb.sni_start[good], cb.sni_len[good])
        w = start[c_idx]
        for name, values in (
            ("ts", seg.ts[w]),
            ("c_hi", seg.src_hi[w]),
            ("c_lo", seg.src_lo[w]),
            ("c_port", seg.sport[w]),
            ("s_hi", seg.dst_hi[w]),
            ("s_lo", seg.dst_lo[w]),
            ("s_port", seg.dport[w]),
            ("c_gid", c_gid[good]),
            ("s_gid", s_gid[good]),
            ("cert_gid", cert_gid),
            ("peer_gid", peer_gid),
            ("hrr", sb.hrr[good]),
            ("echoed", np.where(sb.hrr, -1, echoed.astype(np.int64))[good]),  # after a HelloRetryRequest: missing
            ("resumed", resumed[good]),
            ("server_flight", s_values[good]),
            ("server_flight_bytes", s_total[good]),
            ("client_flight", c_values[good]),
            ("client_flight_bytes", c_total[good]),
            ("truncated", truncated[good]),
        ):
            self._add(name, values)
        taken[c_idx] = True
        taken[s_idx] = True
        self._remember(keys[taken])
        return taken

    @staticmethod
    def _server_sizes(flight: Flight | None, older: I64, s_sel: I64, good: B) -> Sizes:
        """TLS <= 1.2 server flights of the paired rows (``older``: the ServerHellos walked,
        positions as in ``s_sel``)."""
        n = len(s_sel)
        none = Sizes(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(n, dtype=bool))
        if flight is None or not len(older):
            return none
        sizes = handshake_flight(flight.msg_owner, flight.msg_size, flight.settled)
        row_of = np.full(len(older), -1, dtype=np.int64)
        where = np.full(int(s_sel.max(initial=0)) + 1 if n else 0, -1, dtype=np.int64)
        where[s_sel] = np.arange(n)
        inside = older < len(where)
        row_of[inside] = where[older[inside]]
        keep = row_of[sizes.owner] >= 0
        known = np.zeros(n, dtype=bool)
        mapped = row_of >= 0
        known[row_of[mapped]] = sizes.known[mapped]
        return Sizes(row_of[sizes.owner[keep]], sizes.size[keep], known & good)

    def _psk(self, s_gid: I64) -> I64:
        """1 when the group's ServerHello carries pre_shared_key (41), else 0; -1 unparsed."""
        flags = [int(41 in h.extensions) if isinstance(h, ServerHello) else -1 for h in self.servers.parsed]
        return np.array([*flags, -1], dtype=np.int64)[s_gid]

    def _cert_groups(self, flight: Flight) -> I64:
        """Certificate-chain group per server (see :class:`_Chains`): -1 no Certificate, -2 one
        the parser rejects."""
        out = np.full(len(flight.cert_start), -1, dtype=np.int64)
        have = np.flatnonzero(flight.cert_start >= 0)
        lo, length = flight.cert_start[have], flight.cert_len[have]
        g = Gather(flight.buf)
        samples = [g.be32(at).tolist() for at in (lo, lo + length // 2, lo + length - 4)]
        probes = zip(length.tolist(), *samples, strict=True)
        view = flight.buf.data
        gids = [
            self.chains.group(view[a : a + n], probe)
            for a, n, probe in zip(lo.tolist(), length.tolist(), probes, strict=True)
        ]
        gid_arr = np.array(gids, dtype=np.int64)
        usable = np.array([chain is not None for chain in self.chains.parsed], dtype=bool)
        out[have] = np.where(usable[gid_arr], gid_arr, -2)
        return out

    def _add_sni(self, buf: U8, start: I64, length: I64) -> None:
        """Keep the SNI bytes of the new rows (length -1: no SNI); :meth:`drain` makes the text."""
        length = np.where(start < 0, -1, np.clip(np.minimum(length, len(buf) - start), 0, None))  # as a slice
        self._add("sni_len", length)
        self._add("sni_bytes", buf[_ranges(start, np.maximum(length, 0))])
        self.rows += len(start)

    def _remember(self, keys: U64) -> None:
        if len(keys):
            if self.recent and self.now - self.recent[-1][0] < self.recent_ns // RECENT_SLOTS:
                first, _, known = self.recent[-1]
                self.recent[-1] = (first, self.now, np.sort(np.concatenate([known, keys])))
            else:
                self.recent.append((self.now, self.now, np.sort(keys)))
        while self.recent and self.recent[0][1] < self.now - self.recent_ns:
            self.recent.popleft()

    @staticmethod
    def _group(
        groups: _Groups, batch: HelloBatch, buf: U8, body: I64, length: I64, parse: Callable[[bytes], object]
    ) -> I64:
        codes, reps = batch.codes()
        bodies = [buf[b : b + n].tobytes() for b, n in zip(body[reps].tolist(), length[reps].tolist(), strict=True)]
        return groups.ids(batch.key, codes, reps, bodies, parse)

    def __len__(self) -> int:
        return self.rows

    def drain(self) -> pd.DataFrame:
        """The fast-lane rows so far as a connections-table fragment (fingerprints included).

        The rows are handed over and forgotten, so memory holds one chunk, not the capture;
        the distinct hellos (a few hundred) are kept for the rest of the file.
        """
        if not self.rows:
            return pd.DataFrame()
        col = _in_time_order({k: np.concatenate(v) for k, v in self.cols.items()})
        self.cols, self.rows = {}, 0
        c_gid, s_gid = col["c_gid"], col["s_gid"]
        out: dict[str, object] = {
            "ts": col["ts"],
            "client_ip": _ips(col["c_hi"], col["c_lo"]),
            "client_port": pd.array(col["c_port"], dtype="Int32"),
            "server_ip": _ips(col["s_hi"], col["s_lo"]),
            "server_port": pd.array(col["s_port"], dtype="Int32"),
            "transport": _constant("tcp", len(c_gid)),
            "sni": _ascii_texts(col["sni_len"], col["sni_bytes"]),
            "hello_retry": pd.array(col["hrr"], dtype="boolean"),
            "fingerprint_origin": _constant("computed", len(c_gid)),
            # This lane takes only hellos whole in one record (``framed`` in claim_handshakes).
            "ch_records": pd.array(np.ones(len(c_gid), dtype=np.int64), dtype="Int32"),
        }
        out.update(_client_columns(self.clients.parsed, c_gid))
        out.update(_server_columns(self.servers.parsed, s_gid))
        out.update(_cert_columns(self.chains.parsed, col["cert_gid"]))
        out.update(_cert_columns(self.chains.parsed, col["peer_gid"], prefix="peer_", chain=False))
        for name, flag in (("sh_session_id_echoed", col["echoed"]), ("resumed", col["resumed"])):
            values = pd.array(flag == 1, dtype="boolean")
            values[flag < 0] = pd.NA
            out[name] = values
        out["truncated"] = _broadcast(list(TRUNCATED), col["truncated"], "string")
        for name in ("server_flight", "client_flight"):
            total = col[f"{name}_bytes"]
            out[name] = col[name]
            size = pd.array(np.where(total < 0, 0, total), dtype="Int32")
            size[total < 0] = pd.NA
            out[f"{name}_bytes"] = size
        return pd.DataFrame(out)


def _merge_sizes(into: Sizes, part: Sizes, rows: I64) -> Sizes:
    """``into`` with the connections ``rows`` taken from ``part`` (whose owners index ``rows``)."""
    keep = ~np.isin(into.owner, rows)
    owner = np.concatenate([into.owner[keep], rows[part.owner]])
    size = np.concatenate([into.size[keep], part.size])
    order = np.argsort(owner, kind="stable")
    known = into.known.copy()
    known[rows] = part.known
    return Sizes(owner[order], size[order], known)


def _in_time_order(col: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """The rows by time, ties in arrival order: done here on the integer columns (the SNI bytes
    moved as ranges), so the caller never reorders the finished text columns."""
    ts = col["ts"]
    if (ts[1:] >= ts[:-1]).all():
        return col
    order = np.argsort(ts, kind="stable")
    have = np.maximum(col["sni_len"], 0)
    at = np.cumsum(have) - have
    out = {k: v[order] for k, v in col.items() if k != "sni_bytes"}
    out["sni_bytes"] = col["sni_bytes"][_ranges(at[order], have[order])]
    return out


def _ranges(start: I64, length: I64) -> I64:
    """The indices ``start[i] .. start[i] + length[i] - 1`` of every range, concatenated."""
    within = np.arange(int(length.sum()), dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    return np.repeat(start, length) + within


def _ascii_texts(length: I64, data: U8) -> object:
    """Consecutive byte strings of ``data`` (``length`` each, -1 for missing) as text, equal to
    ``bytes.decode("ascii", "backslashreplace")``: Arrow wraps the buffers as they are when all
    bytes are ASCII; otherwise Python decodes each one."""
    offsets = np.concatenate([[0], np.cumsum(np.maximum(length, 0))])
    if len(data) < 2**31 and not (data >= 0x80).any():
        missing = length < 0
        text = pa.StringArray.from_buffers(
            len(length),
            pa.py_buffer(offsets.astype(np.int32)),
            pa.py_buffer(data),
            pa.py_buffer(np.packbits(~missing, bitorder="little")),
            int(missing.sum()),
        )
        return pd.array(text, dtype="string")
    raw = data.tobytes()
    texts = [
        None if n < 0 else raw[at : at + n].decode("ascii", "backslashreplace")
        for at, n in zip(offsets[:-1].tolist(), length.tolist(), strict=True)
    ]
    return pd.array(pa.array(texts, type=pa.string()), dtype="string")


def _ips(hi: U64, lo: U64) -> object:
    """Addresses as text. IPv4 (mapped into the low half) is formatted by Arrow kernels, octet
    by octet; the rare IPv6 address through :mod:`ipaddress`, once per distinct value."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    octets = [pc.cast(pa.array(((lo >> np.uint64(s)) & np.uint64(0xFF)).astype(np.uint8)), pa.string())
              for s in (24, 16, 8, 0)]
    text = pc.binary_join_element_wise(*octets, ".")
    if not v4.all():
        other = np.flatnonzero(~v4)
        pairs = np.stack([hi[other], lo[other]], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        words = [str(ipaddress.IPv6Address((int(h) << 64) | int(v))) for h, v in uniq.tolist()]
        values = text.to_numpy(zero_copy_only=False).astype(object)
        values[other] = np.array(words, dtype=object)[inverse.reshape(-1)]
        return pd.array(values, dtype="string")
    return pd.array(text, dtype="string")


def _constant(text: str, n: int) -> object:
    """``n`` times the same text, as a string column."""
    return pd.array(pa.array([text], type=pa.string()).take(pa.array(np.zeros(n, dtype=np.int64))), dtype="string")


def _broadcast(values: list[object], gid: I64, dtype: str) -> object:
    """``values[gid]`` per row, typed as the connections table wants it (``schema.conform``
    then has nothing to convert). Text goes through Arrow's take (no Python string per row);
    integer columns are converted once per distinct value, not per row; categorical columns (the
    certificate texts, the long fingerprint texts) are the distinct values and a code per row."""
    if dtype == "category":
        return schema.category_from_codes([None if v is None else str(v) for v in values], gid % max(len(values), 1))
    if dtype not in ("string", "object"):
        return pd.Series(values, dtype=dtype).array[gid]
    if all(v is None or isinstance(v, str) for v in values):
        return pd.array(pa.array(values, type=pa.string()).take(pa.array(gid % max(len(values), 1))), dtype="string")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr[gid]


def _client_columns(hellos: list[ClientHello | ServerHello | None], gid: I64) -> dict[str, object]:
    names = (*CLIENT_FP_COLUMNS, *CLIENT_HELLO_COLUMNS)
    per: dict[str, list[object]] = {name: [] for name in names}
    for h in hellos:
        fields: dict[str, object] = {}
        if isinstance(h, ClientHello):
            fields = dict(zip(CLIENT_FP_COLUMNS, client_fingerprints("t", h), strict=True))
            fields.update(client_hello_columns(h))
        for name in names:
            per[name].append(fields.get(name))
    return {name: _broadcast(values, gid, schema.COLUMNS.get(name, "object")) for name, values in per.items()}


def _server_columns(hellos: list[ClientHello | ServerHello | None], gid: I64) -> dict[str, object]:
    names = ("ja3s", "ja3s_full", "tls_version", *SERVER_HELLO_COLUMNS)
    per: dict[str, list[object]] = {name: [] for name in names}
    for h in hellos:
        fields: dict[str, object] = {}
        if isinstance(h, ServerHello):
            fields = dict(zip(("ja3s", "ja3s_full"), server_fingerprint(h), strict=True))
            fields["tls_version"] = version_name(h.version)
            fields.update(server_hello_columns(h))
        for name in names:
            per[name].append(fields.get(name))
    return {name: _broadcast(values, gid, schema.COLUMNS.get(name, "object")) for name, values in per.items()}


def _cert_columns(
    chains: list[tuple[CertInfo, ...] | None], gid: I64, *, prefix: str = "server_", chain: bool = True
) -> dict[str, object]:
    names = [f"{prefix}subject", f"{prefix}issuer", f"{prefix}cert_sha256", f"{prefix}issuer_akid",
             f"{prefix}spki_sha256"]
    names += [f"{prefix}chain"] if chain else []
    per: dict[str, list[object]] = {name: [] for name in names}
    for certs in [*chains, None]:  # the extra last entry serves gid -1 (no certificate)
        leaf = certs[0] if certs else None
        per[names[0]].append(leaf.subject if leaf else None)
        per[names[1]].append(leaf.issuer if leaf else None)
        per[names[2]].append(leaf.sha256 if leaf else None)
        per[names[3]].append(leaf.akid if leaf else None)
        per[names[4]].append(leaf.spki if leaf else None)
        if chain:
            per[names[5]].append(chain_json(certs) if certs else None)
    return {name: _broadcast(values, gid, schema.COLUMNS.get(name, "object")) for name, values in per.items()}
