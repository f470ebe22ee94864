"""The ``ccore`` fuzz target: untrusted bytes through the compiled capture core, held to the numpy core.

Why a target of its own (the ``pcap`` target already reads captures): a C bug shows as memory damage,
not as an exception, so this target runs in a child with the sanitized build (:mod:`fuzz.sanitized`)
where AddressSanitizer and UBSan turn it into an abort; and a C result that differs from numpy's is
as much a bug as a crash, so every array is compared with the oracle (a difference raises
:class:`MismatchError`, a finding). Two passes per input:

1. the bytes as a capture file, read by both readers (C walkers, numpy walkers) at two window sizes,
   each batch decoded and hashed by both cores: equal arrays;
2. the bytes as raw memory, the C entry points called directly with offsets no reader would pass:
   both walkers at a lying start and limit in either byte order (their chain checked),
   :func:`ccore.pcap_fields` at every start a header fits (and one it does not: refused), and
   :func:`ccore.decode` over packets cut from the bytes in every link type (equal to numpy);
3. the bytes as assembled TLS flights, for the fast lane's entry points: :func:`ccore.flight_walk`
   over flights cut from the bytes at offsets the bytes choose (equal to the numpy walk, field for
   field) and :func:`ccore.gather_slices` over ranges the bytes choose, some partly or wholly
   outside (bounded as slicing is, equal to the numpy stitching); and :func:`ccore.hello_walk` over
   the same cuts read as ClientHello and as ServerHello bodies (equal masks, SNI and keys to numpy);
4. the bytes as a window of TCP segments of two TLS 1.3 connections (cut and assigned to the four
   directions as the bytes choose, some moved back or ahead: holes and partial overlaps), for
   :func:`ccore.tls13_walk`: the same records, arrivals and cuts as the numpy walk.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tlsdetect.readers.pcap.capture import PacketBatch

__all__ = ["MismatchError", "run"]

#: Window sizes of pass 1: the reader's own (one window here) and a small one (records straddle windows).
WINDOWS = (16 * 1024 * 1024, 4096)


class MismatchError(AssertionError):
    """The C core and the numpy core disagree on the same bytes (a finding, like a crash)."""


def _equal(what: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
        raise MismatchError(f"{what}: C {a.dtype}{a.shape} {a[:8]!r} != numpy {b.dtype}{b.shape} {b[:8]!r}")


def _exact(data: bytes) -> np.ndarray:
    """A uint8 array of exactly ``len(data)`` bytes in its own allocation: a read one past the end
    lands in AddressSanitizer's red zone (a view of ``bytes`` would hit its trailing NUL)."""
    out = np.empty(len(data), dtype=np.uint8)
    out[:] = np.frombuffer(data, dtype=np.uint8)
    return out


@functools.cache
def _scratch() -> Path:
    given = os.environ.get("TLSDETECT_FUZZ_SCRATCH")  # the runner's work directory, removed after the run
    return Path(tempfile.mkdtemp(prefix="scratch-ccore-", dir=given or None))


def _compare_decoders(batch: PacketBatch) -> None:
    from tlsdetect.readers.pcap.packets import decode, flow_hash

    dc, dn = decode(batch, compiled=True), decode(batch, compiled=False)
    for name in ("valid", "ip_version", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport",
                 "seq", "flags", "payload", "payload_len"):
        _equal(f"decode.{name}", getattr(dc, name), getattr(dn, name))
    if (dc.fragments, dc.unsupported) != (dn.fragments, dn.unsupported):
        c, n = (dc.fragments, dc.unsupported), (dn.fragments, dn.unsupported)
        raise MismatchError(f"decode: fragments, unsupported {c} != {n}")
    keys = (dc.src_hi, dc.src_lo, dc.dst_hi, dc.dst_lo, dc.sport, dc.dport)
    _equal("flow_hash", flow_hash(*keys, compiled=True), flow_hash(*keys, compiled=False))


