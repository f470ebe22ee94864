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
    "DISABLE_ENV", "DecodedArrays", "decode", "enabled", "flow_hash", "pcap_fields", "status", "walk_pcap",
    "walk_pcapng",
]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

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
