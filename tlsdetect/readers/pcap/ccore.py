"""The compiled capture core (``_ccore.c``): record walks, header decoding and flow keys in C.

Why: profiled on the 1.72 GB benchmark file (2.1M packets), the reader thread spent ~3.3 s of CPU
in numpy: the record index 2.1 s (a byte comparison over every byte of each 16 MiB window, to find
~20,000 record starts), header decoding 0.9 s (~60 gathers over every packet), flow keys and the
hello-start mask 0.2 s. A C loop that follows the length fields touches ~40 bytes per packet.

Why plain C with the buffer protocol: no Cython (not installed, one more build dependency) and no
numpy C-API (the build would depend on numpy's headers and version). The caller allocates the numpy
arrays here and the C code fills them; the extension needs only ``Python.h`` and a compiler.

The numpy code stays: it runs when the extension is not built (no compiler at install time: the
build is optional) or when ``TLSDETECT_NO_CCORE=1``, and it is the oracle of the tests, which
require equal arrays from both on every capture (``tests/test_ccore.py``). :func:`status` says
which core runs; the reader counts its packets under ``decoded_by_c`` or ``decoded_by_numpy``.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import numpy.typing as npt

__all__ = [
    "DISABLE_ENV", "DecodedArrays", "WalkedFlights", "decode", "enabled", "flight_walk", "flow_hash", "gather_slices",
    "hello_walk", "pcap_fields", "status", "tls13_walk", "walk_pcap", "walk_pcapng",
]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Set to 1 (or true/yes) to run the numpy core although the C one is built.
DISABLE_ENV = "TLSDETECT_NO_CCORE"

_module: ModuleType | None
try:
    from tlsdetect.readers.pcap import _ccore as _module

    _missing = ""
except ImportError as exc:  # not compiled (no compiler at install time), or a broken build
    _module = None
    _missing = str(exc)


def _lib() -> ModuleType:
    if _module is None:
        raise RuntimeError(f"the compiled capture core is not built: {_missing}")
    return _module


def enabled() -> bool:
    """Whether the C core runs: built, and not switched off by ``TLSDETECT_NO_CCORE``."""
    return _module is not None and os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes")


def status() -> str:
    """Which core runs and why, for ``--verbose`` and the benchmarks."""
    if enabled():
        return "compiled C (tlsdetect.readers.pcap._ccore)"
    if _module is not None:
        return f"numpy ({DISABLE_ENV} is set)"
    return f"numpy (the C core is not built: {_missing})"


def walk_pcap(buf: U8, at: int, limit: int, little: bool, max_packet: int) -> tuple[I64, int]:
    """Classic pcap record starts from ``at`` while they start before ``limit``, and where the walk
    stopped: at ``limit``, or at the first record that is not plainly whole and sane (the exact
    Python walker takes over there and names any damage)."""
    room = max(min(limit, len(buf)) - at, 0) // 16 + 1
    out = np.empty(room, dtype=np.int64)
    count, nxt = _lib().walk_pcap(buf, out, at, limit, little, max_packet)
    return out[:count].copy(), nxt


def pcap_fields(buf: U8, starts: I64, little: bool, nanosecond: bool) -> tuple[I64, I64]:
    """Captured length and timestamp (ns) of the classic pcap records at ``starts``, in one C pass."""
    caplen = np.empty(len(starts), dtype=np.int64)
    ts_ns = np.empty(len(starts), dtype=np.int64)
    if len(starts):
        _lib().pcap_fields(buf, np.ascontiguousarray(starts, dtype=np.int64), little, nanosecond, caplen, ts_ns)
    return caplen, ts_ns


def walk_pcapng(buf: U8, at: int, limit: int, little: bool, max_block: int) -> tuple[I64, int]:
    """pcapng packet blocks (EPB, SPB, PB) from ``at``, with the exact walker's checks; any other
    block or a damaged one stops the walk there."""
    room = max(min(limit, len(buf)) - at, 0) // 16 + 1
    out = np.empty(room, dtype=np.int64)
    count, nxt = _lib().walk_pcapng(buf, out, at, limit, little, max_block)
    return out[:count].copy(), nxt


class DecodedArrays:
    """The C decoder's output: one (13, n) int64 block, each field a row (views, no copies)."""

    __slots__ = ("fragments", "rows")
    FIELDS = (
        "ip_version", "proto", "sport", "dport", "seq", "flags", "payload", "payload_len",
        "src_hi", "src_lo", "dst_hi", "dst_lo", "valid",
    )

    def __init__(self, rows: I64, fragments: int) -> None:
        self.rows = rows
        self.fragments = fragments

    def int_field(self, name: str) -> I64:
        row: I64 = self.rows[self.FIELDS.index(name)]
        return row

    def address(self, name: str) -> U64:
        row: U64 = self.rows[self.FIELDS.index(name)].view(np.uint64)
        return row

    def valid(self) -> npt.NDArray[np.bool_]:
        row: npt.NDArray[np.bool_] = self.rows[self.FIELDS.index("valid")] != 0
        return row


