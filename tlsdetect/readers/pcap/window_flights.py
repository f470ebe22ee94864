"""The fast lane's flight columns for the handshakes it takes in one window (numpy only).

The rules are :mod:`.records`' (the reassembling lane calls the same ones); this module only
reads what they need out of a window's segments: the session IDs of both hellos, and the record
headers of both directions of TLS 1.3 handshakes, with the capture position of each record.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap.flight import contiguous_chain, segments_of
from tlsdetect.readers.pcap.records import Chain, Sizes, group_starts, tls13_flights, walk_headers
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.tls import MAX_RECORD_LENGTH

__all__ = ["WALK_LIMIT", "session_id_echoed", "tls13_window_flights"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Stream bytes of each direction whose record headers are walked (flights end well before).
WALK_LIMIT = 64 * 1024
_SID = np.arange(32, dtype=np.int64)


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
) -> tuple[object, I64]:
    """Record headers of each owner's stream (from its hello segment on) and each list's start."""
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
    arrival = base + np.arange(len(keys), dtype=np.int64)
    rec = walk_headers(buf, Chain(owner, rel, seg, seg_len), payload, arrival, n, beyond, MAX_RECORD_LENGTH)
    return rec, group_starts(rec.owner, n)


def tls13_window_flights(
    buf: U8, keys: U64, seq: I64, payload: I64, plen: I64, by_key: I64, base: int, client: I64, server: I64,
) -> tuple[Sizes, Sizes]:
    """Server and client flights of TLS 1.3 handshakes whose ClientHello starts at segment
    ``client`` and ServerHello at ``server`` (indices into the window's segments; ``base`` is
    the capture position of segment 0)."""
    s_rec, s_start = _direction(buf, keys, seq, payload, plen, by_key, keys[server], seq[server], base)
    c_rec, c_start = _direction(buf, keys, seq, payload, plen, by_key, keys[client], seq[client], base)
    return tls13_flights(s_rec, c_rec, s_start + 1, c_start + 1, base + server)  # type: ignore[arg-type]
