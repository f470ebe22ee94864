"""Packet index of pcap and pcapng files, found with numpy instead of a per-packet loop.

A capture file is a chain: every record (pcap) or block (pcapng) says how long it is, and the
next one starts right after. Walking that chain in Python costs a bytecode loop per packet. Here
each window of the file (``WINDOW`` bytes, so memory stays bounded on multi-GB files) is instead

1. scanned with vectorised byte comparisons for every offset that *could* start a record
   (plausible timestamp and length bytes); real record starts are always among them;
2. turned into a jump table ``next[i]`` (candidate -> candidate its length points at);
3. resolved by pointer doubling into exactly the chain reachable from the known first record:
   false candidates inside packet data are never on that chain.

With the compiled core built (:mod:`.ccore`), steps 1-3 are instead one C loop that follows the
length fields with the slow walker's checks; the numpy index stays as the fallback.

If the chain ever stops short of the window end (an odd file whose headers the filter did not
expect, a new pcapng section, damage) the window is finished by :class:`_SlowWalker`, an exact
sequential reader that also produces the precise error message for damaged files. Both paths
yield the same :class:`PacketBatch` and are checked against each other in the tests.

Size: one module because the vectorised index and the exact walker must read the same formats
byte for byte (pcap, pcapng, their link types and timestamp units); split, the two drift apart.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap import ccore

__all__ = [
    "CaptureError",
    "CaptureFormat",
    "CaptureReader",
    "PacketBatch",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

#: Bytes per window. Temporaries are a few window-sized boolean arrays.
WINDOW = 16 * 1024 * 1024
#: Largest record we follow; Wireshark's own limit for ordinary link types.
MAX_PACKET = 262_144
#: Tail read past the window so a record that starts inside it is whole in the buffer.
TAIL = MAX_PACKET + 64
#: Window buffers kept for reuse when batches may outlive the next read (prefetch depth + 2 in flight).
POOL_BUFFERS = 6

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D

BT_IDB = 1
BT_PB = 2  # obsolete Packet Block
BT_SPB = 3
BT_EPB = 6
#: Smallest valid length of each packet block: the fixed fields plus the trailing length.
MIN_PACKET_BLOCK = {BT_EPB: 32, BT_PB: 32, BT_SPB: 16}
MIN_IDB = 20
NS = 1_000_000_000


class CaptureError(ValueError):
    """The file is not a capture, or is damaged where reading cannot go on."""


@dataclass(frozen=True, slots=True)
class CaptureFormat:
    kind: str  # "pcap" or "pcapng"
    little_endian: bool
    nanosecond: bool = False
    linktype: int = -1
    snaplen: int = 0


@dataclass(slots=True)
class PacketBatch:
    """Packets of one window: ``buf`` holds the bytes, the arrays index into it.

    ``data`` is the offset of each packet's first link-layer byte in ``buf``; ``caplen`` its
    captured length; ``ts_ns`` nanoseconds since the epoch; ``linktype`` per packet (pcapng
    interfaces may differ).
    """

    buf: U8
    data: I64
    caplen: I64
    ts_ns: I64
    linktype: I64

    def __len__(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class _Interface:
    linktype: int
    ts_per_s: int = 1_000_000  # timestamp units per second; pcapng default is microseconds
    ts_offset_s: int = 0


def _ticks_to_ns(ticks: I64, per_s: int) -> I64:
    """Exact nanoseconds of pcapng timestamps at ``per_s`` units per second.

    Whole seconds first, then the fraction truncated to nanoseconds, as Wireshark does; integer
    arithmetic throughout (float64 loses up to ~256 ns at today's epoch).
    """
    if NS % per_s == 0:
        return ticks * (NS // per_s)
    if per_s % NS == 0 and per_s // NS < 2**63:
        return ticks // (per_s // NS)
    g = math.gcd(NS, per_s)
    a, b = NS // g, per_s // g
    if per_s * a < 2**63:
        sec, rem = np.divmod(ticks, per_s)
        return sec * NS + rem * a // b  # type: ignore[no-any-return]
    # Resolutions finer than ~0.1 ns: rare enough for Python integers.
    return np.array([t * NS // per_s for t in ticks.tolist()], dtype=np.int64)


def _u32(buf: U8, idx: I64, little: bool) -> I64:
    """Unaligned 32-bit read at many offsets at once (offsets must lie in the buffer).

    One gather through an overlapping view (element ``i`` is bytes ``i .. i + 3``), not four.
    """
    words = np.ndarray((max(len(buf) - 3, 0),), dtype="<u4" if little else ">u4", buffer=buf, strides=(1,))
    return words[idx].astype(np.int64)


def _chain(cand: I64, nxt_pos: I64, start: int) -> I64:
    """Candidate indices on the chain from ``cand[start]``, by pointer doubling.

    ``nxt_pos`` is where each candidate's successor would start. Returns the indices of the
    chain in order. Work is O(n log n) numpy, never a per-record Python step.
    """
    if start == 0 and np.array_equal(nxt_pos[:-1], cand[1:]):
        # The usual window: every candidate is a record, each pointing at the next one.
        return np.arange(len(cand), dtype=np.int64)
    idx = np.searchsorted(cand, nxt_pos)
    idx_c = np.minimum(idx, len(cand) - 1)
    jump = np.where((idx < len(cand)) & (cand[idx_c] == nxt_pos), idx_c, -1).astype(np.int64)
    levels = [jump]
    # Build jump tables 2^k until no chain that starts at `start` can go further.
    while True:
        j = levels[-1]
        if j[start] < 0:
            break
        j2 = np.where(j >= 0, j[np.maximum(j, 0)], -1)
        levels.append(j2)
    path = np.array([start], dtype=np.int64)
    for j in reversed(levels[:-1]):
        step = j[path]
        step = step[step >= 0]
        path = np.concatenate([path, step]) if len(step) else path
    # The doubled union is the chain but not in order; positions are increasing along it.
    path.sort()
    return path


class CaptureReader:
    """Iterate :class:`PacketBatch` windows over a pcap or pcapng file.

    Damage ends the read with a warning in :attr:`stats` that names the byte offset, after
    everything before it has been yielded: a truncated capture is read up to the damage.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        window: int = WINDOW,
        vectorised: bool = True,
        reuse_buffer: bool = True,
        compiled: bool | None = None,
    ) -> None:
        """``reuse_buffer``: each batch's ``buf`` is overwritten by the next window (the engine
        finishes with a batch before asking for the next); pass False to keep every batch.
        ``compiled``: the fast path is the C walker (default: when :func:`.ccore.enabled`), else numpy;
        ``vectorised=False`` walks with the exact Python walker alone."""
        self.path = Path(path)
        self.reuse_buffer = reuse_buffer
        self._buffer: bytearray | None = None
        self._pool: list[U8] = []
        self.window = window
        self.vectorised = vectorised
        self.compiled = ccore.enabled() if compiled is None else compiled
        #: bytes_read (the position reached), counts: packets, slow_path_records, c_walk_records, skipped_blocks
        self.stats = ReadStats()
        self.size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            head = fh.read(64)
        self.format = self._detect(head)
        self._interfaces: list[_Interface] = []
        self._little = self.format.little_endian

    # -- format detection -------------------------------------------------------------------

    def _detect(self, head: bytes) -> CaptureFormat:
        if len(head) < 4:
            raise CaptureError(f"{self.path}: not a capture file ({len(head)} bytes)")
        magic_le = struct.unpack("<I", head[:4])[0]
        magic_be = struct.unpack(">I", head[:4])[0]
        if magic_be == PCAPNG_SHB:
            if len(head) < 12:
                raise CaptureError(f"{self.path}: truncated pcapng section header")
            bom = head[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                return CaptureFormat("pcapng", True)
            if bom == b"\x1a\x2b\x3c\x4d":
                return CaptureFormat("pcapng", False)
            raise CaptureError(f"{self.path}: pcapng section header with bad byte-order magic")
        for magic, little in ((magic_le, True), (magic_be, False)):
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                if len(head) < 24:
                    raise CaptureError(f"{self.path}: truncated pcap file header ({len(head)} bytes)")
                fmt = "<" if little else ">"
                _, _, _, _, snaplen, linktype = struct.unpack(fmt + "HHiIII", head[4:24])
                return CaptureFormat(
                    "pcap", little, magic == PCAP_MAGIC_NS, linktype & 0x0FFFFFFF, snaplen
                )
        if head[:4] == b"\xa1\xb2\xcd\x34" or head[:4] == b"\x34\xcd\xb2\xa1":
            raise CaptureError(f"{self.path}: modified (Kuznetzov) pcap format is not supported")
        raise CaptureError(f"{self.path}: not a pcap or pcapng file (magic {head[:4].hex()})")

    # -- iteration --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PacketBatch]:
        pcap = self.format.kind == "pcap"
        if self.compiled:
            fast = self._pcap_compiled if pcap else self._pcapng_compiled
        else:
            fast = self._pcap_fast if pcap else self._pcapng_fast
        slow = self._pcap_slow if pcap else self._pcapng_slow
        batch = self._pcap_batch if pcap else self._pcapng_batch
        pos = 24 if pcap else 0
        with self.path.open("rb") as fh:
            while pos < self.size:
                buf = self._read(fh, pos, self.window + TAIL)
                limit = min(self.window, len(buf))
                found: list[I64] = []
                at, failures, status = 0, 0, "ok"
                while at < limit:
                    can_fast = self.vectorised and failures < 3
                    if can_fast and (pcap or self._interfaces):
                        got, nxt = fast(buf, at, limit)
                        if len(got):
                            found.append(got)
                            at = nxt
                            continue
                        failures += 1
                    got, at, status = slow(buf, at, limit, pos, 64 if can_fast else None, bool(found))
                    if len(got):
                        found.append(got)
                    if status == "flush" and found:
                        yield batch(buf, np.concatenate(found))
                        found = []
                        got, at, status = slow(buf, at, limit, pos, 1, False)
                        if len(got):
                            found.append(got)
                    if status in ("stop", "more"):
                        break
                if found:
                    yield batch(buf, np.concatenate(found))
                if status == "stop" or at == 0:
                    self.stats.bytes_read = self.size
                    return
                pos += at
                self.stats.bytes_read = min(pos, self.size)

    def _read(self, fh: BufferedReader, pos: int, n: int) -> U8:
        """The bytes at ``pos``; one buffer is reused so memory stays flat and pages stay warm."""
        fh.seek(pos)
        if not self.reuse_buffer:
            buf = self._free_buffer(n)
            got = fh.readinto(buf[:n].data)
            return buf[:got]
        if self._buffer is None or len(self._buffer) < n:
            self._buffer = bytearray(n)
        got = fh.readinto(memoryview(self._buffer)[:n])
        return np.frombuffer(self._buffer, dtype=np.uint8, count=got)

    def _free_buffer(self, n: int) -> U8:
        """A buffer of at least ``n`` bytes that nothing else refers to any more.

        With ``reuse_buffer=False`` batches may outlive the next read, so a buffer is recycled
        only once no batch, view or slice of it is alive: every numpy view of it holds a
        reference, so only the pool's own one (and ``getrefcount``'s argument) may remain.
        Recycled buffers are already paged in; a fresh one per window is faulted in anew.
        """
        pool = self._pool
        for i in range(len(pool)):
            if len(pool[i]) >= n and sys.getrefcount(pool[i]) == 2:
                return pool[i]
        buf = np.empty(n, dtype=np.uint8)
        if len(pool) < POOL_BUFFERS:
            pool.append(buf)
        return buf

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(f"{self.path}: {message}")

    # -- classic pcap -----------------------------------------------------------------------

    @property
    def _frac_limit(self) -> int:
        return 1_000_000_000 if self.format.nanosecond else 1_000_000

    def _pcap_compiled(self, buf: U8, at: int, limit: int) -> tuple[I64, int]:
        """:meth:`_pcap_fast` by the C walker: it stops where the exact walker must look."""
        starts, nxt = ccore.walk_pcap(buf, at, limit, self._little, MAX_PACKET)
        self.stats.counts["c_walk_records"] += len(starts)
        return starts, nxt

    def _pcap_fast(self, buf: U8, at: int, limit: int) -> tuple[I64, int]:
        """Record starts on the chain from ``buf[at]``, and where the chain left off."""
        n = len(buf)
        m = min(limit, n - 16) - at
        if m <= 0:
            return np.empty(0, dtype=np.int64), at
        little = self._little
        ts_hi = int(buf[at + 3] if little else buf[at])
        hi_ts, hi_incl, hi_orig = (3, 11, 15) if little else (0, 8, 12)
        base = at
        # One pass over the window: the top timestamp byte changes every 194 days, so nearly
        # every record shares the first one's, while encrypted payload matches 1 time in 256.
        cand = np.flatnonzero(buf[base + hi_ts : base + hi_ts + m] == ts_hi).astype(np.int64)
        if len(cand) == 0 or cand[0] != 0 or len(cand) > max(m // 8, 64):
            return np.empty(0, dtype=np.int64), at
        cand += base
        cand = cand[(buf[cand + hi_incl] == 0) & (buf[cand + hi_orig] == 0)]
        if len(cand) == 0 or cand[0] != at:  # the record at ``at`` itself failed the length test
            return np.empty(0, dtype=np.int64), at
        incl = _u32(buf, cand + 8, little)
        frac = _u32(buf, cand + 4, little)
        ok = (incl <= MAX_PACKET) & (frac < self._frac_limit)
        if not ok[0]:
            return np.empty(0, dtype=np.int64), at
        cand = cand[ok]
        incl = incl[ok]
        nxt = cand + 16 + incl
        path = _chain(cand, nxt, 0)
        starts = cand[path]
        ends = nxt[path]
        # Records must be whole in the buffer; one that is not starts the next window.
        whole = ends <= n
        if not whole.all():
            cut = int(np.argmin(whole))
            return starts[:cut], int(starts[cut])
        return starts, int(ends[-1])

    def _pcap_slow(
        self, buf: U8, pos: int, limit: int, file_base: int, max_records: int | None, _pending: bool
    ) -> tuple[I64, int, str]:
        """Exact sequential walk from ``pos``; finds and names damage."""
        fmt = "<IIII" if self._little else ">IIII"
        out: list[int] = []
        n = len(buf)
        at_eof = file_base + n >= self.size
        raw = buf[pos : min(n, limit + TAIL)].tobytes()
        base = pos
        while pos < limit:
            if max_records is not None and len(out) >= max_records:
                return np.asarray(out, dtype=np.int64), pos, "ok"
            if pos + 16 > n:
                if at_eof:
                    self._warn(
                        f"truncated record header at byte {file_base + pos} "
                        f"({n - pos} of 16 bytes); read up to the damage"
                    )
                    return np.asarray(out, dtype=np.int64), pos, "stop"
                return np.asarray(out, dtype=np.int64), pos, "more"
            _, _, incl, _ = struct.unpack_from(fmt, raw, pos - base)
            if incl > MAX_PACKET:
                self._warn(
                    f"record at byte {file_base + pos} claims {incl} captured bytes "
                    f"(limit {MAX_PACKET}); the file is damaged from here, read up to the damage"
                )
                return np.asarray(out, dtype=np.int64), pos, "stop"
            if pos + 16 + incl > n:
                if at_eof:
                    self._warn(
                        f"truncated packet at byte {file_base + pos}: record needs {incl} bytes, "
                        f"{n - pos - 16} present; read up to the damage"
                    )
                    return np.asarray(out, dtype=np.int64), pos, "stop"
                return np.asarray(out, dtype=np.int64), pos, "more"
            out.append(pos)
            self.stats.counts["slow_path_records"] += 1
            pos += 16 + incl
        return np.asarray(out, dtype=np.int64), pos, "ok"

    def _pcap_batch(self, buf: U8, starts: I64) -> PacketBatch:
        little = self._little
        self.stats.counts["packets"] += len(starts)
        if self.compiled:
            incl, ts_ns = ccore.pcap_fields(buf, starts, little, self.format.nanosecond)
        else:
            unit = 1 if self.format.nanosecond else 1000
            incl = _u32(buf, starts + 8, little)
            ts_ns = _u32(buf, starts, little) * 1_000_000_000 + _u32(buf, starts + 4, little) * unit
        return PacketBatch(
            buf=buf,
            data=starts + 16,
            caplen=incl,
            ts_ns=ts_ns,
            linktype=np.full(len(starts), self.format.linktype, dtype=np.int64),
        )

    # -- pcapng -----------------------------------------------------------------------------

    def _pcapng_compiled(self, buf: U8, at: int, limit: int) -> tuple[I64, int]:
        """:meth:`_pcapng_fast` by the C walker (packet blocks only, the exact walker's checks)."""
        starts, nxt = ccore.walk_pcapng(buf, at, limit, self._little, TAIL)
        self.stats.counts["c_walk_records"] += len(starts)
        return starts, nxt

    def _pcapng_fast(self, buf: U8, at: int, limit: int) -> tuple[I64, int]:
        """Packet blocks on the block chain from ``buf[at]``, found without a per-block loop.

        Only EPB/SPB/PB blocks are followed here; any other block type (a new section, an
        interface description, statistics) ends the fast chain and the slow walker takes it.
        """
        n = len(buf)
        m = min(limit, n - 12) - at
        if m <= 0:
            return np.empty(0, dtype=np.int64), at
        little = self._little
        t0, t1, t2, t3, l3 = (0, 1, 2, 3, 7) if little else (3, 2, 1, 0, 4)
        b = at
        mask = buf[b + t1 : b + t1 + m] == 0
        mask &= buf[b + t2 : b + t2 + m] == 0
        mask &= buf[b + t3 : b + t3 + m] == 0
        mask &= buf[b + l3 : b + l3 + m] == 0
        tb = buf[b + t0 : b + t0 + m]
        mask &= (tb == BT_EPB) | (tb == BT_SPB) | (tb == BT_PB)
        cand = np.flatnonzero(mask).astype(np.int64)
        if len(cand) == 0 or cand[0] != 0 or len(cand) > max(m // 8, 64):
            return np.empty(0, dtype=np.int64), at
        cand += b
        blen = _u32(buf, cand + 4, little)
        end = cand + blen
        # The same limits as the slow walker, so both paths accept exactly the same blocks.
        min_len = np.where(buf[cand + t0] == BT_SPB, MIN_PACKET_BLOCK[BT_SPB], MIN_PACKET_BLOCK[BT_EPB])
        inside = (blen >= min_len) & (blen % 4 == 0) & (blen <= TAIL) & (end <= n)
        trailer = np.zeros(len(cand), dtype=np.int64)
        trailer[inside] = _u32(buf, end[inside] - 4, little)
        ok = inside & (trailer == blen)
        if not ok[0]:
            return np.empty(0, dtype=np.int64), at
        cand = cand[ok]
        end = end[ok]
        path = _chain(cand, end, 0)
        return cand[path], int(end[path[-1]])

    def _pcapng_slow(
        self, buf: U8, pos: int, limit: int, file_base: int, max_records: int | None, pending: bool
    ) -> tuple[I64, int, str]:
        """Sequential block walk: section headers, interfaces, and anything the fast path left.

        Returns ``"flush"`` before a block that changes the interface table while packets are
        pending, so every batch is decoded with the interfaces it was captured on.
        """
        n = len(buf)
        raw = buf[pos : min(n, limit + TAIL)].tobytes()
        base = pos
        at_eof = file_base + n >= self.size
        packets: list[int] = []
        while pos < limit:
            if max_records is not None and len(packets) >= max_records:
                return np.asarray(packets, dtype=np.int64), pos, "ok"
            rel = pos - base
            if pos + 12 > n:
                if at_eof:
                    self._warn(f"truncated block header at byte {file_base + pos}; read up to the damage")
                    return np.asarray(packets, dtype=np.int64), pos, "stop"
                return np.asarray(packets, dtype=np.int64), pos, "more"
            (btype_le,) = struct.unpack_from("<I", raw, rel)
            e = "<" if self._little else ">"
            is_shb = btype_le == PCAPNG_SHB
            btype = PCAPNG_SHB if is_shb else struct.unpack_from(e + "I", raw, rel)[0]
            if (is_shb or btype == BT_IDB) and (pending or packets):
                return np.asarray(packets, dtype=np.int64), pos, "flush"
            if is_shb:
                bom = raw[rel + 8 : rel + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    self._little = True
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self._little = False
                else:
                    self._warn(f"bad section header at byte {file_base + pos}; read up to the damage")
                    return np.asarray(packets, dtype=np.int64), pos, "stop"
                self._interfaces = []
                e = "<" if self._little else ">"
            (blen,) = struct.unpack_from(e + "I", raw, rel + 4)
            if blen > TAIL and blen % 4 == 0 and btype not in (PCAPNG_SHB, BT_IDB, *MIN_PACKET_BLOCK):
                # A large block we do not read (custom, decryption secrets, name resolution):
                # skip it without buffering it; the next window starts after it.
                if file_base + pos + blen > self.size:
                    self._warn(
                        f"truncated block at byte {file_base + pos}: needs {blen} bytes, "
                        f"{self.size - file_base - pos} present; read up to the damage"
                    )
                    return np.asarray(packets, dtype=np.int64), pos, "stop"
                self.stats.counts["skipped_blocks"] += 1
                return np.asarray(packets, dtype=np.int64), pos + blen, "more"
            if blen < max(12, MIN_PACKET_BLOCK.get(btype, 0), MIN_IDB if btype == BT_IDB else 0) or (
                blen % 4 or blen > TAIL
            ):
                self._warn(
                    f"block at byte {file_base + pos} claims length {blen}; "
                    "the file is damaged from here, read up to the damage"
                )
                return np.asarray(packets, dtype=np.int64), pos, "stop"
            if pos + blen > n:
                if at_eof:
                    self._warn(
                        f"truncated block at byte {file_base + pos}: needs {blen} bytes, "
                        f"{n - pos} present; read up to the damage"
                    )
                    return np.asarray(packets, dtype=np.int64), pos, "stop"
                return np.asarray(packets, dtype=np.int64), pos, "more"
            (trailer,) = struct.unpack_from(e + "I", raw, rel + blen - 4)
            if trailer != blen:
                self._warn(
                    f"block at byte {file_base + pos} has mismatched trailing length; read up to the damage"
                )
                return np.asarray(packets, dtype=np.int64), pos, "stop"
            if btype == BT_IDB:
                self._interfaces.append(self._parse_idb(raw, rel, blen, e))
                if max_records is not None:  # let the fast path take the packets that follow
                    return np.asarray(packets, dtype=np.int64), pos + blen, "ok"
            elif btype in (BT_EPB, BT_SPB, BT_PB):
                if not self._interfaces:
                    self._warn(f"packet block at byte {file_base + pos} before any interface; skipped")
                    self.stats.counts["skipped_blocks"] += 1
                else:
                    packets.append(pos)
                    self.stats.counts["slow_path_records"] += 1
            elif btype != PCAPNG_SHB:
                self.stats.counts["skipped_blocks"] += 1
            pos += blen
        return np.asarray(packets, dtype=np.int64), pos, "ok"

    def _parse_idb(self, raw: bytes, pos: int, blen: int, e: str) -> _Interface:
        linktype, _, _snaplen = struct.unpack_from(e + "HHI", raw, pos + 8)
        iface = _Interface(linktype=linktype)
        opt = pos + 16
        end = pos + blen - 4
        while opt + 4 <= end:
            code, length = struct.unpack_from(e + "HH", raw, opt)
            if code == 0 or opt + 4 + length > end:  # an option running past the block is damage
                break
            value = raw[opt + 4 : opt + 4 + length]
            if code == 9 and length >= 1:  # if_tsresol
                r = value[0]
                iface.ts_per_s = 2 ** (r & 0x7F) if r & 0x80 else 10 ** (r & 0x7F)
            elif code == 14 and length == 8:  # if_tsoffset
                (iface.ts_offset_s,) = struct.unpack(e + "q", value)
            opt += 4 + length + (-length % 4)
        return iface

    def _pcapng_batch(self, buf: U8, blocks: I64) -> PacketBatch:
        little = self._little
        btype = _u32(buf, blocks, little)
        blen = _u32(buf, blocks + 4, little)
        is_spb = btype == BT_SPB
        is_pb = btype == BT_PB
        if little:
            iface_pb = buf[blocks + 8].astype(np.int64) | (buf[blocks + 9].astype(np.int64) << 8)
        else:
            iface_pb = (buf[blocks + 8].astype(np.int64) << 8) | buf[blocks + 9].astype(np.int64)
        iface = np.where(is_spb, 0, np.where(is_pb, iface_pb, _u32(buf, blocks + 8, little)))
        # A Simple Packet Block may be 16 bytes and the last in the buffer: the fields it does not
        # have are read at its start instead (and not used), never past the buffer's end.
        epb = np.where(is_spb, blocks - 12, blocks)
        ts_hi = _u32(buf, epb + 12, little)
        ts_lo = _u32(buf, epb + 16, little)
        cap = np.where(
            is_spb,
            np.minimum(_u32(buf, blocks + 8, little), blen - 16),
            _u32(buf, epb + 20, little),
        )
        data = np.where(is_spb, blocks + 12, blocks + 28)
        cap = np.clip(cap, 0, np.maximum(blen - (data - blocks) - 4, 0))
        n_if = len(self._interfaces)
        known = iface < n_if
        if not known.all():
            self._warn(f"{int((~known).sum())} packets name an undeclared interface; skipped")
        iface_c = np.where(known, iface, 0)
        per_s = [i.ts_per_s for i in self._interfaces] or [1_000_000]
        offsets = np.array([i.ts_offset_s for i in self._interfaces] or [0], dtype=np.int64)
        links = np.array([i.linktype for i in self._interfaces] or [-1], dtype=np.int64)
        ticks = (ts_hi << 32) | ts_lo
        ts_ns = np.zeros(len(blocks), dtype=np.int64)
        for res in set(per_s):  # one step per distinct resolution, normally one
            sel = np.isin(iface_c, [k for k, p in enumerate(per_s) if p == res])
            ts_ns[sel] = _ticks_to_ns(ticks[sel], res)
        ts_ns += offsets[iface_c] * NS
        ts_ns = np.where(is_spb, 0, ts_ns)
        linktype = np.where(known, links[iface_c], -1)
        self.stats.counts["packets"] += int(known.sum())
        return PacketBatch(buf=buf, data=data[known], caplen=cap[known], ts_ns=ts_ns[known], linktype=linktype[known])
