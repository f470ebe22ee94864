"""The flight rules of :mod:`tlsdetect.readers.pcap.records` on small record tables."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.records import (
    END_OF_CAPTURE,
    MAX_RECORDS,
    NEXT,
    QUIET,
    UNKNOWN,
    Chain,
    HeaderWalk,
    Records,
    Sizes,
    after_hellos,
    as_tuples,
    flight_cut,
    handshake_sizes,
    ran_out,
    single,
    tls13_flights,
    truncated_places,
    unique_rows,
    walk_stream,
)


def _flights(
    server: list[tuple[int, int, int]], client: list[tuple[int, int, int]], t_hello: int = 2
) -> list[tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]]:
    s = single(*map(list, zip(*server, strict=True)))
    c = single(*map(list, zip(*client, strict=True)))
    s_first, c_first = after_hellos(list(s.ctype)), after_hellos(list(c.ctype))
    got = tls13_flights(s, c, np.array([s_first]), np.array([c_first]), np.array([t_hello]))
    return [as_tuples(x) for x in got]


def test_tls13_server_flight_ends_where_the_client_answers() -> None:
    server = [(22, 90, 2), (20, 1, 2), (23, 30, 3), (23, 2000, 4), (23, 260, 5), (23, 50, 5), (23, 200, 9),
              (NEXT, 0, 12)]
    client = [(22, 500, 1), (20, 1, 7), (23, 53, 7), (23, 80, 8), (23, 30, 13), (QUIET, 0, END_OF_CAPTURE)]
    (s_vals, s_tot), (c_vals, c_tot) = _flights(server, client)
    assert s_vals[0] == (30, 2000, 260, 50)
    assert s_tot[0] == 2340
    assert c_vals[0] == (53, 80)
    assert c_tot[0] == 133


def test_tls13_flight_missing_when_the_client_never_answers() -> None:
    server = [(22, 90, 2), (23, 30, 3), (QUIET, 0, END_OF_CAPTURE)]
    client = [(22, 500, 1), (UNKNOWN, 0, UNKNOWN)]
    (s_vals, s_tot), (c_vals, _) = _flights(server, client)
    assert s_vals[0] is None
    assert s_tot[0] == -1
    assert c_vals[0] is None


def test_tls13_client_flight_missing_when_the_server_never_speaks_again() -> None:
    server = [(22, 90, 2), (23, 30, 3), (QUIET, 0, END_OF_CAPTURE)]
    client = [(22, 500, 1), (23, 53, 7), (QUIET, 0, END_OF_CAPTURE)]
    (s_vals, _), (c_vals, _) = _flights(server, client)
    assert s_vals[0] == (30,)
    assert c_vals[0] is None


def test_walk_stream_sentinels() -> None:
    rec = b"\x17\x03\x03\x00\x02ab"
    data = rec + rec[:3]
    assert walk_stream(data, [0, 7], [5, 6], final=True, capped=False, record_max=20000) == (
        [23, NEXT], [2, 0], [5, 6], True)  # the bytes end inside the next header: cut
    assert walk_stream(rec, [0], [5], final=True, capped=False, record_max=20000) == ([23, QUIET], [2, 0],
                                                                                       [5, END_OF_CAPTURE], False)
    assert walk_stream(rec, [0], [5], final=False, capped=False, record_max=20000)[0] == [23, UNKNOWN]
    assert walk_stream(b"GET / HTTP", [0], [5], final=True, capped=False, record_max=20000)[0] == [UNKNOWN]


def test_handshake_sizes_joins_records_and_stops_at_ccs() -> None:
    hello = b"\x02\x00\x00\x02ab"
    cert = b"\x0b\x00\x00\x03xyz"
    done = b"\x0e\x00\x00\x00"
    body = hello + cert + done
    data = b"\x16\x03\x03\x00\x08" + body[:8] + b"\x16\x03\x03" + len(body[8:]).to_bytes(2, "big") + body[8:]
    assert handshake_sizes(data) == ([6, 7, 4], True, False, False)
    ccs = b"\x14\x03\x03\x00\x01\x01"
    assert handshake_sizes(b"\x16\x03\x03\x00\x06" + hello + ccs) == ([6], False, True, False)
    assert handshake_sizes(b"\x16\x03\x03\x00\x06" + hello) == ([6], False, False, False)


def test_handshake_sizes_says_when_the_bytes_ran_out() -> None:
    """A TLS <= 1.2 flight whose record is cut (inside its body or its header), or that ends exactly at a
    record with a hole after it, is cut; one stopped by an alert or ending quietly is not."""
    hello = b"\x16\x03\x03\x00\x06\x02\x00\x00\x02ab"
    cert = b"\x16\x03\x03\x00\x07\x0b\x00\x00\x03xyz"
    assert handshake_sizes(hello + cert[:9]) == ([6], False, False, True)
    assert handshake_sizes(hello + cert[:3]) == ([6], False, False, True)
    assert handshake_sizes(hello + cert, hole=True) == ([6, 7], False, False, True)
    assert handshake_sizes(hello + cert) == ([6, 7], False, False, False)
    assert handshake_sizes(hello + b"\x15\x03\x03\x00\x02\x02\x28", hole=True).cut is False
    assert handshake_sizes(hello + b"\x14\x03\x03\x00\x01\x01", hole=True).cut is False


def test_walk_stream_at_a_hole_is_cut_not_quiet() -> None:
    """Bytes past a gap after the last whole record: what the gap held is unknown, so the walk says
    UNKNOWN (a QUIET there ended a TLS 1.3 flight early: a partial flight that looked whole)."""
    rec = b"\x17\x03\x03\x00\x02ab"
    assert walk_stream(rec, [0], [5], final=True, capped=False, record_max=20000, hole=True) == (
        [23, UNKNOWN], [2, 0], [5, UNKNOWN], True)
    # at the reassembly depth the reader stopped by choice: not cut
    assert walk_stream(rec + rec[:4], [0], [5], final=True, capped=True, record_max=20000).cut is False
    assert walk_stream(b"GET / HTTP", [0], [5], final=True, capped=False, record_max=20000).cut is False


def test_ran_out() -> None:
    pos, end = np.array([10, 12, 9, 10, 10, 3]), np.array([10, 10, 10, 10, 14, 10])
    hole = np.array([False, False, False, True, False, False])
    assert ran_out(pos, end, hole).tolist() == [False, True, True, True, True, False]


def test_a_flight_is_cut_only_when_missing() -> None:
    known = Sizes(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.array([True, False, False]))
    assert flight_cut(known, np.array([True, True, False])).tolist() == [False, True, False]
    assert truncated_places("server_chain", "client_flight") == "server_chain,client_flight"
    assert truncated_places(None, "client_flight") == "client_flight"
    assert truncated_places(None, None) is None


# --- walk_headers (in place, many owners) against walk_stream (one reassembled stream) ----------

RECORD_MAX = 300


@st.composite
def _stream(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Record-like bytes (valid records, junk, a lying length, a cut at the end) and where the
    stream is split into segments."""
    parts = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["record", "record", "record", "junk", "liar"]))
        if kind == "junk":
            parts.append(draw(st.binary(min_size=1, max_size=8)))
            continue
        ctype = draw(st.sampled_from([20, 21, 22, 23, 24]))
        minor = draw(st.integers(0, 5))
        body = draw(st.binary(max_size=40))
        length = len(body) if kind == "record" else draw(st.integers(len(body) + 1, RECORD_MAX + 50))
        parts.append(bytes([ctype, 3, minor]) + length.to_bytes(2, "big") + body)
    data = b"".join(parts)
    data = data[: draw(st.integers(1, len(data)))]
    cuts = sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=12))) - {len(data)})
    return data, [0, *cuts]