def _as_capture(data: bytes) -> list[int]:
    """Pass 1: packets per batch (C reader), after both readers and both decoders agreed."""
    from tlsdetect.readers.pcap.capture import CaptureError, CaptureReader

    path = _scratch() / "capture"
    path.write_bytes(data)
    counts: list[int] = []
    for window in WINDOWS:
        outcome: list[tuple[str, object]] = []
        batches: list[list[PacketBatch]] = []
        for compiled in (True, False):
            got: list[PacketBatch] = []
            try:
                reader = CaptureReader(path, window=window, reuse_buffer=False, compiled=compiled)
                got.extend(reader)
                outcome.append(("read", reader.stats.warnings))
            except CaptureError as exc:  # the documented answer, the same from both readers
                outcome.append(("error", str(exc)))
            batches.append(got)
        if outcome[0] != outcome[1]:
            raise MismatchError(f"window {window}: C reader {outcome[0]!r} != numpy reader {outcome[1]!r}")
        if len(batches[0]) != len(batches[1]):
            raise MismatchError(f"window {window}: {len(batches[0])} batches from C, {len(batches[1])} from numpy")
        for bc, bn in zip(*batches, strict=True):
            for name in ("data", "caplen", "ts_ns", "linktype", "buf"):
                _equal(f"window {window} batch.{name}", getattr(bc, name), getattr(bn, name))
            _compare_decoders(bc)
            if window == WINDOWS[0]:
                counts.append(len(bc))
    return counts


def _check_chain(buf: np.ndarray, starts: np.ndarray, nxt: int, at: int, little: bool, header: int) -> None:
    """Each start is the previous record's end; the last record ends at ``nxt``, inside the buffer."""
    n = len(buf)
    pos = min(max(at, 0), n)
    order = "<" if little else ">"
    for s in starts.tolist():
        if s != pos:
            raise MismatchError(f"walker: record at {s}, the chain is at {pos}")
        word = bytes(buf[s + (8 if header == 16 else 4): s + (12 if header == 16 else 8)])
        length = int(np.frombuffer(word, dtype=order + "u4")[0])
        pos = s + (header + length if header == 16 else length)
        if pos > n:
            raise MismatchError(f"walker: record at {s} ends at {pos}, past the buffer ({n})")
    if nxt != pos:
        raise MismatchError(f"walker: stopped at {nxt}, the chain at {pos}")


def _pcap_fields(buf: np.ndarray, data: bytes) -> None:
    """:func:`ccore.pcap_fields` at every start whose 16-byte header fits, against a plain reading of the
    header; a start past that is refused (ValueError), never read."""
    from tlsdetect.readers.pcap import ccore

    n = len(buf)
    little, nano = bool(data[:1]) and data[0] & 1 == 1, bool(data[:1]) and data[0] & 2 == 2
    starts = np.arange(0, max(n - 15, 0), 3, dtype=np.int64)
    caplen, ts_ns = ccore.pcap_fields(buf, starts, little, nano)
    headers = np.ascontiguousarray(buf[starts[:, None] + np.arange(12)])  # (records, 12) bytes
    want = headers.view(("<" if little else ">") + "u4").astype(np.int64).reshape(-1, 3)
    _equal("pcap_fields.caplen", caplen, want[:, 2].copy())
    _equal("pcap_fields.ts_ns", ts_ns, want[:, 0] * 1_000_000_000 + want[:, 1] * (1 if nano else 1000))
    try:
        ccore.pcap_fields(buf, np.array([max(n - 15, 0)], dtype=np.int64), little, nano)
    except ValueError:
        return
    raise MismatchError(f"pcap_fields read a header at {max(n - 15, 0)} of a {n}-byte buffer")