def decode(buf: U8, data: I64, caplen: I64, linktype: I64) -> DecodedArrays:
    """Link, IP and TCP/UDP headers of packets at ``data`` (``caplen`` bytes each) in ``buf``;
    the same values as :func:`tlsdetect.readers.pcap.packets.decode`, row for row."""
    n = len(data)
    rows = np.empty((len(DecodedArrays.FIELDS), n), dtype=np.int64)
    args = [np.ascontiguousarray(a, dtype=np.int64) for a in (data, caplen, linktype)]
    fragments = _lib().decode(np.ascontiguousarray(buf), *args, rows) if n else 0
    return DecodedArrays(rows, int(fragments))


def _u64(a: npt.NDArray[np.integer] | npt.NDArray[np.unsignedinteger]) -> U64:
    if a.dtype == np.int64:
        return np.ascontiguousarray(a).view(np.uint64)
    return np.ascontiguousarray(a, dtype=np.uint64)


def flow_hash(src_hi: U64, src_lo: U64, dst_hi: U64, dst_lo: U64, sport: I64, dport: I64) -> U64:
    """:func:`tlsdetect.readers.pcap.packets.flow_hash` in one C loop."""
    out = np.empty(len(src_hi), dtype=np.uint64)
    if len(out):
        _lib().flow_hash(*(_u64(a) for a in (src_hi, src_lo, dst_hi, dst_lo, sport, dport)), out)
    return out


def gather_slices(buf: U8, lo: I64, hi: I64) -> U8:
    """``buf[lo[i]:hi[i]]`` for every i, concatenated into one new array (each range must lie in ``buf``).

    Why: stitching a window's flight and hello segments was a Python slice per segment and a
    ``bytes.join`` (0.5 s per 100k connections); here it is one C loop of ``memcpy``.
    """
    lo, hi = (np.ascontiguousarray(a, dtype=np.int64) for a in (lo, hi))
    out = np.empty(int((hi - lo).sum()) if len(lo) else 0, dtype=np.uint8)
    if len(lo):
        _lib().gather_slices(buf, lo, hi, out)
    return out


#: ``flight_walk``'s answer: per flight settled, cert_start, cert_len, ran_out, cert_request; then the
#: walked messages' owner and size (with the 4-byte header), grouped by owner in stream order.
WalkedFlights = tuple[B, I64, I64, B, B, I64, I64]

#: Message positions the walk reads per flight (``flight.MAX_MESSAGES``; fixed in ``_ccore.c``).
FLIGHT_MAX_MESSAGES = 16


def flight_walk(data: U8, start: I64, length: I64) -> WalkedFlights:
    """The records and handshake messages of each flight ``data[start:start+length]``, as
    :func:`tlsdetect.readers.pcap.flight._walk` reads them (the tests hold the two equal)."""
    n = len(start)
    start, length = (np.ascontiguousarray(a, dtype=np.int64) for a in (start, length))
    settled, ran_out, cert_request = (np.zeros(n, dtype=bool) for _ in range(3))
    cert_start, cert_len = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    owner, size = (np.empty(n * FLIGHT_MAX_MESSAGES, dtype=np.int64) for _ in range(2))
    count = 0
    if n:
        count = _lib().flight_walk(np.ascontiguousarray(data), start, length, settled, cert_start, cert_len, ran_out,
                                   cert_request, owner, size)
    return settled, cert_start, cert_len, ran_out, cert_request, owner[:count].copy(), size[:count].copy()


