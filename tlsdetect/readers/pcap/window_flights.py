"""The fast lane's flight columns for the handshakes it takes in one window (numpy only).

The rules are :mod:`.records`' (the reassembling lane calls the same ones); this module only
reads what they need out of a window's segments: the session IDs of both hellos, and the record
headers of both directions of TLS 1.3 handshakes, with the capture position of each record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.flight import contiguous_chain, segments_of
from tlsdetect.readers.pcap.records import (
    APPLICATION_DATA,
    QUIET,
    UNKNOWN,
    Chain,
    HeaderWalk,
    Records,
    Sizes,
    flight_cut,
    group_starts,
    tls13_flights,
)
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.tls import MAX_RECORD_LENGTH

__all__ = ["QUIET_NS", "WALK_LIMIT", "WindowFlights", "quiet_at_window_end", "session_id_echoed",
           "tls13_window_flights"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Stream bytes of each direction whose record headers are walked (flights end well before).
WALK_LIMIT = 64 * 1024
#: Capture time without a segment, either way, after which a handshake whose flights are still
#: undecided at a window's end is taken as it stands (the undecided ones missing). Far above any
#: round trip, so a connection waiting one (20 ms at 50,000 connections/s: ~4,000 packets) is
#: followed into the next windows; short enough that handshakes never decided (no server record
#: after the client's Finished) do not fill the carry on long captures.
QUIET_NS = 500_000_000
_SID = np.arange(32, dtype=np.int64)
_NEVER = np.iinfo(np.int64).max


def session_id_echoed(c_buf: U8, c_body: I64, s_buf: U8, s_body: I64) -> B:
    """Whether each ServerHello (body at ``s_body``) carries the non-empty session ID of its
    ClientHello (body at ``c_body``). TLS 1.3 draft ServerHellos (0x7Fxx) carry none."""
    c, s = Gather(c_buf), Gather(s_buf)
    c_len, s_len = c.u8(c_body + 34), s.u8(s_body + 34)
    s_len = np.where((s.u8(s_body) == 0x7F), 0, s_len)
    c_bytes = c.u8(c_body[:, None] + 35 + _SID)
    s_bytes = s.u8(s_body[:, None] + 35 + _SID)
    inside = c_len[:, None] > _SID
    same = ((c_bytes == s_bytes) | ~inside).all(axis=1)
    echoed: B = (c_len == s_len) & (c_len > 0) & (c_len <= 32) & same
    return echoed


def _direction(
    buf: U8, keys: U64, seq: I64, payload: I64, plen: I64, by_key: I64, owner_key: U64, owner_seq: I64, base: int,
) -> HeaderWalk:
    """A walk over the record headers of each owner's stream (from its hello segment on).

    A chain that stops short of the limit with segments past its end stopped at a hole or a partly
    overlapping segment (``broken``); one that reached the limit stopped by choice (``limited``)."""
    n = len(owner_key)
    owner, rel, seg, seg_len = contiguous_chain(owner_key, owner_seq, keys, seq, plen, WALK_LIMIT, by_key)
    end = np.bincount(owner, weights=seg_len, minlength=n).astype(np.int64)
    # Where the chain stops: the first capture position of a segment with bytes past its end
    # (a gap, or bytes past the limit), else the end of the window.
    idx, own = segments_of(owner_key, keys, by_key)
    at = ((seq[idx] - owner_seq[own] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    past = at + plen[idx] > end[own]
    beyond = np.full(n, base + len(keys), dtype=np.int64)
    np.minimum.at(beyond, own[past], base + idx[past])
    limited = end >= WALK_LIMIT
    broken = (np.bincount(own[past], minlength=n) > 0) & ~limited
    arrival = base + np.arange(len(keys), dtype=np.int64)
    return HeaderWalk(buf, Chain(owner, rel, seg, seg_len), payload, arrival, n, beyond, MAX_RECORD_LENGTH,
                      broken, limited)


def quiet_at_window_end(ts: I64, keys: U64, by_key: I64, client: I64, server: I64, quiet_ns: int = QUIET_NS) -> B:
    """Whether each connection (hello segments ``client``/``server``) sent no segment, either way,
    in the window's last ``quiet_ns`` of capture time: in capture time, not packets, so whether it
    is followed on does not depend on how busy the window's end was."""
    n = len(client)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    for hello in (client, server):
        idx, own = segments_of(keys[hello], keys, by_key)
        np.maximum.at(last, own, ts[idx])
    quiet: B = last < (int(ts.max()) if len(ts) else 0) - quiet_ns
    return quiet


