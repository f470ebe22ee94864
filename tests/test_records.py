"""The flight rules of :mod:`tlsdetect.readers.pcap.records` on small record tables."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap.records import (
    END_OF_CAPTURE,
    NEXT,
    QUIET,
    UNKNOWN,
    after_hellos,
    as_tuples,
    handshake_sizes,
    single,
    tls13_flights,
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
        [23, NEXT], [2, 0], [5, 6])
    assert walk_stream(rec, [0], [5], final=True, capped=False, record_max=20000)[0] == [23, QUIET]
    assert walk_stream(rec, [0], [5], final=False, capped=False, record_max=20000)[0] == [23, UNKNOWN]
    assert walk_stream(b"GET / HTTP", [0], [5], final=True, capped=False, record_max=20000)[0] == [UNKNOWN]


def test_handshake_sizes_joins_records_and_stops_at_ccs() -> None:
    hello = b"\x02\x00\x00\x02ab"
    cert = b"\x0b\x00\x00\x03xyz"
    done = b"\x0e\x00\x00\x00"
    body = hello + cert + done
    data = b"\x16\x03\x03\x00\x08" + body[:8] + b"\x16\x03\x03" + len(body[8:]).to_bytes(2, "big") + body[8:]
    assert handshake_sizes(data) == ([6, 7, 4], True, False)
    ccs = b"\x14\x03\x03\x00\x01\x01"
    assert handshake_sizes(b"\x16\x03\x03\x00\x06" + hello + ccs) == ([6], False, True)
    assert handshake_sizes(b"\x16\x03\x03\x00\x06" + hello) == ([6], False, False)