def _as_memory(data: bytes) -> int:
    """Pass 2: the C entry points on raw bytes with the offsets taken from the bytes themselves."""
    from tlsdetect.readers.pcap import ccore
    from tlsdetect.readers.pcap.capture import PacketBatch
    from tlsdetect.readers.pcap.packets import LINKTYPES, LT_RAW_ALT

    buf = _exact(data)
    n = len(buf)
    at = (data[0] - 16) if n else 0  # a start before the buffer, inside it, or past its end
    limit = n - (data[1] if n > 1 else 0) + 8
    for little in (True, False):
        starts, nxt = ccore.walk_pcap(buf, at, limit, little, 1 << 18)
        _check_chain(buf, starts, nxt, at, little, 16)
        starts, nxt = ccore.walk_pcapng(buf, at, limit, little, 1 << 18)
        _check_chain(buf, starts, nxt, at, little, 0)
    _pcap_fields(buf, data)
    if n == 0:
        return 0
    links = np.array(sorted({*LINKTYPES, *LT_RAW_ALT, 127}), dtype=np.int64)
    offsets = np.arange(0, n, max(n // 16, 1), dtype=np.int64)
    step = int(data[-1]) + 1
    data_at = np.concatenate([offsets, offsets]) if n > 1 else offsets
    caplen = np.minimum(np.concatenate([n - offsets, np.full(len(offsets), step)])[: len(data_at)], n - data_at)
    linktype = links[buf[data_at] % len(links)]
    batch = PacketBatch(buf, data_at, caplen, np.zeros(len(data_at), dtype=np.int64), linktype)
    _compare_decoders(batch)
    return len(data_at)


def _as_flights(data: bytes) -> int:
    """Pass 3: the flight walk and the segment stitching on the bytes, against their numpy versions."""
    from tlsdetect.readers.pcap.flight import _walk, _walk_numpy, slices

    buf = _exact(data)
    n = len(buf)
    cuts = np.unique(np.array([0, n, *(b * n // 256 for b in data[:16])], dtype=np.int64))
    start, length = cuts[:-1], np.diff(cuts)  # consecutive flights tiling the bytes
    start = np.concatenate([start, np.minimum(start + 5, n)])  # and each again from its first message
    length = np.concatenate([length, np.minimum(length, n - start[len(length):])])
    c, py = _walk(buf, start, length, len(start), compiled=True), _walk_numpy(buf, start, length, len(start))
    for name in ("settled", "cert_start", "cert_len", "ran_out", "cert_request", "span", "msg_owner", "msg_size"):
        _equal(f"flight_walk.{name}", getattr(c, name), getattr(py, name))
    at = np.array([b * 7 for b in data[16:32]], dtype=np.int64)  # up to 1,785: past a short buffer's end
    given = list(data[32 : 32 + len(at)])
    size = np.array(given + [0] * (len(at) - len(given)), dtype=np.int64)
    _equal("gather_slices", slices(buf, at, size, compiled=True), slices(buf, at, size, compiled=False))
    if n:
        from tlsdetect.wire.hello_batch import client_hello_batch, server_hello_batch

        end = start + length + np.resize(np.array([-3, 0, 4], dtype=np.int64), len(start))  # ends lie too
        for walk in (client_hello_batch, server_hello_batch):
            hc, hn = walk(buf, start, end, compiled=True), walk(buf, start, end, compiled=False)
            for name in ("valid", "sni_start", "sni_len", "hrr", "selected_tls13"):
                _equal(f"{walk.__name__}.{name}", getattr(hc, name), getattr(hn, name))
            if hc.key != hn.key:
                raise MismatchError(f"{walk.__name__}: keys differ")
    return len(start)


def _as_window(data: bytes) -> int:
    """Pass 4: the TLS 1.3 flight walk over segments cut from the bytes, against the numpy walk."""
    from tlsdetect.readers.pcap.window_flights import _direction, _walk_compiled, _walk_numpy

    buf = _exact(data)
    n = len(buf)
    if n < 2:
        return 0
    cuts = np.unique(np.array([0, n, *(b * n // 256 for b in data[:24])], dtype=np.int64))
    payload, plen = cuts[:-1], np.diff(cuts)
    pick = np.frombuffer(data, dtype=np.uint8)[np.arange(len(payload)) % n].astype(np.int64)
    keys = (1 + (pick & 3)).astype(np.uint64)  # directions 1/2 (client/server of one connection), 3/4
    shift = np.where((pick & 0x30) == 0x30, pick % 7 - 3, 0)
    ends = np.zeros(5, dtype=np.int64)
    seq = np.empty(len(payload), dtype=np.int64)
    for i, k in enumerate(keys.tolist()):
        seq[i] = 10_000 * k + ends[k] + (shift[i] if seq[:i][keys[:i] == k].size else 0)
        ends[k] += plen[i]
    first = {int(k): int(np.flatnonzero(keys == k)[0]) for k in np.unique(keys)}
    pairs = [(first[c], first[c + 1]) for c in (1, 3) if c in first and c + 1 in first]
    if not pairs:
        return 0
    client, server = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True))
    by_key = np.argsort(keys, kind="stable")
    base = data[0] * 100

    def walks() -> tuple[object, object]:
        return tuple(_direction(buf, keys, seq, payload, plen, by_key, keys[h], seq[h], base)  # type: ignore[return-value]
                     for h in (server, client))

    got = _walk_compiled(payload, base, base + server, *walks())  # type: ignore[arg-type]
    want = _walk_numpy(*walks(), base + server)  # type: ignore[arg-type]
    for side, g_rec, w_rec, g_cut, w_cut in (("server", got[0], want[0], got[1], want[1]),
                                             ("client", got[2], want[2], got[3], want[3])):
        for name in ("owner", "ctype", "length", "arrival"):
            _equal(f"tls13_walk.{side}.{name}", getattr(g_rec, name), getattr(w_rec, name))
        _equal(f"tls13_walk.{side}.cut", g_cut, w_cut)
    return len(pairs)


def run(data: bytes) -> list[int]:
    """The target: all four passes; packets per batch of the capture pass (empty when it is no capture)."""
    counts = _as_capture(data)
    _as_memory(data)
    _as_flights(data)
    _as_window(data)
    return counts