def _walk_many(streams: list[tuple[bytes, list[int]]], shuffle: list[int]) -> tuple[Records, list[int]]:
    rec, horizons, _ = _walk_cut(streams, shuffle)
    return rec, horizons


def _walk_cut(streams: list[tuple[bytes, list[int]]], shuffle: list[int],
              broken: list[bool] | None = None) -> tuple[Records, list[int], list[bool]]:
    """Every stream as one owner of one window, its segments laid out in ``buf`` in a shuffled
    order; segment k of the window arrives at capture position 10 + k."""
    segs = [(o, s, data[s:e]) for o, (data, starts) in enumerate(streams)
            for s, e in zip(starts, [*starts[1:], len(data)], strict=True)]
    layout = sorted(range(len(segs)), key=lambda i: shuffle[i % len(shuffle)] if shuffle else i)
    buf, payload = bytearray(), [0] * len(segs)
    for i in layout:
        payload[i] = len(buf)
        buf += segs[i][2]
    owner = np.array([o for o, _, _ in segs], dtype=np.int64)
    rel = np.array([s for _, s, _ in segs], dtype=np.int64)
    seg_len = np.array([len(b) for _, _, b in segs], dtype=np.int64)
    chain = Chain(owner, rel, np.arange(len(segs), dtype=np.int64), seg_len)
    horizons = [1000 + o for o in range(len(streams))]
    arrival = 10 + np.arange(len(segs), dtype=np.int64)
    walk = HeaderWalk(np.frombuffer(bytes(buf) + b"\0", dtype=np.uint8), chain, np.array(payload, dtype=np.int64),
                      arrival, len(streams), np.array(horizons, dtype=np.int64), RECORD_MAX,
                      None if broken is None else np.array(broken, dtype=bool))
    while walk.step():
        pass
    return walk.records(), horizons, walk.cut.tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_stream(), st.booleans()), min_size=1, max_size=4), st.lists(st.integers(0, 50), max_size=40))
