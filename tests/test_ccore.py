"""The compiled capture core (:mod:`tlsdetect.readers.pcap.ccore`) against its oracle, the numpy core.

Both cores must give equal arrays (record index, every decoded field of every row, valid or not,
flow keys) and equal connection rows on every reference and interception capture, on the
project's own captures, and on generated captures: random records, lying lengths, truncated files,
random bytes in every supported link type, and random segmentations of a real handshake.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.capture import MAX_PACKET, TAIL, WINDOW, CaptureReader, PacketBatch
from tlsdetect.readers.pcap.engine import iter_connections, read_pcap
from tlsdetect.readers.pcap.packets import LINKTYPES, LT_RAW_ALT, decode, flow_hash

from .conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE
from .craft import (
    client_hello_body,
    handshake_message,
    hypothesis_examples,
    ipv4_tcp_frame,
    ng_epb,
    ng_idb,
    ng_isb,
    ng_shb,
    ng_spb,
    pcap_file,
    pcap_header,
    pcap_record,
    read_all,
    server_hello_body_tls13,
    tls_records,
)

pytestmark = pytest.mark.skipif(not ccore.enabled(), reason=f"the C core does not run here: {ccore.status()}")

DECODED = ("valid", "ip_version", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq",
           "flags", "payload", "payload_len")
BATCH = ("data", "caplen", "ts_ns", "linktype")
#: Every link type the decoders know, plus one they do not.
LINK_CODES = sorted({*LINKTYPES, *LT_RAW_ALT, 127})


def captures() -> list[Path]:
    out: list[Path] = []
    for folder in (REFERENCE, INTERCEPTION):
        if folder.is_dir():
            out += sorted(p for p in folder.iterdir() if p.suffix not in (".json", ".md") and p.is_file())
    return out + sorted(PROJECT_PCAPS.glob("*.pcap*"))


CAPTURES = captures()


def assert_same_batches(path: Path, window: int = WINDOW) -> int:
    """Both readers and both decoders over ``path``, window by window: equal arrays. Returns packets."""
    c = CaptureReader(path, window=window, reuse_buffer=False, compiled=True)
    n = CaptureReader(path, window=window, reuse_buffer=False, compiled=False)
    packets = 0
    for x, y in zip(c, n, strict=True):
        for f in BATCH:
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f), err_msg=f)
        assert np.array_equal(x.buf, y.buf)
        dx, dy = decode(x, compiled=True), decode(y, compiled=False)
        for f in DECODED:
            a, b = getattr(dx, f), getattr(dy, f)
            assert a.dtype == b.dtype, f
            np.testing.assert_array_equal(a, b, err_msg=f)
        assert (dx.fragments, dx.unsupported) == (dy.fragments, dy.unsupported)
        fields = (dx.src_hi, dx.src_lo, dx.dst_hi, dx.dst_lo, dx.sport, dx.dport)
        np.testing.assert_array_equal(flow_hash(*fields, compiled=True), flow_hash(*fields, compiled=False))
        packets += len(x)
    assert c.stats.warnings == n.stats.warnings
    assert c.stats.counts["packets"] == n.stats.counts["packets"] == packets
    assert c.stats.counts["skipped_blocks"] == n.stats.counts["skipped_blocks"]
    return packets


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["conn_id"]).astype(str).reset_index(drop=True)


def assert_same_rows(path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    with_c, stats_c = read_pcap(path)
    monkeypatch.setenv(ccore.DISABLE_ENV, "1")
    with_numpy, stats_n = read_pcap(path)
    monkeypatch.delenv(ccore.DISABLE_ENV)
    pd.testing.assert_frame_equal(_canonical(with_c), _canonical(with_numpy))
    assert stats_c.warnings == stats_n.warnings
    assert stats_c.counts["decoded_by_c"] == stats_n.counts["decoded_by_numpy"] == stats_c.counts["packets"]
    return with_c


# -- every capture we have ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_corpus_arrays_equal_numpy(path: Path) -> None:
    assert assert_same_batches(path) > 0
    assert_same_batches(path, window=4096)  # records straddle windows all the time


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_corpus_rows_equal_numpy(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_rows(path, monkeypatch)


def test_the_corpus_is_really_walked_in_c() -> None:
    """The agreement above means something only if the C walker took (nearly) every record."""
    walked = packets = 0
    for path in CAPTURES:
        reader = CaptureReader(path, compiled=True)
        packets += sum(len(b) for b in reader)
        walked += reader.stats.counts["c_walk_records"]
    assert packets > 1000
    assert walked >= packets * 0.95


# -- which core runs ----------------------------------------------------------------------------------


def test_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    path = PROJECT_PCAPS / "tls12_stacks.pcap"
    assert ccore.status().startswith("compiled C")
    stats = iter_stats(path)
    assert stats.counts["decoded_by_c"] == stats.counts["packets"] > 0
    assert stats.counts["c_walk_records"] > 0
    assert stats.counts["decoded_by_numpy"] == 0
    monkeypatch.setenv(ccore.DISABLE_ENV, "1")
    assert not ccore.enabled()
    assert ccore.DISABLE_ENV in ccore.status()
    stats = iter_stats(path)
    assert stats.counts["decoded_by_numpy"] == stats.counts["packets"] > 0
    assert stats.counts["c_walk_records"] == 0
    assert stats.counts["decoded_by_c"] == 0


def iter_stats(path: Path) -> ReadStats:
    stats = ReadStats()
    for _ in iter_connections(path, stats=stats):
        pass
    return stats


# -- generated captures -------------------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes, suffix: str) -> Path:
    path = tmp_path / f"gen{random.getrandbits(48):x}{suffix}"
    path.write_bytes(data)
    return path


records_st = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=300),
              st.sampled_from([None, None, None, 0, 7, 2**31, MAX_PACKET + 1, 2**32 - 1])),
    max_size=40,
)


@settings(max_examples=hypothesis_examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=records_st, little=st.booleans(), nano=st.booleans(), cut=st.integers(0, 64),
       link=st.sampled_from(LINK_CODES), window=st.sampled_from([WINDOW, 64, 300]))
def test_generated_pcap_with_lying_lengths_and_truncation(
    tmp_path: Path, records: list[tuple[int, int, bytes, int | None]], little: bool, nano: bool, cut: int,
    link: int, window: int,
) -> None:
    body = b"".join(pcap_record(s, f, d, little=little, incl_len=lie) for s, f, d, lie in records)
    data = pcap_header(little=little, nano=nano, linktype=link) + body
    path = _write(tmp_path, data[: max(24, len(data) - cut)], ".pcap")
    assert_same_batches(path, window=window)
    c, n = read_all(path, compiled=True, window=window), read_all(path, compiled=False, window=window)
    assert (c.records, c.warnings) == (n.records, n.warnings)


blocks_st = st.lists(
    st.one_of(
        st.builds(lambda t, d: ng_epb(0, t, d), st.integers(0, 2**64 - 1), st.binary(max_size=200)),
        st.builds(ng_spb, st.binary(max_size=200)),
        st.builds(lambda t: ng_isb(0, t), st.integers(0, 2**64 - 1)),
        st.just(ng_idb(1)),
        st.builds(lambda b, at, v: b[:at] + bytes([v]) + b[at + 1 :],  # a damaged block
                  st.builds(lambda d: ng_epb(0, 5, d), st.binary(max_size=64)),
                  st.integers(0, 40), st.integers(0, 255)),
    ),
    max_size=30,
)


@settings(max_examples=hypothesis_examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=blocks_st, cut=st.integers(0, 40), window=st.sampled_from([WINDOW, 128]))
def test_generated_pcapng_with_damage_and_truncation(
    tmp_path: Path, blocks: list[bytes], cut: int, window: int
) -> None:
    data = ng_shb() + ng_idb(1) + b"".join(blocks)
    path = _write(tmp_path, data[: max(28, len(data) - cut)], ".pcapng")
    assert_same_batches(path, window=window)


@pytest.mark.parametrize("compiled", [True, False])
def test_empty_simple_packet_block_last_in_the_file(tmp_path: Path, compiled: bool) -> None:
    """Found by the generated pcapng test: a 16-byte SPB at the buffer's end made both cores read
    past it (IndexError) for the timestamp fields an SPB does not have."""
    path = _write(tmp_path, ng_shb() + ng_idb(1) + ng_epb(0, 7, b"ab") + ng_spb(b""), ".pcapng")
    batches = list(CaptureReader(path, compiled=compiled))
    assert [b.caplen.tolist() for b in batches] == [[2, 0]]
    assert [b.ts_ns.tolist() for b in batches] == [[7_000, 0]]


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(buf=st.binary(min_size=1, max_size=400), packets=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 400), st.sampled_from(LINK_CODES)), max_size=20),
    seed=st.integers(0, 2**32 - 1))
def test_decode_random_bytes_equals_numpy(buf: bytes, packets: list[tuple[int, int, int]], seed: int) -> None:
    """Random bytes, random packet bounds inside the buffer, any link type: every field equal."""
    rng = random.Random(seed)
    arr = np.frombuffer(bytearray(buf), dtype=np.uint8)
    # Plant plausible headers so the deep paths (IPv4/IPv6, TCP, extension headers) are reached.
    if len(buf) > 60 and rng.random() < 0.7:
        raw = bytearray(buf)
        at = rng.randrange(0, 20)
        raw[at + 12 : at + 14] = rng.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\x64"])
        raw[at + 14] = rng.choice([0x45, 0x46, 0x60, 0x4F])
        raw[at + 14 + 6] = rng.choice([0, 43, 44, 60, 6, 17])
        raw[at + 14 + 9] = rng.choice([6, 17, 1])
        arr = np.frombuffer(raw, dtype=np.uint8)
    data = np.array([min(d, len(arr)) for d, _, _ in packets], dtype=np.int64)
    caplen = np.array([min(c, len(arr) - d) for d, (_, c, _) in zip(data.tolist(), packets, strict=True)],
                      dtype=np.int64)
    link = np.array([lt for _, _, lt in packets], dtype=np.int64)
    batch = PacketBatch(arr, data, caplen, np.zeros(len(data), dtype=np.int64), link)
    dc, dn = decode(batch, compiled=True), decode(batch, compiled=False)
    for f in DECODED:
        np.testing.assert_array_equal(getattr(dc, f), getattr(dn, f), err_msg=f)
    assert (dc.fragments, dc.unsupported) == (dn.fragments, dn.unsupported)


@settings(max_examples=hypothesis_examples(100), deadline=None)
@given(buf=st.binary(max_size=2000), at=st.integers(-5, 2100), limit=st.integers(0, 2100), little=st.booleans())
def test_walkers_on_random_bytes_stop_inside_the_buffer(buf: bytes, at: int, limit: int, little: bool) -> None:
    """Garbage never makes a walker leave the buffer; what it returns is a real chain."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    e = "<" if little else ">"
    starts, nxt = ccore.walk_pcap(arr, at, limit, little, MAX_PACKET)
    pos = min(max(at, 0), len(buf))
    for s in starts.tolist():
        assert s == pos
        pos = s + 16 + struct.unpack_from(e + "I", buf, s + 8)[0]
        assert pos <= len(buf)
    assert nxt == pos
    starts, nxt = ccore.walk_pcapng(arr, at, limit, little, TAIL)
    pos = min(max(at, 0), len(buf))
    for s in starts.tolist():
        assert s == pos
        blen = struct.unpack_from(e + "I", buf, s + 4)[0]
        assert struct.unpack_from(e + "I", buf, s)[0] in (2, 3, 6)
        pos = s + blen
        assert pos <= len(buf)
        assert struct.unpack_from(e + "I", buf, pos - 4)[0] == blen
    assert nxt == pos


