"""Flight assembly (:mod:`tlsdetect.readers.pcap.flight`): its shortcut against the general search."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.flight import Flight, _walk, _walk_numpy, assemble_prefix, slices

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def _segments(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """A small window: a payload buffer, segments of a few flows (retransmitted, overlapping, out
    of order, some far off in sequence space) and a few distinct owners with their start seq."""
    buf = np.frombuffer(draw(st.binary(min_size=64, max_size=256)), dtype=np.uint8)
    n_flows = draw(st.integers(1, 4))
    flow_keys = np.array(draw(st.lists(st.integers(1, 2**63), min_size=n_flows, max_size=n_flows, unique=True)),
                         dtype=np.uint64)
    base = np.array(draw(st.lists(st.integers(0, 2**32 - 1), min_size=n_flows, max_size=n_flows)), dtype=np.int64)
    rows = draw(st.lists(st.tuples(st.integers(0, n_flows - 1), st.integers(-8, 40), st.integers(0, 200),
                                   st.integers(1, 30)), min_size=0, max_size=24))
    keys = np.array([flow_keys[f] for f, _, _, _ in rows], dtype=np.uint64)
    seq = np.array([(base[f] + rel) & 0xFFFFFFFF for f, rel, _, _ in rows], dtype=np.int64)
    plen = np.array([min(ln, len(buf) - p) if p < len(buf) else 0 for _, _, p, ln in rows], dtype=np.int64)
    payload = np.array([min(p, len(buf)) for _, _, p, _ in rows], dtype=np.int64)
    owners = draw(st.lists(st.integers(0, n_flows - 1), min_size=1, max_size=n_flows, unique=True))
    owner_key = flow_keys[owners]
    owner_seq = base[owners]
    return buf, owner_key, owner_seq, keys, seq, payload, plen


@SETTINGS
@given(_segments(), st.sampled_from([4, 16, 64]))
def test_segments_found_by_key_order_equal_the_general_search(seg: tuple[np.ndarray, ...], limit: int) -> None:
    buf, owner_key, owner_seq, keys, seq, payload, plen = seg
    general = assemble_prefix(buf, owner_key, owner_seq, keys, seq, payload, plen, limit)
    by_key = assemble_prefix(buf, owner_key, owner_seq, keys, seq, payload, plen, limit,
                             np.argsort(keys, kind="stable"))
    for a, b in zip(general, by_key, strict=True):
        np.testing.assert_array_equal(a, b)


# -- the compiled walk and stitching (ccore.flight_walk, ccore.gather_slices) against numpy -------------

FLIGHT_FIELDS = ("settled", "cert_start", "cert_len", "ran_out", "cert_request", "span", "msg_owner", "msg_size")
needs_c = pytest.mark.skipif(not ccore.enabled(), reason=f"the C core does not run here: {ccore.status()}")


def _record(ctype: int, body: bytes, version: bytes = b"\x03\x03", lie: int | None = None) -> bytes:
    return bytes([ctype]) + version + (len(body) if lie is None else lie).to_bytes(2, "big") + body


def _message(mtype: int, body: bytes, lie: int | None = None) -> bytes:
    return bytes([mtype]) + (len(body) if lie is None else lie).to_bytes(3, "big") + body


@st.composite
def _flights(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several flights in one buffer: records of handshake messages (Certificate, CertificateRequest,
    ServerHelloDone, others), ChangeCipherSpec and application data, some lengths lying, some flights
    cut short, and random bytes; with their start and length."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            parts.append(draw(st.binary(max_size=60)))
            continue
        flight = b""
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from([22, 22, 22, 20, 23, 21]))
            msgs = b"".join(
                _message(draw(st.sampled_from([2, 11, 12, 13, 14, 11, 99])), draw(st.binary(max_size=24)),
                         draw(st.one_of(st.none(), st.integers(0, 40))))
                for _ in range(draw(st.integers(0, 3)))
            ) if kind == 22 else draw(st.binary(max_size=8))
            version = draw(st.sampled_from([b"\x03\x03", b"\x03\x01", b"\x03\x05", b"\x02\x00"]))
            flight += _record(kind, msgs, version, draw(st.one_of(st.none(), st.integers(0, 2**16 - 1))))
        parts.append(flight[: draw(st.integers(0, len(flight)))] if draw(st.booleans()) else flight)
    data = b"".join(parts)
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if parts else lengths
    return np.frombuffer(data, dtype=np.uint8), starts, lengths


def _assert_same_flight(a: Flight, b: Flight) -> None:
    for name in FLIGHT_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@needs_c
@SETTINGS
@given(_flights())
def test_compiled_walk_equals_numpy_on_generated_flights(flights: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    data, start, length = flights
    n = len(start)
    _assert_same_flight(_walk(data, start, length, n, compiled=True), _walk_numpy(data, start, length, n))


@needs_c
@SETTINGS
@given(st.binary(max_size=300), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=8))
def test_compiled_walk_equals_numpy_on_random_bytes(raw: bytes, spans: list[tuple[int, int]]) -> None:
    data = np.frombuffer(raw, dtype=np.uint8)
    start = np.array([min(s, len(raw)) for s, _ in spans], dtype=np.int64)
    length = np.array([min(n, len(raw) - s) for s, (_, n) in zip(start.tolist(), spans, strict=True)], dtype=np.int64)
    n = len(start)
    _assert_same_flight(_walk(data, start, length, n, compiled=True), _walk_numpy(data, start, length, n))


def test_walk_reads_a_whole_tls12_flight() -> None:
    """Certificate, CertificateRequest, ServerHelloDone in one record: settled, the list found, mTLS asked."""
    hello, cert, request, done = _message(2, b"h" * 10), _message(11, b"c" * 30), _message(13, b"r"), _message(14, b"")
    data = np.frombuffer(_record(22, hello + cert + request + done) + _record(23, b"x"), dtype=np.uint8)
    for compiled in (True, False):
        if compiled and not ccore.enabled():
            continue
        f = _walk(data, np.array([0]), np.array([len(data)]), 1, compiled=compiled)
        assert f.settled.tolist() == [True]
        assert f.cert_request.tolist() == [True]
        assert (f.cert_start.tolist(), f.cert_len.tolist()) == ([5 + len(hello) + 4], [30])
        assert f.msg_size.tolist() == [len(hello), len(cert), len(request), len(done)]


@needs_c
@SETTINGS
@given(st.binary(max_size=200), st.lists(st.tuples(st.integers(0, 260), st.integers(0, 80)), max_size=12))
def test_compiled_stitching_equals_numpy(raw: bytes, ranges: list[tuple[int, int]]) -> None:
    buf = np.frombuffer(raw, dtype=np.uint8)
    at, size = (np.array(col, dtype=np.int64).reshape(-1) for col in zip(*ranges, strict=True)) if ranges else (
        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    compiled = slices(buf, at, size, compiled=True)
    assert compiled.tobytes() == slices(buf, at, size, compiled=False).tobytes()
    assert compiled.tobytes() == b"".join(raw[a : a + n] for a, n in ranges)


@needs_c
def test_stitching_bounds_ranges_as_slicing_does() -> None:
    buf = np.arange(10, dtype=np.uint8)
    at, size = np.array([8, 12, 0, 3]), np.array([5, 2, 0, 2])
    for compiled in (True, False):
        assert slices(buf, at, size, compiled=compiled).tolist() == [8, 9, 3, 4]
