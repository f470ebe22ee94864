"""The fast lane's carry: what is kept of a window, and how it goes in front of the next one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.carry import Carry, _gather, choose, held, keep, lowest_start, merge
from tlsdetect.readers.pcap.fastlane import Segments
from tlsdetect.readers.pcap.pending import DIRECTION_COST, SEGMENT_COST

SETTINGS = settings(max_examples=100, deadline=None)

packets_st = st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3000), st.binary(min_size=1, max_size=12)),
                      max_size=30)


def _window(packets: list[tuple[int, int, bytes]]) -> tuple[np.ndarray, Segments]:
    """Segments of (flow key, seq, payload), their payloads one after another in a buffer with a gap."""
    buf = bytearray()
    offsets = []
    for _, _, data in packets:
        buf += b"\xee"  # bytes between payloads, as headers are in a real window
        offsets.append(len(buf))
        buf += data
    n = len(packets)
    i64 = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    u64 = lambda values: np.array(values, dtype=np.uint64)  # noqa: E731
    keys = u64([k for k, _, _ in packets])
    seg = Segments(keys, i64([s for _, s, _ in packets]), i64(offsets), i64([len(d) for *_, d in packets]),
                   i64(range(n)), keys, keys, keys + np.uint64(100), keys, i64([1000] * n), i64([443] * n))
    return np.frombuffer(bytes(buf), dtype=np.uint8), seg


def _payloads(buf: np.ndarray, seg: Segments) -> list[tuple[int, int, bytes]]:
    return [(int(k), int(s), buf[p : p + n].tobytes())
            for k, s, p, n in zip(seg.keys, seg.seq, seg.payload, seg.plen, strict=True)]


@SETTINGS
@given(packets_st, packets_st, st.data())
def test_merge_puts_the_carry_first_and_keeps_flow_order(
    old: list[tuple[int, int, bytes]], new: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    old_buf, old_seg = _window(old)
    drawn = data.draw(st.sets(st.integers(0, len(old) - 1))) if old else set()
    starts = np.array(sorted(drawn), dtype=np.int64)
    carried, _, _ = keep(old_buf, old_seg, starts, np.unique(old_seg.keys), depth=1 << 20)
    new_buf, new_seg = _window(new)
    new_start = np.arange(0, len(new), 2, dtype=np.int64)
    buf, seg, start = merge(carried, new_buf, new_seg, new_start)
    assert _payloads(buf, seg) == _payloads(carried.buf, carried.seg) + _payloads(new_buf, new_seg)
    assert start.tolist() == np.flatnonzero(carried.start).tolist() + (len(carried) + new_start).tolist()
    assert seg.by_key().tolist() == np.argsort(seg.keys, kind="stable").tolist()


def test_keep_holds_a_direction_from_its_lowest_hello_to_the_depth() -> None:
    # flow 1: a hello at seq 100 and one resent at 100; bytes before (seq 90, ends 95) and two segments past
    # the depth: the first to arrive is kept (it says the direction has bytes there), the other is not
    packets = [(1, 90, b"p" * 5), (1, 100, b"h" * 8), (1, 100, b"h" * 8), (1, 108, b"x" * 4), (1, 170, b"far"),
               (2, 5, b"greeting"), (3, 7, b"other flow"), (1, 150, b"farther")]
    buf, seg = _window(packets)
    kept, held, count = keep(buf, seg, np.array([1, 2], dtype=np.int64), np.array([1, 2], dtype=np.uint64), depth=50)
    assert _payloads(kept.buf, kept.seg) == [packets[i] for i in (1, 2, 3, 4, 5)]  # flow 2 has no hello: all of it
    assert kept.start.tolist() == [True, True, False, False, False]
    assert count.tolist() == [4, 1]
    assert held.tolist() == [23 + 4 * SEGMENT_COST, 8 + SEGMENT_COST]
    assert kept.held() == 31 + 5 * SEGMENT_COST


def test_lowest_start_is_lowest_in_sequence_space_across_the_wrap() -> None:
    keys = np.array([5, 5, 7, 5], dtype=np.uint64)
    seq = np.array([10, 0xFFFFFFF0, 3, 20], dtype=np.int64)
    uniq, first = lowest_start(keys, seq)
    assert uniq.tolist() == [5, 7]
    assert first.tolist() == [1, 2]


def test_choose_takes_young_connections_oldest_first_within_the_room() -> None:
    first_ts = np.array([50, 10, 30, 99, 0], dtype=np.int64)
    held = np.array([100, 100, 100, 100, 100], dtype=np.int64)
    room = 3 * (100 + 2 * DIRECTION_COST)
    got = choose(first_ts, held, 100, room_directions=100, room_bytes=room, max_age_ns=95)
    assert got.tolist() == [True, True, True, False, False]  # ts 0 too old; 99 the youngest, past the room
    got = choose(first_ts, held, 100, room_directions=4, room_bytes=room, max_age_ns=95)
    assert got.tolist() == [False, True, True, False, False]
    assert not choose(first_ts, held, 100, room_directions=0, room_bytes=room).any()


def test_an_empty_carry_changes_nothing() -> None:
    buf, seg = _window([(1, 0, b"abc")])
    start = np.array([0], dtype=np.int64)
    got_buf, got_seg, got_start = merge(Carry.empty(), buf, seg, start)
    assert all(a is b for a, b in zip((got_buf, got_seg, got_start), (buf, seg, start), strict=True))
    assert (len(Carry.empty()), Carry.empty().held()) == (0, 0)


@SETTINGS
@given(packets_st)
def test_keep_without_hellos_keeps_every_packet_of_the_flows_asked(packets: list[tuple[int, int, bytes]]) -> None:
    buf, seg = _window(packets)
    kept, _, count = keep(buf, seg, np.zeros(0, dtype=np.int64), np.array([1, 3], dtype=np.uint64), depth=1)
    assert _payloads(kept.buf, kept.seg) == [p for p in packets if p[0] in (1, 3)]
    assert count.tolist() == [sum(p[0] == k for p in packets) for k in (1, 3)]


@SETTINGS
@given(packets_st, st.data())
def test_the_c_gather_equals_the_numpy_one(packets: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    """The carry's byte gather: the compiled core and numpy (its oracle) give the same bytes."""
    buf, seg = _window(packets)
    idx = np.array(sorted(data.draw(st.sets(st.integers(0, max(len(packets) - 1, 0)))) if packets else []),
                   dtype=np.int64)
    at, plen = seg.payload[idx], seg.plen[idx]
    new_at = np.cumsum(plen) - plen
    expected = b"".join(packets[i][2] for i in idx.tolist())
    assert _gather(buf, at, plen, new_at, compiled=False).tobytes() == expected
    if ccore.enabled():
        assert _gather(buf, at, plen, new_at, compiled=True).tobytes() == expected