def test_walk_headers_reads_what_the_reassembling_walk_reads(
    streams_holes: list[tuple[tuple[bytes, list[int]], bool]], shuffle: list[int]
) -> None:
    """Records, lengths, capture positions, the sentinel and whether the walk ended cut: equal to
    :func:`walk_stream` on the joined bytes for every owner at once (a walk ending at the bytes'
    end is QUIET at the window's horizon, where the reassembling walk at the capture's end says
    END_OF_CAPTURE; with bytes past a hole after them, both say UNKNOWN and cut)."""
    streams = [s for s, _ in streams_holes]
    holes = [h for _, h in streams_holes]
    rec, horizons, cuts = _walk_cut(streams, shuffle, holes)
    offset = 0
    for o, (data, starts) in enumerate(streams):
        arrivals = [10 + offset + k for k in range(len(starts))]
        offset += len(starts)
        ctype, length, when, cut = walk_stream(data, starts, arrivals, final=True, capped=False, record_max=RECORD_MAX,
                                               hole=holes[o])
        assert cuts[o] == cut
        mine = rec.owner == o
        assert rec.ctype[mine].tolist() == ctype
        assert rec.length[mine].tolist() == length
        # Where the walk says UNKNOWN no rule reads the position (the two walks put different ones).
        expect_when = [horizons[o] if w == END_OF_CAPTURE else w for w in when]
        got_when = rec.arrival[mine].tolist()
        assert [w for w, c in zip(got_when, ctype, strict=True) if c != UNKNOWN] == [
            w for w, c in zip(expect_when, ctype, strict=True) if c != UNKNOWN
        ]
        assert ctype[-1] < 0  # exactly one sentinel, last
        assert all(c >= 0 for c in ctype[:-1])


def test_walk_headers_header_cut_by_a_segment_boundary() -> None:
    """A record header split 2 + 3 bytes over two segments is read whole, placed at the first."""
    data = b"\x16\x03\x03\x00\x02ab" + b"\x17\x03\x03\x00\x01x"
    rec, _ = _walk_many([(data, [0, 9])], [])
    assert rec.ctype.tolist() == [22, 23, QUIET]
    assert rec.arrival.tolist() == [10, 10, 1000]  # the second header starts in segment 0


def test_walk_headers_stops_at_a_lying_length_without_guessing() -> None:
    """A header that claims more bytes than were captured: its record is listed (its header was
    read), and the walk ends UNKNOWN (not QUIET): nothing after it is decided."""
    data = b"\x17\x03\x03\x01\x00" + b"x" * 20
    rec, _, cut = _walk_cut([(data, [0])], [])
    assert rec.ctype.tolist() == [23, UNKNOWN]
    assert rec.length.tolist() == [256, 0]
    assert cut == [True]


def test_tls13_zero_rtt_is_not_the_clients_flight() -> None:
    """Encrypted client records captured before the ServerHello (0-RTT early data) are not its
    flight: that starts with the first one after it."""
    server = [(22, 90, 4), (23, 30, 5), (23, 2000, 5), (NEXT, 0, 12)]
    client = [(22, 500, 1), (23, 700, 2), (23, 700, 3), (23, 53, 8), (QUIET, 0, END_OF_CAPTURE)]
    (s_vals, _), (c_vals, _) = _flights(server, client, t_hello=4)
    assert s_vals[0] == (30, 2000)
    assert c_vals[0] == (53,)


def test_tls13_lying_server_length_leaves_the_flights_missing() -> None:
    """The server's last record runs past what was captured (UNKNOWN after it): no record of its
    own is known to come after the client's answer, so neither flight is guessed."""
    server = [(22, 90, 2), (23, 16000, 3), (UNKNOWN, 0, UNKNOWN)]
    client = [(22, 500, 1), (23, 53, 7), (QUIET, 0, END_OF_CAPTURE)]
    (s_vals, s_tot), (c_vals, c_tot) = _flights(server, client)
    assert s_vals[0] is None
    assert s_tot[0] == -1
    assert c_vals[0] is None
    assert c_tot[0] == -1


def test_walks_agree_after_the_last_record_walked() -> None:
    """After MAX_RECORDS records the next header is not read by either walk: another record
    starts there (NEXT), whatever its bytes."""
    rec_bytes = b"\x17\x03\x03\x00\x01x"
    for tail in (rec_bytes, b"GET / HTTP/1.1"):
        data = rec_bytes * MAX_RECORDS + tail
        mine, _ = _walk_many([(data, [0])], [])
        ctype = walk_stream(data, [0], [10], final=True, capped=False, record_max=RECORD_MAX).ctype
        assert mine.ctype.tolist() == ctype
        assert ctype[-1] == NEXT


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 40), st.integers(1, 6), st.data())
def test_unique_rows_equals_numpys_unique_over_rows(n: int, width: int, data: st.DataObject) -> None:
    """Same distinct rows in the same order, and the same inverse, as ``np.unique(axis=0)``."""
    values = data.draw(st.lists(st.integers(-2, 3), min_size=n * width, max_size=n * width))
    matrix = np.array(values, dtype=np.int64).reshape(n, width)
    uniq, inverse = unique_rows(matrix)
    want_uniq, want_inverse = np.unique(matrix, axis=0, return_inverse=True)
    assert uniq.tolist() == want_uniq.tolist()
    assert inverse.tolist() == want_inverse.reshape(-1).tolist()
