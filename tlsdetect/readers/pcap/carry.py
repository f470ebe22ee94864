"""The fast lane's carry: packets of handshakes unfinished at a window's end, kept for the next one.

A 16 MiB window holds ~55 ms of traffic at 50,000 connections/s, about one round trip of a
handshake, so many hellos have their partner or their flights in the next window. Rather than
hand those connections to the reassembling slow lane (Python per connection, ~5x the cost), the
engine keeps their packets here (payload bytes and header columns, compacted) and puts them in
front of the next window's packets, where the fast lane sees the handshake whole. A connection
is carried while it is young in capture time (``MAX_AGE_NS`` since its first hello) and while
the carry fits its budget (the room :mod:`.pending`'s caps leave; not a window's bytes: a TLS 1.3
handshake whose flights are undecided at a window's end is carried too, until it ends or is quiet
for ``window_flights.QUIET_NS``, and at 50,000 connections/s those outgrew a 16 MiB window's budget
about four times); otherwise it goes to the slow lane in that window, with its carried packets,
and gives the same row there.

Per direction only the bytes the lanes read are kept: from the lowest hello start (segments
ending before it are never read) up to ``MAX_STREAM``; a direction with no hello yet keeps all
its packets (a server's STARTTLS greeting before its ServerHello). Pure logic over arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.fastlane import Segments
from tlsdetect.readers.pcap.pending import DIRECTION_COST, SEGMENT_COST

__all__ = ["MAX_AGE_NS", "Carry", "choose", "held", "keep", "lowest_start", "merge"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Capture time after its first hello for which an unfinished handshake is carried; then the
#: slow lane follows it (a server that never answers, a handshake the fast lane never takes).
MAX_AGE_NS = 2_000_000_000

_FIELDS = ("keys", "seq", "payload", "plen", "ts", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport")


@dataclass(slots=True)
class Carry:
    """Carried packets: ``seg``'s payload offsets index ``buf``; ``start`` marks hello starts."""

    buf: U8
    seg: Segments
    start: B

    @staticmethod
    def empty() -> Carry:
        z64, zu = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        seg = Segments(zu, z64, z64, z64, z64, zu, zu, zu, zu, z64, z64)
        return Carry(np.zeros(0, dtype=np.uint8), seg, np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.seg.keys)

    def held(self) -> int:
        """Estimated bytes, as :mod:`.pending` counts them (payload plus a cost per segment)."""
        return len(self.buf) + SEGMENT_COST * len(self)


