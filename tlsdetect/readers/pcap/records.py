"""Who sent which TLS record when: the flight columns of the connections table, for many
connections at once (numpy only; both native lanes call the same rules).

A direction's records are given in stream order with the capture position (``arrival``, a
packet counter over the whole file) of the segment that carried each record's first byte.
Each direction's list ends with one sentinel that says what comes after the walked records:

* ``NEXT`` (-1): another record starts there (its header was not read), arriving at ``arrival``;
* ``QUIET`` (-2): this direction sent nothing more before ``arrival`` (the reader's horizon);
* ``UNKNOWN`` (-3): the reader cannot tell (a gap, a cap, junk): nothing after is decided.

A walk also says whether the direction was **cut** (:func:`ran_out`): its bytes end inside a record
(the header or the body claims more than was delivered) or, after the last whole record, a hole
follows (bytes the sensor missed, with bytes after them). A hole is never ``QUIET``: "sent nothing
more" would be a guess, and a flight ended there would be partial while it looks whole. A direction
stopped at the reassembly depth or the walk's own limit is not cut (the reader chose to stop there).

TLS 1.3 (``tls13_flights``): the client's flight starts at its first encrypted record (content
type 23) captured after the ServerHello (earlier ones are 0-RTT data). The server's flight is
its records after the ServerHello, in stream order, up to the first one captured after that
(only content type 23 counted: ChangeCipherSpec is not part of it). The client's flight is its
records from the first encrypted one up to the first captured after the server's next record.
Chosen so: with no keys, "before the other side answered" is the only boundary a sensor sees,
and it holds at every vantage point for the server's flight (the client cannot send Finished
before it has the server's). The client's flight therefore includes an HTTP request sent in the
same burst as Finished (and, server side, 0.5-RTT data sent before the client's Finished
arrived): what the capture shows, not a guess about which record is which. A boundary the
capture does not show (the other side never answered, the capture stops) leaves the flight
missing.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["NEXT", "QUIET", "UNKNOWN", "HeaderWalk", "Records", "Sizes", "Walk", "as_tuples", "flight_cut", "ran_out",
           "tls13_flights", "truncated_places", "unique_rows", "walk_headers"]

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

NEXT, QUIET, UNKNOWN = -1, -2, -3
APPLICATION_DATA = 23
#: Longest flight kept (records or messages); a longer one is missing, not cut short.
MAX_FLIGHT_ITEMS = 64
_NEVER = np.iinfo(np.int64).max


@dataclass(slots=True)
class Records:
    """Records of one direction of many connections: grouped by ``owner`` (ascending), stream
    order within one, each group ending with its sentinel (``ctype`` < 0)."""

    owner: I64
    ctype: I64
    length: I64
    arrival: I64


@dataclass(slots=True)
class Sizes:
    """A flight per connection: the counted items as flat ``(owner, size)`` pairs, grouped by
    owner in order, and ``known`` per connection (False: missing)."""

    owner: I64
    size: I64
    known: B


def _first(owner: I64, mask: B, n: int) -> I64:
    """Per owner, the index of its first entry where ``mask`` holds, or -1."""
    idx = np.flatnonzero(mask)
    out = np.full(n, -1, dtype=np.int64)
    uniq, at = np.unique(owner[idx], return_index=True)
    out[uniq] = idx[at]
    return out


def _span(rec: Records, lo: I64, hi: I64, known: B, n: int) -> Sizes:
    """The content-type-23 records in ``[lo, hi)`` of each known owner."""
    i = np.arange(len(rec.owner), dtype=np.int64)
    o = rec.owner
    inside = known[o] & (i >= lo[o]) & (i < hi[o]) & (rec.ctype == APPLICATION_DATA)
    count = np.bincount(o[inside], minlength=n)
    known = known & (count <= MAX_FLIGHT_ITEMS)
    inside &= known[o]
    return Sizes(o[inside], rec.length[inside], known)


def tls13_flights(server: Records, client: Records, s_first: I64, c_first: I64, t_hello: I64) -> tuple[Sizes, Sizes]:
    """The server's and the client's TLS 1.3 flights (see the module docstring).

    ``s_first``/``c_first``: per connection, the index in ``server``/``client`` of the first
    record after the (last) ServerHello / ClientHello record; ``t_hello``: the ServerHello's
    arrival. Returns ``(server_flight, client_flight)``.
    """
    n = len(t_hello)
    s_i = np.arange(len(server.owner), dtype=np.int64)
    c_i = np.arange(len(client.owner), dtype=np.int64)
    # The client's first encrypted record captured after the ServerHello.
    c1 = _first(
        client.owner,
        (c_i >= c_first[client.owner]) & (client.ctype == APPLICATION_DATA) & (client.arrival > t_hello[client.owner]),
        n,
    )
    t_c1 = np.where(c1 >= 0, client.arrival[np.maximum(c1, 0)], _NEVER)
    # The server's first record (or sentinel) captured after that: where its flight ends.
    s_cut = _first(
        server.owner,
        (s_i >= s_first[server.owner]) & (server.ctype != UNKNOWN) & (server.arrival > t_c1[server.owner]),
        n,
    )
    s_known = (c1 >= 0) & (s_cut >= 0)
    # ... then the client's first one captured after the server's next record.
    cut_type = server.ctype[np.maximum(s_cut, 0)]
    has_next = s_known & (cut_type != QUIET)
    t_s2 = np.where(has_next, server.arrival[np.maximum(s_cut, 0)], _NEVER)
    c_cut = _first(
        client.owner,
        (c_i >= c1[client.owner]) & (client.ctype != UNKNOWN) & (client.arrival > t_s2[client.owner]),
        n,
    )
    c_known = has_next & (c_cut >= 0)
    return _span(server, s_first, s_cut, s_known, n), _span(client, c1, c_cut, c_known, n)


def flight_cut(sizes: Sizes, cut: B) -> B:
    """TLS 1.3: per connection, whether its flight is missing because its own direction's walk
    ended cut (``cut``, from :func:`ran_out`). A flight decided before the cut is whole; one missing
    for another reason (the other side never answered, junk, the walk's limit) is not cut."""
    missing: B = cut & ~sizes.known
    return missing


def as_tuples(sizes: Sizes) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """(tuple of sizes or None, their sum or -1) per connection, one tuple per distinct flight."""
    n = len(sizes.known)
    count = np.bincount(sizes.owner, minlength=n)
    width = int(count.max()) if n else 0
    total = np.where(sizes.known, np.bincount(sizes.owner, weights=sizes.size, minlength=n), -1).astype(np.int64)
    matrix = np.full((n, width + 1), -1, dtype=np.int64)
    matrix[:, 0] = np.where(sizes.known, count, -1)
    at = np.arange(len(sizes.owner), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    matrix[sizes.owner, at + 1] = sizes.size
    uniq, inverse = unique_rows(matrix)
    values = np.empty(len(uniq), dtype=object)
    values[:] = [None if row[0] < 0 else tuple(row[1 : 1 + row[0]]) for row in uniq.tolist()]
    return values[inverse], total


def unique_rows(matrix: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``np.unique(matrix, axis=0, return_inverse=True)`` (same rows, same order), by a lexsort of the
    columns: numpy's ``axis=0`` compares rows as opaque bytes, ~10x slower on 30,000 rows of 7 ints
    (0.2 s against 0.02 s; ``as_tuples`` cost 0.28 s per 20,000 interleaved connections)."""
    n = len(matrix)
    if n == 0:
        return matrix[:0], np.zeros(0, dtype=np.int64)
    order = np.lexsort(matrix.T[::-1])
    ordered = matrix[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


#: Records walked per direction in one go (a TLS 1.3 flight is 3-6, with 0.5-RTT data a few more).
MAX_RECORDS = 24


@dataclass(slots=True)
class Chain:
    """The contiguous run of segments at the start of each owner's stream (from
    :func:`.flight.contiguous_chain`): grouped by owner, by stream offset ``rel`` within one."""

    owner: I64
    rel: I64
    seg: I64
    seg_len: I64


class HeaderWalk:
    """Record headers of each owner's chained bytes, read in place (nothing copied), one record
    per owner at each :meth:`step`; :func:`walk_headers` walks to the end.

    ``payload``/``arrival`` are per segment of the window (where its bytes are in ``buf``, its
    capture position); ``beyond`` per owner: the capture position of the first segment with bytes
    past the chain's end (the reader's horizon when the walk ends exactly there). ``broken`` per
    owner: the chain stopped at a hole or a partly overlapping segment (a walk ending exactly at its
    end is then ``UNKNOWN``, not ``QUIET``), ``limited``: at the walk's byte limit (never cut).
    :attr:`cut` says per owner whether its walk ended cut (:func:`ran_out`). A caller that needs only
    the first records of some owners (:mod:`.window_flights`) halts them early: their list then ends
    at the last record walked, with no sentinel (and they are not cut).
    """

    def __init__(
        self, buf: npt.NDArray[np.uint8], chain: Chain, payload: I64, arrival: I64, n: int, beyond: I64,
        record_max: int, broken: B | None = None, limited: B | None = None,
    ) -> None:
        self.buf, self.chain, self.payload, self.arrival = buf, chain, payload, arrival
        self.beyond, self.record_max = beyond, record_max
        self.broken = np.zeros(n, dtype=bool) if broken is None else broken
        self.limited = np.zeros(n, dtype=bool) if limited is None else limited
        self.cut = np.zeros(n, dtype=bool)
        self.end = np.bincount(chain.owner, weights=chain.seg_len, minlength=n).astype(np.int64)
        self.key = (chain.owner << 32) + chain.rel
        self.pos = np.zeros(n, dtype=np.int64)
        self.active = self.end > 0
        self.step_no = 0
        self.parts: list[tuple[I64, I64, I64, I64, I64]] = []  # (owner, step, ctype, length, arrival)

    def _piece(self, o: I64, x: I64) -> I64:
        j: I64 = np.maximum(np.searchsorted(self.key, (o << 32) + x, "right") - 1, 0)
        return j

    def _header(self, o: I64, p: I64, j: I64) -> tuple[I64, I64, I64, I64]:
        """(content type, version bytes 1 and 2, length) of the headers at ``p`` (piece ``j``)."""
        c = self.chain
        inside = p + 5 <= c.rel[j] + c.seg_len[j]  # the usual case: all 5 bytes in one segment
        at = self.payload[c.seg[j]] + p - c.rel[j]
        head = np.empty((len(o), 5), dtype=np.int64)
        head[inside] = self.buf[at[inside, None] + np.arange(5)]
        split = np.flatnonzero(~inside)
        for k in range(5):  # a header cut by a segment boundary: each byte where it is
            if not len(split):
                break
            x = p[split] + k
            jj = self._piece(o[split], x)
            head[split, k] = self.buf[self.payload[c.seg[jj]] + x - c.rel[jj]]
        return head[:, 0], head[:, 1], head[:, 2], (head[:, 3] << 8) | head[:, 4]

    def step(self, halt: B | None = None) -> bool:
        """Walk one more record of every active owner (``halt``: owners to stop first, with no
        sentinel); False when none is left."""
        if halt is not None:
            self.active &= ~halt
        o = np.flatnonzero(self.active)
        if len(o) == 0:
            return False
        end, step = self.end[o], self.step_no
        p = self.pos[o]
        whole = p + 5 <= end
        at = self._piece(o, np.minimum(p, np.maximum(end - 1, 0)))
        when = self.arrival[self.chain.seg[at]]
        # Sentinels: the walk ends here (steps used up, header not whole, or bytes missing).
        last = ~whole | (step == MAX_RECORDS)
        kind = np.where(p < end, NEXT, np.where((p == end) & ~self.broken[o], QUIET, UNKNOWN))
        kind_when = np.where(p == end, self.beyond[o], when)
        length_all = np.zeros(len(o), dtype=np.int64)
        if whole.any():
            w = o[whole]
            pw = p[whole]
            ctype, b1, b2, length = self._header(w, pw, at[whole])
            sane = (ctype >= 20) & (ctype <= 24) & (b1 == 3) & (b2 <= 4) & (length <= self.record_max)
            kind_w = np.where(sane, ctype, UNKNOWN)
            take = ~last[whole]
            # After the last step the header is not judged: bytes start there (as walk_stream says).
            kind[whole] = np.where(take, kind_w, NEXT)
            self.pos[w[take & sane]] = pw[take & sane] + 5 + length[take & sane]
            length_all[whole] = length
            last[whole] |= ~sane
        real = kind >= 0
        length_all = np.where(real, length_all, 0)
        self.parts.append((o, np.full(len(o), step), kind, length_all, np.where(real, when, kind_when)))
        # Where a walk ends (its sentinel's position), judged as :func:`walk_stream` judges it.
        ends = o[last]
        self.cut[ends] = ran_out(p[last], end[last], self.broken[ends]) & ~self.limited[ends]
        self.active[o[last]] = False
        self.step_no += 1
        return bool(self.active.any())

    def records(self) -> Records:
        """Everything walked, grouped by owner in stream order."""
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return Records(empty, empty, empty, empty)
        owner, step_no, ctype, length, when = (np.concatenate(c) for c in zip(*self.parts, strict=True))
        order = np.lexsort((step_no, owner))
        return Records(owner[order], ctype[order], length[order], when[order])

    def last_step(self) -> tuple[I64, I64, I64, I64]:
        """The step just walked: (owner, ctype, length, arrival); empty before the first."""
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        o, _, kind, length, when = self.parts[-1]
        return o, kind, length, when


def ran_out(pos: I64, end: I64, hole: B) -> B:
    """Whether a walk whose sentinel sits at ``pos`` of ``end`` delivered bytes ended **cut**: inside a
    record (its body runs past the end, or only part of the next header is there), or exactly at the
    end with a hole after it (``hole``: bytes the sensor missed, with bytes after them)."""
    cut: B = (pos > end) | ((pos < end) & (pos + 5 > end)) | ((pos == end) & hole)
    return cut


def walk_headers(
    buf: npt.NDArray[np.uint8], chain: Chain, payload: I64, arrival: I64, n: int, beyond: I64, record_max: int,
) -> Records:
    """Every owner's record headers up to its sentinel (see :class:`HeaderWalk`)."""
    walk = HeaderWalk(buf, chain, payload, arrival, n, beyond, record_max)
    while walk.step():
        pass
    return walk.records()


def group_starts(owner: I64, n: int) -> I64:
    """Index of each owner's first entry in ``owner`` (grouped, ascending); len when it has none."""
    return np.searchsorted(owner, np.arange(n, dtype=np.int64)).astype(np.int64)


def handshake_flight(owner: I64, size: I64, settled: B) -> Sizes:
    """TLS <= 1.2: the handshake messages after each owner's hello (``owner``/``size`` hold every
    message walked, the hello first), known when the walk reached the flight's end (``settled``:
    ServerHelloDone, or ChangeCipherSpec)."""
    n = len(settled)
    within = np.arange(len(owner), dtype=np.int64) - group_starts(owner, n)[owner]
    count = np.bincount(owner, minlength=n)
    known = settled & (count >= 1) & (count <= MAX_FLIGHT_ITEMS)
    keep = (within >= 1) & known[owner]
    return Sizes(owner[keep], size[keep], known)


#: Capture position standing for "after everything the capture holds".
END_OF_CAPTURE = _NEVER - 1


class Walk(NamedTuple):
    """One direction's records as :func:`walk_stream` reads them (the lists end with the sentinel)
    and whether the walk ended cut (:func:`ran_out`)."""

    ctype: list[int]
    length: list[int]
    arrival: list[int]
    cut: bool


def walk_stream(
    data: bytes, starts: list[int], arrivals: list[int], *, final: bool, capped: bool, record_max: int,
    hole: bool = False,
) -> Walk:
    """One direction's reassembled bytes as records (the reassembling lane's :func:`walk_headers`).

    ``starts``/``arrivals``: where each reassembled piece begins and its capture position.
    Returns the records ending with the sentinel, and whether the walk ended cut. ``final``: the
    stream ends here (nothing more will be read), so a walk ending exactly at the end is ``QUIET``,
    unless ``hole``: the direction has bytes past a gap after ``data`` (then ``UNKNOWN``: what the
    gap held is not known). ``capped``: ``data`` stopped at the reassembly depth (never cut).
    """
    ctypes: list[int] = []
    lengths: list[int] = []
    when: list[int] = []
    pos, n = 0, len(data)

    def arrival_at(x: int) -> int:
        j = max(bisect.bisect_right(starts, x) - 1, 0)
        return arrivals[j]

    def add(ctype: int, length: int, at: int) -> None:
        ctypes.append(ctype)
        lengths.append(length)
        when.append(at)

    def done() -> Walk:
        # :func:`ran_out` for one stream, in plain Python (a numpy call per connection costs more here)
        cut = (pos > n or pos < n < pos + 5 or (pos == n and hole)) and not capped
        return Walk(ctypes, lengths, when, cut)

    for _ in range(MAX_RECORDS):
        if pos + 5 > n:
            break
        ctype, length = data[pos], (data[pos + 3] << 8) | data[pos + 4]
        if not (20 <= ctype <= 24 and data[pos + 1] == 3 and data[pos + 2] <= 4 and length <= record_max):
            add(UNKNOWN, 0, UNKNOWN)
            return done()
        add(ctype, length, arrival_at(pos))
        pos += 5 + length
    if pos < n:
        add(NEXT, 0, arrival_at(pos))
    elif pos == n and final and not capped and not hole:
        add(QUIET, 0, END_OF_CAPTURE)
    else:
        add(UNKNOWN, 0, UNKNOWN)
    return done()


def single(ctype: list[int], length: list[int], arrival: list[int]) -> Records:
    """One connection's direction as :class:`Records` (owner 0)."""
    return Records(
        np.zeros(len(ctype), dtype=np.int64),
        np.array(ctype, dtype=np.int64),
        np.array(length, dtype=np.int64),
        np.array(arrival, dtype=np.int64),
    )


def after_hellos(ctype: list[int]) -> int:
    """Index of the first record after the last handshake record before any encrypted one
    (the records after the final hello, a HelloRetryRequest round included)."""
    last = -1
    for i, c in enumerate(ctype):
        if c == APPLICATION_DATA or c < 0:
            break
        if c == 22:
            last = i
    return last + 1


class HandshakeFlight(NamedTuple):
    """TLS <= 1.2: what :func:`handshake_sizes` read of one direction's clear flight."""

    sizes: list[int]
    done: bool  # a ServerHelloDone came
    ccs: bool  # a ChangeCipherSpec came
    cut: bool  # the walk ended cut (:func:`ran_out`) before either


def handshake_sizes(data: bytes, *, hole: bool = False) -> HandshakeFlight:
    """TLS <= 1.2: sizes (4-byte header included) of the handshake messages before the first
    ChangeCipherSpec, joined across records; whether a ServerHelloDone came, whether the
    ChangeCipherSpec did, and whether the bytes ran out first (``hole``: the direction has bytes
    past a gap after ``data``). Stops at anything else (encrypted data, an alert, junk)."""
    pending = bytearray()
    sizes: list[int] = []
    types: list[int] = []
    pos, n = 0, len(data)
    while pos + 5 <= n:
        ctype, length = data[pos], (data[pos + 3] << 8) | data[pos + 4]
        if ctype == 20:
            return HandshakeFlight(sizes, 14 in types, True, False)
        if ctype != 22:
            return HandshakeFlight(sizes, False, False, False)
        if pos + 5 + length > n:
            return HandshakeFlight(sizes, False, False, True)
        pending += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        while len(pending) >= 4 and len(pending) >= 4 + int.from_bytes(pending[1:4], "big"):
            size = 4 + int.from_bytes(pending[1:4], "big")
            types.append(pending[0])
            sizes.append(size)
            del pending[:size]
            if types[-1] == 14:
                return HandshakeFlight(sizes, True, False, False)
    return HandshakeFlight(sizes, False, False, pos < n or hole)


def truncated_places(server: str | None, client: str | None) -> str | None:
    """The ``truncated`` cell: the places whose records were cut (server first), or None."""
    places = [p for p in (server, client) if p]
    return ",".join(places) if places else None
