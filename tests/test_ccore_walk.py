"""The C TLS 1.3 flight walk (``ccore.tls13_walk``) against the numpy walk it replaces, record for record."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.window_flights import _direction, _walk_compiled, _walk_numpy, tls13_window_flights

from .test_window_flights import _window

pytestmark = pytest.mark.skipif(not ccore.enabled(), reason="the C core is not built")

Window = tuple[list[tuple[int, bytes]], list[int], list[int]]


def _arrays(flat: list[tuple[int, bytes]], drop: set[int], repeat: set[int], shift: dict[int, int],
            hellos: frozenset[int] = frozenset()) -> tuple[np.ndarray, ...]:
    """The window's segment columns: the stream offsets as sent, then segments lost (``drop``: a hole),
    sent twice (``repeat``: an exact retransmission) or moved (``shift``: a partial overlap or a gap)."""
    offset: dict[int, int] = {}
    rows: list[tuple[int, int, bytes]] = []
    for i, (k, p) in enumerate(flat):
        at = offset.get(k, 0)
        offset[k] = at + len(p)
        if i in drop and i not in hellos:
            continue
        rows.append((k, 1000 * k + at + (0 if i in hellos else shift.get(i, 0)), p))
        if i in repeat:
            rows.append((k, 1000 * k + at, p))
    keys = np.array([k + 1 for k, _, _ in rows], dtype=np.uint64)
    plen = np.array([len(p) for _, _, p in rows], dtype=np.int64)
    payload = np.concatenate([[0], np.cumsum(plen)[:-1]]).astype(np.int64)
    seq = np.array([s for _, s, _ in rows], dtype=np.int64)
    buf = np.frombuffer(b"".join(p for _, _, p in rows) + b"\0" * 8, dtype=np.uint8)
    return buf, keys, seq, payload, plen


def _walks(buf: np.ndarray, keys: np.ndarray, seq: np.ndarray, payload: np.ndarray, plen: np.ndarray, base: int,
           pairs: list[tuple[int, int]]) -> tuple[object, object]:
    by_key = np.argsort(keys, kind="stable")
    client = np.array([c for c, _ in pairs], dtype=np.int64)
    server = np.array([s for _, s in pairs], dtype=np.int64)
    t_hello = base + server

    def fresh(hello: np.ndarray) -> object:
        return _direction(buf, keys, seq, payload, plen, by_key, keys[hello], seq[hello], base)

    numpy_walk = _walk_numpy(fresh(server), fresh(client), t_hello)  # type: ignore[arg-type]
    c_walk = _walk_compiled(payload, base, t_hello, fresh(server), fresh(client))  # type: ignore[arg-type]
    return numpy_walk, c_walk


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            assert x.tolist() == np.asarray(y).tolist()
        else:
            for field in ("owner", "ctype", "length", "arrival"):
                assert getattr(x, field).tolist() == getattr(y, field).tolist(), field


@settings(max_examples=200, deadline=None)
@given(_window(), st.integers(0, 10_000), st.sets(st.integers(0, 40), max_size=3),
       st.sets(st.integers(0, 40), max_size=3), st.dictionaries(st.integers(2, 40), st.integers(-3, 3), max_size=2))
def test_c_walk_equals_numpy_walk(window: Window, base: int, drop: set[int], repeat: set[int],
                                  shift: dict[int, int]) -> None:
    """Random TLS 1.3-like windows (records split anywhere, both sides interleaved, junk, lying lengths),
    with holes, exact retransmissions and shifted segments: the same records, arrivals and cuts."""
    flat, clients, servers = window
    buf, keys, seq, payload, plen = _arrays(flat, drop, repeat, shift, frozenset(clients + servers))
    # the hello segments' new positions (never dropped nor moved)
    firsts: dict[int, int] = {}
    for i, k in enumerate(keys.tolist()):
        firsts.setdefault(int(k) - 1, i)
    pairs = [(firsts[2 * c], firsts[2 * c + 1]) for c in range(len(clients))]
    numpy_walk, c_walk = _walks(buf, keys, seq, payload, plen, base, pairs)
    _same(numpy_walk, c_walk)  # type: ignore[arg-type]


def test_flights_equal_with_the_core_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public entry gives the same flights through either walk (a server flight of three records,
    the client's Finished after it, then the server's next record)."""
    def rec(kind: int, size: int) -> bytes:
        return bytes([kind, 3, 3]) + size.to_bytes(2, "big") + b"\xbb" * size

    flat = [(0, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"), (1, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"),
            (1, rec(20, 1) + rec(23, 40)), (1, rec(23, 700)[:300]), (1, rec(23, 700)[300:] + rec(23, 9)),
            (0, rec(20, 1) + rec(23, 53)), (1, rec(23, 200)), (0, rec(23, 30))]
    buf, keys, seq, payload, plen = _arrays(flat, set(), set(), {})
    by_key = np.argsort(keys, kind="stable")
    args = (buf, keys, seq, payload, plen, by_key, 7, np.array([0]), np.array([1]))
    got = tls13_window_flights(*args)  # type: ignore[arg-type]
    monkeypatch.setenv(ccore.DISABLE_ENV, "1")
    want = tls13_window_flights(*args)  # type: ignore[arg-type]
    assert got.server.size.tolist() == want.server.size.tolist() == [40, 700, 9]
    assert got.client.size.tolist() == want.client.size.tolist() == [53]
    assert got.server_cut.tolist() == want.server_cut.tolist()


def test_chains_outside_the_window_are_refused() -> None:
    """A chain naming a segment the window does not have, or bytes past the buffer, is an error, not a read."""
    buf = np.zeros(16, dtype=np.uint8)
    payload = np.array([0, 8], dtype=np.int64)
    one = np.zeros(1, dtype=np.int64)
    ok = (one, one, one, np.array([8]), np.array([8]), one, np.zeros(1, bool), np.zeros(1, bool))
    bad_seg = (one, one, np.array([5]), np.array([8]), np.array([8]), one, np.zeros(1, bool), np.zeros(1, bool))
    too_long = (one, one, np.array([1]), np.array([9]), np.array([9]), one, np.zeros(1, bool), np.zeros(1, bool))
    ccore.tls13_walk(buf, payload, 0, 18432, one, ok, ok)
    for bad in (bad_seg, too_long):
        with pytest.raises(ValueError, match="outside"):
            ccore.tls13_walk(buf, payload, 0, 18432, one, bad, ok)  # type: ignore[arg-type]