def lowest_start(keys: U64, seq: I64) -> tuple[U64, I64]:
    """Per flow direction, the position (in ``keys``) of the start packet lowest in sequence space.

    A reordered capture can show a later segment that merely looks like a record start before
    the real first one; the stream must begin at the lowest sequence number.
    """
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rel = ((seq - seq[first][inverse] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    order = np.lexsort((rel, inverse))
    group_starts = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    return uniq, order[group_starts].astype(np.int64)


def merge(carry: Carry, buf: U8, seg: Segments, start: I64) -> tuple[U8, Segments, I64]:
    """The carried packets in front of a window's (``buf``, ``seg``, hello starts ``start``).

    Carried packets come first (they arrived first); the flow-key order is the merge of both
    parts' orders, stable, so arrival order within a flow holds.
    """
    m = len(carry)
    if m == 0:
        return buf, seg, start
    off = len(carry.buf)
    cols = {f: np.concatenate([getattr(carry.seg, f), getattr(seg, f)]) for f in _FIELDS}
    cols["payload"] = np.concatenate([carry.seg.payload, seg.payload + off])
    merged = Segments(**cols)
    both = np.concatenate([np.argsort(carry.seg.keys, kind="stable"), m + seg.by_key()])
    merged._by_key = both[np.argsort(merged.keys[both], kind="stable")]  # two sorted runs: a merge
    return np.concatenate([carry.buf, buf]), merged, np.concatenate([np.flatnonzero(carry.start), m + start])


def choose(first_ts: I64, held: I64, now: int, *, room_directions: int, room_bytes: int,
           max_age_ns: int = MAX_AGE_NS) -> B:
    """Which candidate connections to carry: young ones (first hello within ``max_age_ns`` of
    ``now``), oldest first, while two directions each and their ``held`` bytes fit the room."""
    young = first_ts >= now - max_age_ns
    order = np.flatnonzero(young)[np.argsort(first_ts[young], kind="stable")]
    cost = held[order] + 2 * DIRECTION_COST
    fits = (np.cumsum(cost) <= room_bytes) & (np.arange(1, len(order) + 1) * 2 <= room_directions)
    out = np.zeros(len(first_ts), dtype=bool)
    out[order[fits]] = True
    return out


def held(seg: Segments, start: I64, keys: U64, *, depth: int) -> tuple[I64, I64]:
    """Per entry of ``keys`` (sorted), the estimated held bytes and the count of the packets
    :func:`keep` would carry, without copying a byte.

    Why apart from :func:`keep`: the engine weighs every candidate connection but carries only the
    ones that fit the room; gathering the bytes of all of them only to count them was a second copy
    of most of a window's carry (``gather_slices`` and its fresh pages, per window).
    """
    n = len(keys)
    idx, owner = _select(seg, start, keys, depth)
    plen = seg.plen[idx]
    out_held = np.bincount(owner, weights=plen + SEGMENT_COST, minlength=n).astype(np.int64)
    return out_held, np.bincount(owner, minlength=n).astype(np.int64)


def keep(buf: U8, seg: Segments, start: I64, keys: U64, *, depth: int) -> tuple[Carry, I64, I64]:
    """The packets of flow directions ``keys`` (sorted) worth carrying, compacted.

    Returns the carry, and per entry of ``keys`` its packets' estimated held bytes and count
    (as :func:`held` counts them).
    """
    n = len(keys)
    if n == 0 or len(seg.keys) == 0:
        return Carry.empty(), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    idx, owner = _select(seg, start, keys, depth)
    plen = seg.plen[idx]
    out_held = np.bincount(owner, weights=plen + SEGMENT_COST, minlength=n).astype(np.int64)
    count = np.bincount(owner, minlength=n).astype(np.int64)
    # Payload bytes gathered into one compact buffer.
    new_at = np.cumsum(plen) - plen
    data = _gather(buf, seg.payload[idx], plen, new_at)
    cols = {f: getattr(seg, f)[idx] for f in _FIELDS}
    cols["payload"] = new_at.astype(np.int64)
    is_start = np.zeros(len(seg.keys), dtype=bool)
    is_start[start] = True
    return Carry(np.ascontiguousarray(data, dtype=np.uint8), Segments(**cols), is_start[idx]), out_held, count


def _select(seg: Segments, start: I64, keys: U64, depth: int) -> tuple[I64, I64]:
    """The packets (indices, in arrival order) of the directions ``keys`` that are kept, and each one's
    entry in ``keys``: from the lowest hello start of a direction that has one, up to ``depth`` bytes."""
    n = len(keys)
    if n == 0 or len(seg.keys) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    pos = np.minimum(np.searchsorted(keys, seg.keys), n - 1)
    mine = keys[pos] == seg.keys
    base_seq = np.full(n, -1, dtype=np.int64)
    if len(start):
        s_keys, s_first = lowest_start(seg.keys[start], seg.seq[start])
        at = np.minimum(np.searchsorted(keys, s_keys), n - 1)
        has = keys[at] == s_keys
        base_seq[at[has]] = seg.seq[start[s_first[has]]]
    b = base_seq[pos]
    rel = ((seg.seq - b + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    inside = (b < 0) | ((rel + seg.plen > 0) & (rel < depth))
    # Past the depth nobody reads a byte, but both lanes must still see that the direction has bytes
    # there: a flight walk that ends before them ran into a hole (``truncated``), not the stream's end.
    # The earliest-arriving such segment per direction says so (and when the chain stopped).
    past = np.flatnonzero(mine & (b >= 0) & (rel >= depth))
    if len(past):
        first_past = np.unique(pos[past], return_index=True)[1]
        inside[past[first_past]] = True
    idx = np.flatnonzero(mine & inside)
    return idx, pos[idx]

def _gather(buf: U8, at: I64, plen: I64, new_at: I64, compiled: bool | None = None) -> U8:
    """``buf[at[i]:at[i]+plen[i]]`` concatenated (``new_at``: where each lands).

    Why C: in numpy this is a per-byte index (``repeat`` + ``arange``), ~0.45 s of CPU per 20,000
    interleaved connections (profile of 2026-12-07); :func:`ccore.gather_slices` is one ``memcpy``
    per segment. ``compiled``: None follows :func:`ccore.enabled`; the tests run both.
    """
    if ccore.enabled() if compiled is None else compiled:
        return ccore.gather_slices(buf, at, at + plen)
    total = int(plen.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(new_at, plen)
    out: U8 = np.ascontiguousarray(buf[np.repeat(at, plen) + within], dtype=np.uint8)
    return out