@dataclass(slots=True)
class WindowFlights:
    """The TLS 1.3 flights of a window's handshakes, and per connection whether each is missing
    because its direction was cut (:func:`.records.flight_cut`) and whether either direction's
    bytes stopped at a hole or a partly overlapping segment (``broken``: the reassembling lane,
    which orders overlaps, decides those whose flights are not known)."""

    server: Sizes
    client: Sizes
    server_cut: B
    client_cut: B
    broken: B


def tls13_window_flights(
    buf: U8, keys: U64, seq: I64, payload: I64, plen: I64, by_key: I64, base: int, client: I64, server: I64,
) -> WindowFlights:
    """Server and client flights of TLS 1.3 handshakes whose ClientHello starts at segment
    ``client`` and ServerHello at ``server`` (indices into the window's segments; ``base`` is
    the capture position of segment 0).

    Both directions are walked a record at a time together, and each owner stops as soon as
    the records walked decide its flight (:func:`.records.tls13_flights` reads nothing past the
    first record captured after the other side's answer); the rest of the stream, application
    data mostly, is never read.
    """
    n = len(client)
    s_walk = _direction(buf, keys, seq, payload, plen, by_key, keys[server], seq[server], base)
    c_walk = _direction(buf, keys, seq, payload, plen, by_key, keys[client], seq[client], base)
    t_hello = base + server
    if ccore.enabled():
        s_rec, s_cut, c_rec, c_cut = _walk_compiled(payload, base, t_hello, s_walk, c_walk)
    else:
        s_rec, s_cut, c_rec, c_cut = _walk_numpy(s_walk, c_walk, t_hello)
    s_start, c_start = group_starts(s_rec.owner, n), group_starts(c_rec.owner, n)
    s_sizes, c_sizes = tls13_flights(s_rec, c_rec, s_start + 1, c_start + 1, t_hello)
    return WindowFlights(s_sizes, c_sizes, flight_cut(s_sizes, s_cut), flight_cut(c_sizes, c_cut),
                         s_walk.broken | c_walk.broken)


def _walk_numpy(s_walk: HeaderWalk, c_walk: HeaderWalk, t_hello: I64) -> tuple[Records, B, Records, B]:
    """Both walks a record at a time together in numpy, each owner halted once its flight is decided;
    the records walked and the cut masks (the oracle of :func:`_walk_compiled`)."""
    n = len(t_hello)
    t_c1 = np.full(n, _NEVER, dtype=np.int64)  # the client's first encrypted record after the ServerHello
    s_max = np.full(n, -1, dtype=np.int64)  # latest server record walked after its hello
    s_next = np.full(n, -1, dtype=np.int64)  # ... of those that say the server spoke again (not QUIET)
    c_max = np.full(n, -1, dtype=np.int64)  # latest client record walked from that first one on
    s_halt = np.zeros(n, dtype=bool)
    c_halt = np.zeros(n, dtype=bool)
    while True:
        s_more = s_walk.step(s_halt)
        c_more = c_walk.step(c_halt)
        if s_walk.step_no > 1:
            o, kind, _, when = s_walk.last_step()
            seen = kind != UNKNOWN
            np.maximum.at(s_max, o[seen], when[seen])
            spoke = seen & (kind != QUIET)
            np.maximum.at(s_next, o[spoke], when[spoke])
        if c_walk.step_no > 1:
            o, kind, _, when = c_walk.last_step()  # (again, when it walked no more: no harm)
            first = (kind == APPLICATION_DATA) & (when > t_hello[o]) & (t_c1[o] == _NEVER)
            t_c1[o[first]] = when[first]
            after = (kind != UNKNOWN) & (t_c1[o] != _NEVER)
            np.maximum.at(c_max, o[after], when[after])
        if not (s_more or c_more):
            break
        # The server's flight is decided once a record after the client's answer is walked; the
        # client's once the server spoke again after that answer and a record of its own came after
        # (``s_max`` bounds that server record from above). An undecided flight is walked to its
        # end: whether it was cut is read there.
        s_halt = s_max > t_c1
        c_halt = ~s_walk.active & (t_c1 != _NEVER) & (s_next > t_c1) & (c_max > s_max)
    return s_walk.records(), s_walk.cut, c_walk.records(), c_walk.cut


def _walk_compiled(payload: I64, base: int, t_hello: I64, s_walk: HeaderWalk, c_walk: HeaderWalk
                   ) -> tuple[Records, B, Records, B]:
    """:func:`_walk_numpy` in one C call (:func:`.ccore.tls13_walk`), on the same chains."""
    def given(w: HeaderWalk) -> ccore.WalkDirection:
        c = w.chain
        return c.owner, c.rel, c.seg, c.seg_len, w.end, w.beyond, w.broken, w.limited

    s, c = ccore.tls13_walk(s_walk.buf, payload, base, s_walk.record_max, t_hello, given(s_walk), given(c_walk))
    return Records(*s[:4]), s[4], Records(*c[:4]), c[4]