# -- random segmentations of a real handshake ------------------------------------------------------------


@settings(max_examples=hypothesis_examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mss=st.integers(1, 600), record=st.integers(40, 600), seed=st.integers(0, 2**32 - 1),
       reorder=st.booleans(), cut=st.integers(0, 80))
def test_segmentations_give_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mss: int, record: int, seed: int, reorder: bool, cut: int
) -> None:
    rng = random.Random(seed)
    ch = b"".join(tls_records(handshake_message(1, client_hello_body("c.example", padding=rng.randrange(300))),
                              record))
    sh = b"".join(tls_records(handshake_message(2, server_hello_body_tls13()), record))
    frames = []
    cseq, sseq = rng.randrange(2**32), rng.randrange(2**32)
    ends = (("10.0.0.1", 40000), ("192.0.2.9", 443))
    for stream, (src, dst), isn in ((ch, ends, cseq), (sh, ends[::-1], sseq)):
        for i in range(0, len(stream), mss):
            frames.append(ipv4_tcp_frame(src[0], dst[0], src[1], dst[1], isn + i, 1, 0x18, stream[i : i + mss]))
    if reorder:
        rng.shuffle(frames)
    data = pcap_file((1_700_000_000 + i, i, f) for i, f in enumerate(frames))
    path = _write(tmp_path, data[: len(data) - cut], ".pcap")
    assert_same_batches(path, window=rng.choice([WINDOW, 512]))
    assert_same_rows(path, monkeypatch)