@SETTINGS
@given(packets_st, st.data())
def test_held_counts_what_keep_would_carry(packets: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    """``held`` weighs the directions as ``keep`` does, and keeping a subset of directions from the whole
    window gives the same carry as keeping it from an earlier carry of more directions (the engine did the
    latter; it now weighs with ``held`` and keeps once)."""
    buf, seg = _window(packets)
    start = np.array(sorted(data.draw(st.sets(st.integers(0, max(len(packets) - 1, 0)))) if packets else []),
                     dtype=np.int64)
    everyone = np.array([1, 2, 3, 4], dtype=np.uint64)
    kept, want_held, want_count = keep(buf, seg, start, everyone, depth=1500)
    got_held, got_count = held(seg, start, everyone, depth=1500)
    assert (got_held.tolist(), got_count.tolist()) == (want_held.tolist(), want_count.tolist())
    some = np.array(sorted(data.draw(st.sets(st.sampled_from([1, 2, 3, 4])))), dtype=np.uint64)
    once, _, _ = keep(buf, seg, start, some, depth=1500)
    twice, _, _ = keep(kept.buf, kept.seg, np.flatnonzero(kept.start), some, depth=1500)
    assert _payloads(once.buf, once.seg) == _payloads(twice.buf, twice.seg)
    assert once.start.tolist() == twice.start.tolist()
