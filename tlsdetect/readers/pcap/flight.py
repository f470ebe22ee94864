"""A TLS <= 1.2 server's first flight, assembled and walked for many connections at once.

After a TLS 1.2 ServerHello come Certificate, (ServerKeyExchange), (CertificateRequest) and
ServerHelloDone, usually over a few in-order segments. For the fast lane this module, with numpy
only:

1. stitches each server's segments into one contiguous byte run from the ServerHello on, as
   long as they tile without gap or overlap (exact retransmissions are dropped);
2. walks the records and the handshake messages inside them, one step per message position;
3. reports where the Certificate message's list is, whether a CertificateRequest was made, and
   whether the flight ended cleanly with ServerHelloDone (or with ChangeCipherSpec: an
   abbreviated, resumed handshake).

The same walk reads a client's second flight (its Certificate, up to ChangeCipherSpec) when the
server asked for one. Anything else (a message spanning records, a gap, an alert) is reported
as not settled, and the connection goes to the reassembling slow lane instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap import ccore
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.tls import MAX_RECORD_LENGTH

__all__ = ["Flight", "assemble_prefix", "contiguous_chain", "server_flights", "slices"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Bytes of a first flight considered (the slow lane takes longer ones); most fit the first try.
MAX_FLIGHT = 16 * 1024
FIRST_TRY = 4 * 1024
MAX_MESSAGES = 16

HS_CERTIFICATE = 11
HS_CERTIFICATE_REQUEST = 13
HS_SERVER_HELLO_DONE = 14


@dataclass(slots=True)
class Flight:
    """Per server: ``settled`` flight; certificate_list ``cert_start``/``cert_len`` in ``buf``
    (-1 when the flight had no Certificate)."""

    buf: U8
    settled: B
    cert_start: I64
    cert_len: I64
    ran_out: B  # the walk reached the end of the assembled bytes before the flight ended
    cert_request: B  # the server asked for a client certificate (mTLS)
    span: I64  # stream bytes assembled per owner (what the walk could have read)
    #: Every whole handshake message walked (the hello first): owner and size with its 4-byte
    #: header, grouped by owner in stream order.
    msg_owner: I64
    msg_size: I64


def assemble_prefix(
    buf: U8, owner_key: U64, owner_seq: I64, keys: U64, seq: I64, payload: I64, plen: I64, limit: int,
    by_key: I64 | None = None,
) -> tuple[U8, I64, I64]:
    """Contiguous prefix of each owner's stream: (bytes, start offset, length) per owner.

    ``by_key``, when the caller has it, is the stable argsort of ``keys``: the segments of a
    few owners are then found by searching the owners among the segments, not the reverse.
    """
    n = len(owner_key)
    owner, _, seg, seg_len = contiguous_chain(owner_key, owner_seq, keys, seq, plen, limit, by_key)
    length = np.bincount(owner, weights=seg_len, minlength=n).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    if int(length.sum()) == 0:
        return np.empty(0, dtype=np.uint8), start, length
    return slices(buf, payload[seg], seg_len), start, length


def slices(buf: U8, at: I64, size: I64, compiled: bool | None = None) -> U8:
    """``buf[at[i]:at[i]+size[i]]`` for every i (``at``, ``size`` >= 0), concatenated, bounded as slicing is.

    Whole segments are copied as slices (memcpy each), cheaper than a per-byte index: one C loop
    with the compiled core (``compiled``: None follows :func:`ccore.enabled`), else a Python slice
    per segment and one ``bytes.join``.
    """
    if ccore.enabled() if compiled is None else compiled:
        lo = np.minimum(at, len(buf))
        return ccore.gather_slices(buf, lo, np.maximum(np.minimum(at + size, len(buf)), lo))
    view = buf.data
    pieces = [view[p : p + n] for p, n in zip(at.tolist(), size.tolist(), strict=True)]
    return np.frombuffer(b"".join(pieces), dtype=np.uint8)


def contiguous_chain(
    owner_key: U64, owner_seq: I64, keys: U64, seq: I64, plen: I64, limit: int, by_key: I64 | None = None,
) -> tuple[I64, I64, I64, I64]:
    """The segments that tile each owner's stream from its start without a gap, within ``limit``
    bytes: ``(owner, stream offset, segment index, length)``, grouped by owner in stream order
    (exact retransmissions dropped, the first arrival kept)."""
    n = len(owner_key)
    order = np.argsort(owner_key)
    sorted_keys = owner_key[order]
    if by_key is not None and not (sorted_keys[1:] == sorted_keys[:-1]).any():
        hit, owner = segments_of(owner_key, keys, by_key)
    else:
        pos = np.minimum(np.searchsorted(sorted_keys, keys), max(n - 1, 0))
        hit = np.flatnonzero(sorted_keys[pos] == keys) if n else np.empty(0, dtype=np.int64)
        owner = order[pos[hit]]
    rel = ((seq[hit] - owner_seq[owner] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    keep = (rel >= 0) & (rel < limit)
    owner, rel, seg = owner[keep], rel[keep], hit[keep]
    if len(seg) == 0:  # no segment within reach of any owner (the callers' owners have one)
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, empty
    seg_len = plen[seg]
    # Exact retransmissions (same place, same length) are one segment.
    srt = np.lexsort((seg_len, rel, owner))
    owner, rel, seg, seg_len = owner[srt], rel[srt], seg[srt], seg_len[srt]
    dup = np.r_[False, (owner[1:] == owner[:-1]) & (rel[1:] == rel[:-1]) & (seg_len[1:] == seg_len[:-1])]
    owner, rel, seg, seg_len = owner[~dup], rel[~dup], seg[~dup], seg_len[~dup]
    # A segment extends the prefix only if it starts exactly where its predecessor ended.
    first = np.r_[True, owner[1:] != owner[:-1]]
    ends = rel + seg_len
    follows = np.r_[False, (owner[1:] == owner[:-1]) & (rel[1:] == ends[:-1])]
    ok = np.where(first, rel == 0, follows)
    # Once a link breaks, nothing after it in that owner counts: keep segments with no failed
    # link between them and the start of their owner's run.
    fails = (~ok).astype(np.int64)
    cum = np.cumsum(fails)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))
    ok = (cum - (cum[group_start] - fails[group_start])) == 0
    return owner[ok], rel[ok], seg[ok], seg_len[ok]


def segments_of(owner_key: U64, keys: U64, by_key: I64) -> tuple[I64, I64]:
    """(segment index, owner) for every segment carrying an owner's key (``by_key``: the stable
    argsort of ``keys``), without a search per segment.

    Grouped by owner, in arrival order within one: for :func:`assemble_prefix` (distinct owners),
    after its stable sort by owner, position and length the order is the same as scanning the
    segments in arrival order.
    """
    sorted_keys = keys[by_key]
    # Searched in key order: each search starts near the last one (numpy keeps the last bound for
    # ascending needles) and stays in cache; ~45% less than unsorted needles (20,000 in 400,000 keys).
    order = np.argsort(owner_key)
    needles = owner_key[order]
    lo, counts = np.empty(len(owner_key), dtype=np.int64), np.empty(len(owner_key), dtype=np.int64)
    lo[order] = np.searchsorted(sorted_keys, needles, "left")
    counts[order] = np.searchsorted(sorted_keys, needles, "right")
    counts -= lo
    owner = np.repeat(np.arange(len(owner_key), dtype=np.int64), counts)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return by_key[np.repeat(lo, counts) + within], owner


def server_flights(
    buf: U8, owner_key: U64, owner_seq: I64, keys: U64, seq: I64, payload: I64, plen: I64,
    by_key: I64 | None = None,
) -> Flight:
    """Assemble and walk the first flight of each server ``owner_key`` (stream starting at
    ``owner_seq``) from this window's TCP payload segments ``keys``/``seq``/``payload``/``plen``.

    Most flights end within a few KiB, and the bytes after them (encrypted data) are not
    wanted: a short prefix is tried first, the long one only for flights it did not settle.
    """
    short = _walk(
        *assemble_prefix(buf, owner_key, owner_seq, keys, seq, payload, plen, FIRST_TRY, by_key), len(owner_key)
    )
    retry = np.flatnonzero(short.ran_out)
    if len(retry) == 0:
        return short
    long = _walk(
        *assemble_prefix(buf, owner_key[retry], owner_seq[retry], keys, seq, payload, plen, MAX_FLIGHT, by_key),
        len(retry),
    )
    # One buffer for both: the long walk's offsets move past the short one's bytes.
    shift = len(short.buf)
    settled = short.settled.copy()
    cert_start, cert_len = short.cert_start.copy(), short.cert_len.copy()
    settled[retry] = long.settled
    cert_start[retry] = np.where(long.cert_start >= 0, long.cert_start + shift, -1)
    cert_len[retry] = long.cert_len
    cert_request = short.cert_request.copy()
    cert_request[retry] = long.cert_request
    span = short.span.copy()
    span[retry] = long.span
    kept = ~np.isin(short.msg_owner, retry)
    msg_owner = np.concatenate([short.msg_owner[kept], retry[long.msg_owner]])
    msg_size = np.concatenate([short.msg_size[kept], long.msg_size])
    order = np.argsort(msg_owner, kind="stable")
    return Flight(
        np.concatenate([short.buf, long.buf]), settled, cert_start, cert_len, long.ran_out[:0], cert_request, span,
        msg_owner[order], msg_size[order],
    )


def _walk(data: U8, start: I64, length: I64, n: int, compiled: bool | None = None) -> Flight:
    """Records and handshake messages of each assembled flight: a C loop per flight with the
    compiled core (:func:`ccore.flight_walk`; ``compiled``: None follows :func:`ccore.enabled`), else
    :func:`_walk_numpy`, its oracle in the tests."""
    if not (ccore.enabled() if compiled is None else compiled):
        return _walk_numpy(data, start, length, n)
    settled, cert_start, cert_len, ran_out, cert_request, msg_owner, msg_size = ccore.flight_walk(data, start, length)
    return Flight(data, settled, cert_start, cert_len, ran_out, cert_request, length, msg_owner, msg_size)


def _walk_numpy(data: U8, start: I64, length: I64, n: int) -> Flight:
    """Records and handshake messages of each assembled flight, one message position a step."""
    g = Gather(data)
    end = start + length
    pos = start.copy()
    rec_end = start.copy()
    settled = np.zeros(n, dtype=bool)
    cert_start = np.full(n, -1, dtype=np.int64)
    cert_len = np.zeros(n, dtype=np.int64)
    ran_out = np.zeros(n, dtype=bool)
    cert_request = np.zeros(n, dtype=bool)
    active = length > 0
    walked: list[tuple[I64, I64]] = []
    for _ in range(MAX_MESSAGES):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        p = pos[idx]
        at_boundary = p == rec_end[idx]
        # A new record: handshake continues the walk; ChangeCipherSpec ends a resumed one.
        ctype = g.u8(p)
        rlen = g.be16(p + 3)
        # The same record-header test as tls.scan_records, so both lanes stop at the same junk.
        header_ok = (
            (p + 5 <= end[idx]) & (g.u8(p + 1) == 3) & (g.u8(p + 2) <= 4) & (rlen <= MAX_RECORD_LENGTH)
        )
        ccs = at_boundary & header_ok & (ctype == 20)
        settled[idx[ccs]] = True
        stop = at_boundary & ~(header_ok & (ctype == 22) & (p + 5 + rlen <= end[idx]))
        short = at_boundary & ((p + 5 > end[idx]) | ((ctype == 22) & (p + 5 + rlen > end[idx])))
        ran_out[idx[short]] = True
        new_rec = at_boundary & ~stop
        rec_end[idx[new_rec]] = p[new_rec] + 5 + rlen[new_rec]
        p = np.where(new_rec, p + 5, p)
        mtype = g.u8(p)
        mlen = g.be24(p + 1)
        fits = p + 4 + mlen <= rec_end[idx]
        stop |= ~fits  # a message spanning records: leave it to the slow lane
        go = ~stop
        walked.append((idx[go], mlen[go] + 4))
        is_cert = go & (mtype == HS_CERTIFICATE) & (cert_start[idx] < 0)
        cert_start[idx[is_cert]] = p[is_cert] + 4
        cert_len[idx[is_cert]] = mlen[is_cert]
        cert_request[idx[go & (mtype == HS_CERTIFICATE_REQUEST)]] = True
        done = go & (mtype == HS_SERVER_HELLO_DONE)
        settled[idx[done]] = True
        stop |= done
        pos[idx] = np.where(go, p + 4 + mlen, p)
        active[idx[stop]] = False
    msg_owner = np.concatenate([w[0] for w in walked]) if walked else np.zeros(0, dtype=np.int64)
    msg_size = np.concatenate([w[1] for w in walked]) if walked else np.zeros(0, dtype=np.int64)
    order = np.argsort(msg_owner, kind="stable")
    return Flight(data, settled, cert_start, cert_len, ran_out, cert_request, length, msg_owner[order], msg_size[order])