# -- hostile arguments ---------------------------------------------------------------------------------


def test_decode_refuses_packets_outside_the_buffer() -> None:
    buf = np.zeros(100, dtype=np.uint8)
    for data, caplen in ((90, 20), (-1, 5), (0, -1), (101, 0), (2**62, 2**62)):
        with pytest.raises(ValueError, match="outside the buffer"):
            ccore.decode(buf, np.array([data]), np.array([caplen]), np.array([1]))


def test_wrong_dtypes_are_refused_not_reinterpreted() -> None:
    from tlsdetect.readers.pcap import _ccore

    buf = np.zeros(100, dtype=np.uint8)
    one = np.zeros(1, dtype=np.int64)
    with pytest.raises(TypeError):
        _ccore.decode(buf, np.zeros(1, dtype=np.float64), one, one, np.zeros((13, 1), dtype=np.int64))
    with pytest.raises(TypeError):
        _ccore.walk_pcap(buf, np.zeros(4, dtype=np.int32), 0, 100, True, MAX_PACKET)
    for start in (85, -1, 2**62):  # a record header must lie whole in the buffer
        with pytest.raises(ValueError, match="outside the buffer"):
            ccore.pcap_fields(buf, np.array([0, start]), True, False)
    with pytest.raises(ValueError, match="match in length"):
        _ccore.decode(buf, one, one, one, np.zeros((12, 1), dtype=np.int64))
    read_only = np.zeros(4, dtype=np.int64)
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        _ccore.walk_pcap(buf, read_only, 0, 100, True, MAX_PACKET)