#: ``hello_walk``'s answer per hello: valid, SNI start and length, HelloRetryRequest, TLS 1.3 selected, key.
WalkedHellos = tuple[B, I64, I64, B, B, list[bytes]]


def hello_walk(buf: U8, body: I64, end: I64, server: bool) -> WalkedHellos:
    """ClientHello (or ServerHello) bodies ``buf[body:end]`` walked in C, as
    :func:`tlsdetect.wire.hello_batch.client_hello_batch` (``server_hello_batch``) walks them with numpy:
    the same masks, SNI positions and exact fingerprint-input keys (the tests hold the two equal)."""
    n = len(body)
    body, end = (np.ascontiguousarray(a, dtype=np.int64) for a in (body, end))
    valid, hrr, tls13 = (np.zeros(n, dtype=bool) for _ in range(3))
    sni_start, sni_len = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    keys: list[bytes] = []
    if n:
        keys = _lib().hello_walk(np.ascontiguousarray(buf), body, end, server, valid, sni_start, sni_len, hrr, tls13)
    return valid, sni_start, sni_len, hrr, tls13, keys


#: Records walked per direction and owner by :func:`tls13_walk` (``records.MAX_RECORDS`` and a sentinel;
#: fixed in ``_ccore.c``).
WALK_SLOTS = 25

#: One direction of :func:`tls13_walk`'s input: its chain (``rel``, ``seg``, ``seg_len``, grouped by owner in
#: stream order, owner ascending), and per owner ``end``, ``beyond``, ``broken``, ``limited``.
WalkDirection = tuple[I64, I64, I64, I64, I64, I64, B, B]
#: One direction of :func:`tls13_walk`'s answer: the records walked (owner, kind, length, arrival), grouped
#: by owner in stream order, and per owner whether its walk ended cut.
WalkedRecords = tuple[I64, I64, I64, I64, B]


def _walk_input(d: WalkDirection, n: int) -> tuple[I64, I64, I64]:
    owner, rel, seg, seg_len, end, beyond, broken, limited = d
    chain = np.ascontiguousarray(np.stack([rel, seg, seg_len]).astype(np.int64, copy=False))
    lo = np.searchsorted(owner, np.arange(n + 1, dtype=np.int64)).astype(np.int64)
    own = np.ascontiguousarray(np.stack([end, beyond, broken.astype(np.int64), limited.astype(np.int64)]),
                               dtype=np.int64)
    return chain, lo, own


def tls13_walk(buf: U8, payload: I64, base: int, record_max: int, t_hello: I64, server: WalkDirection,
               client: WalkDirection) -> tuple[WalkedRecords, WalkedRecords]:
    """:func:`tlsdetect.readers.pcap.window_flights.tls13_window_flights`' record walk in one C call: both
    directions of each TLS 1.3 handshake a record at a time together, each halted once its flight is
    decided (the tests hold the records and cuts equal to the numpy walk's).

    Why: the numpy walk is ~24 steps of a dozen whole-array calls each per window (1.0 s of 15 s
    main-thread CPU per 100k connections, profiled); here each owner is walked once, in C.
    """
    n = len(t_hello)
    s_in, c_in = _walk_input(server, n), _walk_input(client, n)
    s_out, c_out = (np.empty((4, n * WALK_SLOTS), dtype=np.int64) for _ in range(2))
    cut = np.zeros((2, n), dtype=bool)
    sc = cc = 0
    if n:
        sc, cc = _lib().tls13_walk(np.ascontiguousarray(buf), np.ascontiguousarray(payload, dtype=np.int64), base,
                                   record_max, np.ascontiguousarray(t_hello, dtype=np.int64), *s_in, *c_in, s_out,
                                   c_out, cut)
    s_rec = (s_out[0, :sc], s_out[1, :sc], s_out[2, :sc], s_out[3, :sc], cut[0])
    c_rec = (c_out[0, :cc], c_out[1, :cc], c_out[2, :cc], c_out[3, :cc], cut[1])
    return s_rec, c_rec
