"""The capture index (:mod:`tlsdetect.readers.pcap.capture`): vectorised and sequential paths, exactness
against capinfos/tshark and against captures whose every byte we wrote, and hostile inputs.

Ground truth is never our own earlier output: corpus files are checked against capinfos and
tshark and against an independent pure-Python walker (``craft.reference_records``); crafted
files against the offsets and timestamps we put in them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.capture import WINDOW, CaptureError, CaptureReader
from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import INTERCEPTION, REFERENCE, needs_shared
from .craft import (
    LT_ETHERNET,
    LT_RAW,
    ReadResult,
    Rec,
    hypothesis_examples,
    ng_block,
    ng_custom,
    ng_epb,
    ng_idb,
    ng_isb,
    ng_nrb,
    ng_pb,
    ng_shb,
    ng_spb,
    pcap_header,
    pcap_record,
    read_all,
    reference_records,
    ticks_to_ns,
)

NS = 1_000_000_000
LT_SLL = 113


def corpus_files() -> list[Path]:
    out: list[Path] = []
    for folder in (REFERENCE, INTERCEPTION):
        if folder.is_dir():
            out += sorted(p for p in folder.iterdir() if p.suffix not in (".json", ".md") and p.is_file())
    return out


CORPUS = corpus_files()
needs_corpus = needs_shared("pcaps/reference/expected_ja4.json", "pcaps/interception/SOURCES.md")
needs_capinfos = pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos is not installed")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

#: (vectorised, window) combinations every exactness check runs under.
MODES = [(True, WINDOW), (False, WINDOW), (True, 4096), (False, 4096), (True, 65536)]


Writer = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    counter = iter(range(1_000_000))

    def _write(data: bytes, suffix: str = ".pcap") -> Path:
        path = tmp_path / f"c{next(counter)}{suffix}"
        path.write_bytes(data)
        return path

    return _write


def read_modes(path: Path, modes: list[tuple[bool, int]] = MODES) -> list[ReadResult]:
    return [read_all(path, vectorised=v, window=w) for v, w in modes]


# -- the reference corpus -------------------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_paths_agree_with_reference_walker(path: Path) -> None:
    data = path.read_bytes()
    expected = reference_records(data)
    assert expected, "the reference walker found no packets: the corpus file is not what we think"
    for (vectorised, window), got in zip(MODES, read_modes(path), strict=True):
        assert got.records == expected, (vectorised, window)
        assert got.payloads == [data[r.offset : r.offset + r.caplen] for r in expected]
        assert got.warnings == [], (vectorised, window)
        assert got.packets_stat == len(expected)


@needs_corpus
def test_corpus_fast_path_really_is_vectorised() -> None:
    """The agreement above is only meaningful if the default path does not fall back to the slow walker."""
    fast_slow = slow_slow = packets = 0
    for path in CORPUS:
        fast = CaptureReader(path)
        n = sum(len(b) for b in fast)
        slow = CaptureReader(path, vectorised=False)
        assert sum(len(b) for b in slow) == n
        packets += n
        fast_slow += fast.stats.counts["slow_path_records"]
        slow_slow += slow.stats.counts["slow_path_records"]
    assert slow_slow == packets
    assert fast_slow < packets * 0.05, f"{fast_slow} of {packets} records went through the slow walker"


@needs_corpus
@needs_capinfos
@pytest.mark.slow
def test_corpus_packet_counts_equal_capinfos() -> None:
    out = subprocess.run(
        ["capinfos", "-c", "-M", "-T", "-r", *map(str, CORPUS)], capture_output=True, text=True, check=True
    ).stdout
    counts = {Path(line.split("\t")[0]).name: int(line.split("\t")[1]) for line in out.splitlines() if "\t" in line}
    assert len(counts) == len(CORPUS)
    for path in CORPUS:
        for vectorised, window in MODES:
            reader = CaptureReader(path, vectorised=vectorised, window=window)
            assert sum(len(b) for b in reader) == counts[path.name], (path.name, vectorised, window)
            assert reader.stats.counts["packets"] == counts[path.name]


def tshark_frames(path: Path, *, packets_only: bool = False) -> list[tuple[int | None, int]]:
    """(frame.time_epoch in ns, frame.cap_len) per frame, as tshark reads the file.

    ``packets_only`` drops records that belong to no interface (pcapng custom blocks, which
    Wireshark shows as frames of their own).
    """
    out = subprocess.run(
        [
            "tshark", "-n", "-r", str(path), "-T", "fields",
            "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.interface_id",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    frames: list[tuple[int | None, int]] = []
    for line in out.splitlines():
        epoch, cap, iface = line.split("\t")
        if packets_only and not iface:
            continue
        if epoch:
            sec, _, frac = epoch.partition(".")
            frames.append((int(sec) * NS + int(frac.ljust(9, "0")[:9]), int(cap)))
        else:
            frames.append((None, int(cap)))
    return frames


TSHARK_FILES = [
    "tls12.pcap",
    "arkime_tls-split-client-hello.pcap",
    "latest.pcapng",
    "ssh2.pcapng",
    "mitmengine_SophosTagged-Win-7-IE-11_handshake.pcap",
]


@needs_corpus
@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("name", TSHARK_FILES)
def test_corpus_timestamps_equal_tshark(name: str) -> None:
    path = REFERENCE / name if (REFERENCE / name).is_file() else INTERCEPTION / name
    expected = tshark_frames(path)
    for vectorised in (True, False):
        got = read_all(path, vectorised=vectorised)
        assert [(r.ts_ns, r.caplen) for r in got.records] == expected


# -- crafted captures: classic pcap ----------------------------------------------------------------


def crafted_pcap(little: bool, nano: bool, n: int = 300) -> tuple[bytes, list[Rec]]:
    """Records of many sizes (0 bytes included) with known offsets and timestamps."""
    parts = [pcap_header(little=little, nano=nano, linktype=LT_RAW, snaplen=0xFFFF)]
    expected = []
    pos = 24
    for i in range(n):
        size = (i * 37) % 1500 if i % 11 else 0
        sec = 1_600_000_000 + i * 3
        frac = (i * 7_919_113) % (NS if nano else 1_000_000)
        data = bytes((i + k) & 0xFF for k in range(size))
        parts.append(pcap_record(sec, frac, data, little=little))
        expected.append(Rec(pos + 16, size, sec * NS + frac * (1 if nano else 1000), LT_RAW))
        pos += 16 + size
    return b"".join(parts), expected


@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
def test_crafted_pcap_byte_orders_and_resolutions(write: Writer, little: bool, nano: bool) -> None:
    data, expected = crafted_pcap(little, nano)
    path = write(data)
    fmt = CaptureReader(path).format
    assert (fmt.kind, fmt.little_endian, fmt.nanosecond, fmt.linktype, fmt.snaplen) == (
        "pcap", little, nano, LT_RAW, 0xFFFF,
    )
    for got in read_modes(path, [*MODES, (True, 512), (False, 512)]):
        assert got.records == expected
        assert got.payloads == [data[r.offset : r.offset + r.caplen] for r in expected]
        assert got.warnings == []


@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
def test_timestamps_spanning_more_than_2_pow_24_seconds(write: Writer, little: bool) -> None:
    """The vectorised filter keys on the top timestamp byte; files where it changes stay exact."""
    parts = [pcap_header(little=little)]
    expected = []
    pos = 24
    secs = [5, 2**24 - 1, 2**24, 2**24 + 1, 2**25, 2**31 + 7, 2**32 - 1, 1_700_000_000, 0]
    # Runs of equal top bytes (the fast path's case) interleaved with jumps (the slow path's).
    secs = [s + k for s in secs for k in range(40)] + [(i * 2**23 + 1) % 2**32 for i in range(200)]
    for i, raw_sec in enumerate(secs):
        sec = raw_sec % 2**32
        data = bytes([i & 0xFF]) * (i % 97)
        parts.append(pcap_record(sec, 999_999, data, little=little))
        expected.append(Rec(pos + 16, len(data), sec * NS + 999_999_000, LT_ETHERNET))
        pos += 16 + len(data)
    path = write(b"".join(parts))
    for got in read_modes(path):
        assert got.records == expected
        assert got.warnings == []


@pytest.mark.parametrize("first", [True, False], ids=["first-record", "middle-record"])
def test_pcap_huge_orig_len_is_read_exactly(write: Writer, first: bool) -> None:
    """orig_len >= 2^24 (untrusted, tshark reads it) fails the fast filter; no record may be lost
    or misaligned when the record the fast path starts from is one of them."""
    parts = [pcap_header()]
    expected = []
    pos = 24
    for i in range(120):
        huge = (i == 0) if first else (i % 40 == 5)
        data = bytes([i]) * (30 + i % 7)
        parts.append(pcap_record(1_700_000_000, i, data, orig_len=0x7FFF0000 + i if huge else None))
        expected.append(Rec(pos + 16, len(data), 1_700_000_000 * NS + i * 1000, LT_ETHERNET))
        pos += 16 + len(data)
    path = write(b"".join(parts))
    for got in read_modes(path):
        assert got.records == expected
        assert got.warnings == []


def test_pcap_fractions_out_of_range_are_read_exactly(write: Writer) -> None:
    """A microsecond field >= 10^6 is rejected by the fast filter; the slow walker must take it."""
    parts = [pcap_header()]
    expected = []
    pos = 24
    for i in range(200):
        frac = 1_000_000 + i if i % 50 == 17 else i
        parts.append(pcap_record(1000, frac, b"\xaa" * 20))
        expected.append(Rec(pos + 16, 20, 1000 * NS + frac * 1000, LT_ETHERNET))
        pos += 36
    path = write(b"".join(parts))
    for got in read_modes(path):
        assert got.records == expected


# -- crafted captures: pcapng ---------------------------------------------------------------------


def crafted_pcapng(little: bool) -> tuple[bytes, list[Rec], int]:
    """Two sections (the second in the other byte order), three interfaces with different link
    types and resolutions, EPB/SPB/PB packets, and ISB, custom, NRB and unknown blocks."""
    blocks: list[bytes] = []
    expected: list[Rec] = []
    skipped = 0
    pos = 0

    def add(block: bytes, rec: tuple[int, int, int, int] | None = None) -> None:
        """rec: (data offset in block, caplen, ts_ns, linktype)."""
        nonlocal pos
        if rec is not None:
            expected.append(Rec(pos + rec[0], rec[1], rec[2], rec[3]))
        blocks.append(block)
        pos += len(block)

    for section, le in enumerate((little, not little)):
        add(ng_shb(little=le))
        # interface 0: Ethernet, default microseconds; 1: raw IP, ns; 2: SLL, 2^-20 s with an offset
        add(ng_idb(LT_ETHERNET, little=le, name=b"eth0"))
        add(ng_idb(LT_RAW, little=le, tsresol=9, snaplen=262144))
        add(ng_idb(LT_SLL, little=le, tsresol=0x80 | 20, tsoffset=-3600 * (section + 1)))
        base = [1_700_000_000_123_456, 1_700_000_000_123_456_789, (1_700_000_000 << 20) + 777_777]
        res = [6, 9, 0x80 | 20]
        links = [LT_ETHERNET, LT_RAW, LT_SLL]
        offs = [0, 0, -3600 * (section + 1)]
        for i in range(60):
            iface = i % 3
            ticks = base[iface] + i * 1_234_567
            size = (i * 53) % 700 + (i % 4 == 0)
            payload = bytes((i * 3 + k) & 0xFF for k in range(size))
            ts = ticks_to_ns(ticks, res[iface]) + offs[iface] * NS
            if i % 10 == 3:
                add(ng_pb(iface, ticks, payload, little=le), (28, size, ts, links[iface]))
            elif i % 10 == 6:
                # Simple Packet Block: interface 0, no timestamp (0); snapped by block size.
                add(ng_spb(payload, little=le), (12, size, 0, LT_ETHERNET))
            else:
                add(ng_epb(iface, ticks, payload, little=le), (28, size, ts, links[iface]))
            if i % 13 == 5:
                add(ng_isb(iface, ticks, little=le))
                add(ng_custom(b"custom" * i, little=le, copy=bool(i % 2)))
                add(ng_block(0x00000FEE, b"\x01\x02\x03\x04" * (i % 5), little=le))  # unknown type
                skipped += 3
            if i == 30:
                add(ng_nrb(little=le))
                skipped += 1
    return b"".join(blocks), expected, skipped


@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
def test_crafted_pcapng(write: Writer, little: bool) -> None:
    data, expected, skipped = crafted_pcapng(little)
    path = write(data, ".pcapng")
    assert CaptureReader(path).format.kind == "pcapng"
    assert reference_records(data) == expected  # the walker and the crafted truth agree
    for got in read_modes(path, [*MODES, (True, 256), (False, 256)]):
        assert got.records == expected
        assert got.payloads == [data[r.offset : r.offset + r.caplen] for r in expected]
        assert got.warnings == []
        assert got.skipped_blocks == skipped


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
def test_crafted_pcapng_timestamps_equal_tshark(write: Writer, little: bool) -> None:
    """if_tsresol 10^-6, 10^-9 and 2^-20 and if_tsoffset, as Wireshark itself converts them."""
    data, expected, _ = crafted_pcapng(little)
    path = write(data, ".pcapng")
    frames = tshark_frames(path, packets_only=True)
    assert len(frames) == len(expected)
    got = read_all(path)
    for rec, (ts, cap) in zip(got.records, frames, strict=True):
        assert rec.caplen == cap
        if ts is None:  # tshark shows no time for Simple Packet Blocks
            assert rec.ts_ns == 0
        else:
            assert rec.ts_ns == ts
    assert sum(ts is not None for ts, _ in frames) > 0.8 * len(frames)


@pytest.mark.parametrize(
    ("tsresol", "ticks"),
    [
        (6, 1_700_000_000_999_999),
        (9, 1_700_000_000_999_999_999),
        (7, 17_000_000_009_999_999),  # 100 ns units (Windows)
        (3, 1_700_000_000_999),
        (0, 1_700_000_000),
        (0x80 | 20, (1_700_000_000 << 20) + (1 << 20) - 1),
        (0x80 | 32, (1_700_000_000 << 32) + 12345),
        (12, 9_000_000_000_123_456_789),  # picoseconds: beyond int64 ns arithmetic
        (0x80 | 40, 2**62 + 12345),  # finer than the int64 fast paths
    ],
)
def test_pcapng_resolutions_are_exact(write: Writer, tsresol: int, ticks: int) -> None:
    path = write(ng_shb() + ng_idb(tsresol=tsresol) + ng_epb(0, ticks, b"\x00" * 14), ".pcapng")
    for got in read_modes(path):
        assert [r.ts_ns for r in got.records] == [ticks_to_ns(ticks, tsresol)]


# -- hostile inputs ---------------------------------------------------------------------------------


def good_pcap(n: int = 5, little: bool = True) -> bytes:
    return pcap_header(little=little) + b"".join(
        pcap_record(1_700_000_000 + i, i, bytes([i]) * (40 + i), little=little) for i in range(n)
    )


def good_pcapng(n: int = 5, little: bool = True) -> bytes:
    return (
        ng_shb(little=little)
        + ng_idb(little=little)
        + b"".join(ng_epb(0, 1_700_000_000_000_000 + i, bytes([i]) * (40 + i), little=little) for i in range(n))
    )


def assert_only_capture_errors(path: Path, *, window: int = WINDOW) -> list[ReadResult]:
    """Both paths either raise CaptureError or read; anything else escapes and fails the test."""
    results = []
    for vectorised in (True, False):
        try:
            results.append(read_all(path, vectorised=vectorised, window=window))
        except CaptureError:
            results.append(ReadResult([], [], ["CaptureError"], 0, 0))
    return results


NOT_A_CAPTURE = {
    "empty": b"",
    "three bytes": b"\xd4\xc3\xb2",
    "wrong magic": b"GIF89a" + b"\0" * 60,
    "text": b"hello, this is not a capture file at all\n" * 3,
    "truncated pcap header": pcap_header()[:20],
    "truncated pcap header be": pcap_header(little=False)[:10],
    "truncated pcapng header": ng_shb()[:8],
    "pcapng bad byte-order magic": ng_shb()[:8] + b"\x11\x22\x33\x44" + ng_shb()[12:],
    "kuznetzov pcap": b"\x34\xcd\xb2\xa1" + pcap_header()[4:],
}


@pytest.mark.parametrize("name", list(NOT_A_CAPTURE))
def test_not_a_capture_is_a_capture_error(write: Writer, name: str) -> None:
    path = write(NOT_A_CAPTURE[name])
    with pytest.raises(CaptureError) as info:
        list(CaptureReader(path))
    assert str(path) in str(info.value)
    # read_pcap surfaces the same error rather than something else.
    with pytest.raises(CaptureError):
        read_pcap(path)


def _pcap_case(tail: bytes, n: int = 5, little: bool = True) -> tuple[bytes, int, int]:
    good = good_pcap(n, little)
    return good + tail, n, len(good)


def _ng_case(tail: bytes, n: int = 5, little: bool = True) -> tuple[bytes, int, int]:
    good = good_pcapng(n, little)
    return good + tail, n, len(good)


#: name -> (file bytes, packets that must survive, byte offset the warning must name)
DAMAGED: dict[str, tuple[bytes, int, int]] = {
    "pcap truncated record header": _pcap_case(pcap_record(1, 2, b"x" * 30)[:10]),
    "pcap truncated record header be": _pcap_case(pcap_record(1, 2, b"x" * 30, little=False)[:15], little=False),
    "pcap truncated packet data": _pcap_case(pcap_record(1, 2, b"x" * 100)[:60]),
    "pcap lying incl_len 0xffffffff": _pcap_case(pcap_record(1, 2, b"x" * 100, incl_len=0xFFFFFFFF)),
    "pcap lying incl_len then more records": _pcap_case(
        pcap_record(1, 2, b"x" * 10, incl_len=0x7FFFFFFF) + good_pcap(3)[24:]
    ),
    "pcap incl_len just over the limit": _pcap_case(pcap_record(1, 2, b"", incl_len=262_145) + b"y" * 262_145),
    "pcapng truncated block header": _ng_case(ng_epb(0, 1, b"z" * 30)[:9]),
    "pcapng truncated block": _ng_case(ng_epb(0, 1, b"z" * 30)[:40]),
    "pcapng length not a multiple of 4": _ng_case(
        struct.pack("<II", 6, 45) + b"\0" * 33 + struct.pack("<I", 45) + good_pcapng(2)[48:]
    ),
    "pcapng mismatched trailer": _ng_case(ng_epb(0, 1, b"z" * 30)[:-4] + struct.pack("<I", 999)),
    "pcapng mismatched trailer be": _ng_case(
        ng_epb(0, 1, b"z" * 30, little=False)[:-4] + struct.pack(">I", 44), little=False
    ),
    "pcapng block length 0": _ng_case(struct.pack("<II", 6, 0) + b"\0" * 64),
    "pcapng block length 8": _ng_case(struct.pack("<II", 6, 8) + b"\0" * 64),
    "pcapng epb shorter than its header": _ng_case(ng_block(6, b"\0\0\0\0")),
    "pcapng idb shorter than its header": _ng_case(ng_block(1, b"")),
    "pcapng spb shorter than its header": _ng_case(ng_block(3, b"")),
    "pcapng packet over 256 KiB": _ng_case(ng_epb(0, 1, b"q" * 270_000) + good_pcapng(2)[48:]),
    "pcapng huge block length": _ng_case(struct.pack("<II", 6, 0xFFFFFFFC) + b"\0" * 100),
    "pcapng second section bad byte order": _ng_case(ng_shb()[:8] + b"\x01\x02\x03\x04" + ng_shb()[12:]),
    "pcapng truncated large custom block": _ng_case(ng_custom(b"c" * 300_000)[:200_000]),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damage_keeps_what_came_before_and_names_the_offset(write: Writer, name: str) -> None:
    data, survivors, offset = DAMAGED[name]
    path = write(data)
    before = reference_records(data[:offset])
    assert len(before) == survivors
    for window in (WINDOW, 4096):
        for got in assert_only_capture_errors(path, window=window):
            assert got.records == before, window
            assert len(got.warnings) == 1, got.warnings
            assert f"byte {offset}" in got.warnings[0]
            assert "damage" in got.warnings[0]
    frame, stats = read_pcap(path)
    assert len(frame) == 0
    assert stats.counts["packets"] == survivors
    assert len(stats.warnings) == 1


def test_snaplen_2_pow_32_minus_1_in_header(write: Writer) -> None:
    data = pcap_header(snaplen=0xFFFFFFFF) + good_pcap(4)[24:]
    path = write(data)
    assert CaptureReader(path).format.snaplen == 0xFFFFFFFF
    for got in assert_only_capture_errors(path):
        assert got.records == reference_records(data)
        assert len(got.records) == 4
        assert got.warnings == []


def test_zero_length_packets(write: Writer) -> None:
    data = pcap_header() + b"".join(pcap_record(100, i, b"") for i in range(300)) + pcap_record(101, 0, b"\1" * 60)
    path = write(data)
    for got in assert_only_capture_errors(path):
        assert [r.caplen for r in got.records] == [0] * 300 + [60]
        assert got.records == reference_records(data)
    frame, stats = read_pcap(path)  # decoding zero-length packets is not an error either
    assert (len(frame), stats.counts["packets"], stats.warnings) == (0, 301, [])
    ng = good_pcapng(1) + ng_epb(0, 5, b"") + ng_spb(b"") + ng_epb(0, 6, b"\2" * 14)
    ng_path = write(ng, ".pcapng")
    for got in assert_only_capture_errors(ng_path):
        assert [r.caplen for r in got.records] == [40, 0, 0, 14]


def test_packet_block_before_any_interface_is_skipped_with_offset(write: Writer) -> None:
    shb = ng_shb()
    early = ng_epb(0, 1, b"e" * 20)
    data = shb + early + ng_spb(b"s" * 8) + ng_idb() + ng_epb(0, 2, b"k" * 20)
    path = write(data, ".pcapng")
    for got in assert_only_capture_errors(path):
        assert got.payloads == [b"k" * 20]
        assert got.skipped_blocks == 2
        assert len(got.warnings) == 2
        assert f"byte {len(shb)}" in got.warnings[0]
        assert f"byte {len(shb) + len(early)}" in got.warnings[1]


def test_interface_id_out_of_range_is_skipped(write: Writer) -> None:
    data = good_pcapng(2) + ng_epb(7, 9, b"bad" * 10) + ng_pb(3, 9, b"bad" * 10) + ng_epb(0, 10, b"ok" * 10)
    path = write(data, ".pcapng")
    for got in assert_only_capture_errors(path):
        assert got.payloads == [bytes([0]) * 40, bytes([1]) * 41, b"ok" * 10]
        assert len(got.warnings) == 1
        assert "2 packets name an undeclared interface" in got.warnings[0]


def test_interfaces_reset_at_a_new_section(write: Writer) -> None:
    """Interface 1 exists in section 1 only: in section 2 an EPB naming it is skipped."""
    data = (
        ng_shb() + ng_idb(LT_ETHERNET) + ng_idb(LT_RAW) + ng_epb(1, 1, b"a" * 20)
        + ng_shb(little=False) + ng_idb(LT_SLL, little=False) + ng_epb(1, 2, b"b" * 20, little=False)
        + ng_epb(0, 3, b"c" * 20, little=False)
    )
    path = write(data, ".pcapng")
    for got in assert_only_capture_errors(path):
        assert got.payloads == [b"a" * 20, b"c" * 20]
        assert [r.linktype for r in got.records] == [LT_RAW, LT_SLL]
        assert len(got.warnings) == 1


def test_large_unknown_block_is_skipped_not_damage(write: Writer) -> None:
    """Blocks we do not read may be larger than the read-ahead (custom blocks, embedded TLS keys)."""
    data = good_pcapng(2) + ng_custom(b"c" * 600_000) + ng_block(0xA, b"k" * 300_000) + ng_epb(0, 9, b"after")
    path = write(data, ".pcapng")
    for window in (WINDOW, 4096):
        for got in assert_only_capture_errors(path, window=window):
            assert got.payloads == [bytes([0]) * 40, bytes([1]) * 41, b"after"]
            assert got.records == reference_records(data)
            assert got.warnings == []
            assert got.skipped_blocks == 2


# -- hypothesis: arbitrary damage ---------------------------------------------------------------------


def _outcome(results: list[ReadResult]) -> None:
    fast, slow = results
    assert fast.records == slow.records
    assert fast.payloads == slow.payloads
    assert fast.warnings == slow.warnings
    assert fast.skipped_blocks == slow.skipped_blocks


_TMP = Path(tempfile.mkdtemp(prefix="tlsdetect-capture-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


def _tmp_file(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=_TMP)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


SMALL_CAPTURES = [
    good_pcap(6),
    good_pcap(6, little=False),
    pcap_header(nano=True) + good_pcap(3)[24:],
    good_pcapng(4),
    good_pcapng(4, little=False),
    ng_shb() + ng_idb(tsresol=9) + ng_epb(0, 1, b"x" * 20) + ng_spb(b"y" * 9) + ng_isb(0, 3)
    + ng_pb(0, 2, b"z" * 5) + ng_custom(b"abc") + ng_shb(little=False) + ng_idb(LT_RAW, little=False)
    + ng_epb(0, 4, b"w" * 12, little=False),
]

HYPOTHESIS = settings(
    max_examples=hypothesis_examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HYPOTHESIS
@given(
    head=st.sampled_from([pcap_header(), pcap_header(little=False), pcap_header(nano=True), ng_shb(), good_pcap(2)]),
    tail=st.binary(max_size=600),
    window=st.sampled_from([WINDOW, 64]),
)
def test_arbitrary_bytes_after_a_valid_header(head: bytes, tail: bytes, window: int) -> None:
    path = _tmp_file(head + tail)
    try:
        _outcome(assert_only_capture_errors(path, window=window))
    finally:
        path.unlink()


@HYPOTHESIS
@given(
    capture=st.sampled_from(SMALL_CAPTURES),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    window=st.sampled_from([WINDOW, 64]),
)
def test_byte_flips_in_a_valid_capture(
    capture: bytes, flips: list[tuple[int, int]], cut: int | None, window: int
) -> None:
    data = bytearray(capture)
    for where, value in flips:
        data[where % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    path = _tmp_file(bytes(data))
    try:
        _outcome(assert_only_capture_errors(path, window=window))
    finally:
        path.unlink()


def test_kept_batches_are_never_overwritten(tmp_path: Path) -> None:
    """Without ``reuse_buffer`` window buffers are recycled only once nothing refers to them: every
    batch kept across many later reads still holds the file's bytes, and dropped ones are reused."""
    from tlsdetect.readers.pcap import capture

    records = [bytes([i % 251]) * 1000 + i.to_bytes(4, "big") for i in range(600)]
    path = tmp_path / "many.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LT_RAW) + b"".join(
        struct.pack("<IIII", 1_700_000_000 + i, 0, len(r), len(r)) + r for i, r in enumerate(records)))
    reader = CaptureReader(path, window=4096, reuse_buffer=False)
    kept, seen, recycled = [], 0, 0
    for i, batch in enumerate(reader):
        recycled += any(batch.buf.base is b for b in reader._pool)
        firsts = [bytes(batch.buf[d : d + c]) for d, c in zip(batch.data.tolist(), batch.caplen.tolist(), strict=True)]
        assert firsts == records[seen : seen + len(firsts)]
        if i % 2 == 0:
            kept.append((batch, seen, len(firsts)))  # every other batch outlives all later reads
        seen += len(firsts)
    assert seen == len(records)
    assert len(kept) > 2 * capture.POOL_BUFFERS
    for batch, at, n in kept:
        got = [bytes(batch.buf[d : d + c]) for d, c in zip(batch.data.tolist(), batch.caplen.tolist(), strict=True)]
        assert got == records[at : at + n]
    assert recycled > len(kept) // 2  # the dropped batches' buffers were read into again