def test_gather_slices_refuses_ranges_outside_the_buffer() -> None:
    from tlsdetect.readers.pcap import _ccore

    buf = np.arange(100, dtype=np.uint8)
    for lo, hi in ((-1, 5), (5, 4), (90, 101), (2**62, 2**62 + 1)):
        with pytest.raises(ValueError, match="outside the buffer"):
            ccore.gather_slices(buf, np.array([0, lo]), np.array([3, hi]))
    with pytest.raises(ValueError, match="exactly"):  # an out of the wrong size is never written past
        _ccore.gather_slices(buf, np.array([0]), np.array([10]), np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match="match in length"):
        _ccore.gather_slices(buf, np.array([0, 1]), np.array([3]), np.zeros(3, dtype=np.uint8))
    with pytest.raises(TypeError):
        _ccore.gather_slices(buf, np.array([0.0]), np.array([3]), np.zeros(3, dtype=np.uint8))
    assert ccore.gather_slices(buf, np.array([98, 0, 5]), np.array([100, 0, 7])).tolist() == [98, 99, 5, 6]


def test_flight_walk_refuses_flights_outside_the_data() -> None:
    from tlsdetect.readers.pcap import _ccore

    data = np.zeros(50, dtype=np.uint8)
    for start, length in ((-1, 5), (0, 51), (45, 6), (51, 0), (2**62, 2**62), (0, -1)):
        with pytest.raises(ValueError, match="outside the data"):
            ccore.flight_walk(data, np.array([0, start]), np.array([1, length]))
    n = 2
    bools = [np.zeros(n, dtype=bool) for _ in range(3)]
    ints = [np.zeros(n, dtype=np.int64) for _ in range(2)]
    short = [np.zeros(n * 16 - 1, dtype=np.int64) for _ in range(2)]  # no room for 16 messages a flight
    with pytest.raises(ValueError, match="do not match"):
        _ccore.flight_walk(data, np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), bools[0], *ints,
                           bools[1], bools[2], *short)
    with pytest.raises(TypeError):
        _ccore.flight_walk(data, np.zeros(n, dtype=np.float64), np.ones(n, dtype=np.int64), bools[0], *ints,
                           bools[1], bools[2], *short)


def test_flight_walk_stops_after_sixteen_messages_inside_the_data() -> None:
    """A record of 40 empty messages: 16 walked, not settled, nothing read past the flight."""
    body = b"\x0c\x00\x00\x00" * 40
    data = np.frombuffer(bytes([22, 3, 3]) + len(body).to_bytes(2, "big") + body, dtype=np.uint8)
    settled, _, _, ran_out, _, owner, size = ccore.flight_walk(data, np.array([0]), np.array([len(data)]))
    assert (settled.tolist(), ran_out.tolist(), owner.tolist(), size.tolist()) == ([False], [False], [0] * 16, [4] * 16)
