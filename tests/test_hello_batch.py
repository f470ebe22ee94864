"""The bulk hello walk against the scalar parser: same key => same fingerprints, same SNI."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.fingerprint import client_fingerprints
from tlsdetect.readers.pcap import ccore
from tlsdetect.wire.hello_batch import HelloBatch, client_hello_batch, server_hello_batch
from tlsdetect.wire.tls import HRR_RANDOM, TLSParseError, parse_client_hello, parse_server_hello

from .test_tls import ALPN, GROUPS, POINTS, SIGS, SNI, VERSIONS, _ext, client_hello_body

PARTS = [SNI, ALPN, GROUPS, POINTS, SIGS, VERSIONS, _ext(0x0A0A, b""), _ext(21, bytes(7)), _ext(51, bytes(36))]


def _batch(bodies: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf = np.frombuffer(b"".join(bodies) or b"\0", dtype=np.uint8)
    lens = np.array([len(b) for b in bodies], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    return buf, starts, starts + lens


hellos = st.builds(
    lambda ciphers, parts, sid, junk: client_hello_body(
        ciphers=tuple(ciphers), extensions=b"".join(parts) + junk, session_id=sid
    ),
    st.lists(st.sampled_from([0x1301, 0x1302, 0xC02F, 0x0A0A, 0x009C]), max_size=6),
    st.lists(st.sampled_from(PARTS), max_size=7),
    st.binary(max_size=32),
    st.sampled_from([b"", b"\x00", b"\x00\x10\x00\x05\x00"]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(hellos, min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
)
def test_equal_keys_mean_equal_fingerprints(bodies: list[bytes], flips: list[tuple[int, int]]) -> None:
    mutated = []
    for body in bodies:
        b = bytearray(body)
        for pos, value in flips:
            b[pos % len(b)] = value
        mutated.append(bytes(b))
    batch = client_hello_batch(*_batch(mutated))
    codes, _ = batch.codes()
    seen: dict[int, object] = {}
    for i, body in enumerate(mutated):
        try:
            hello = parse_client_hello(body)
        except TLSParseError:
            continue  # the walk may accept what the scalar parser rejects: such a group maps to -1
        if not batch.valid[i]:
            continue
        fps = client_fingerprints("t", hello)
        first = seen.setdefault(int(codes[i]), fps)
        assert first == fps
        start, length = int(batch.sni_start[i]), int(batch.sni_len[i])
        buf = b"".join(mutated)
        sni = None if start < 0 else buf[start : start + length].decode("ascii", "backslashreplace")
        assert sni == hello.sni


def test_different_fingerprints_get_different_keys() -> None:
    a = client_hello_body(extensions=SNI + GROUPS + SIGS)
    b = client_hello_body(extensions=SNI + SIGS + GROUPS)  # same set, other order: JA3 differs
    c = client_hello_body(extensions=SNI + GROUPS + SIGS, session_id=bytes(32))  # session id: same fps
    batch = client_hello_batch(*_batch([a, b, c]))
    codes, _ = batch.codes()
    assert codes[0] != codes[1]
    assert codes[0] == codes[2]


def test_server_hello_flags() -> None:
    def sh(random: bytes, selected: int | None) -> bytes:
        ext = _ext(43, struct.pack(">H", selected)) if selected else b""
        return b"\x03\x03" + random + b"\x00\x13\x01\x00" + struct.pack(">H", len(ext)) + ext

    bodies = [sh(HRR_RANDOM, 0x0304), sh(bytes(32), 0x0304), sh(bytes(32), None)]
    batch = server_hello_batch(*_batch(bodies))
    assert batch.hrr.tolist() == [True, False, False]
    assert batch.selected_tls13.tolist() == [True, True, False]
    for i, body in enumerate(bodies):
        parsed = parse_server_hello(body)
        assert parsed.is_hello_retry_request == bool(batch.hrr[i])
        assert (parsed.version == 0x0304) == bool(batch.selected_tls13[i])


# -- the C walk (ccore.hello_walk) against this numpy walk, its oracle ------------------------------------

needs_c = pytest.mark.skipif(not ccore.enabled(), reason=f"the C core does not run here: {ccore.status()}")
FIELDS = ("valid", "sni_start", "sni_len", "hrr", "selected_tls13")


def _assert_same(c: HelloBatch, py: HelloBatch) -> None:
    for name in FIELDS:
        a, b = getattr(c, name), getattr(py, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert c.key == py.key


def _server_body(random: bytes, sid: bytes, exts: list[bytes], lie: int | None) -> bytes:
    ext = b"".join(exts)
    return (b"\x03\x03" + random + bytes([len(sid)]) + sid + b"\x13\x01\x00"
            + struct.pack(">H", len(ext) if lie is None else lie) + ext)


server_hellos = st.builds(
    _server_body,
    st.sampled_from([HRR_RANDOM, bytes(32), HRR_RANDOM[:31] + b"\0"]),
    st.binary(max_size=33),
    st.lists(st.sampled_from([_ext(43, b"\x03\x04"), _ext(43, b"\x03\x03"), _ext(43, b"\x03"), ALPN,
                              _ext(16, b""), _ext(51, bytes(36)), _ext(0xFF01, b"\0")]), max_size=5),
    st.one_of(st.none(), st.integers(0, 80)),
)


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(hellos, st.binary(max_size=120)), min_size=1, max_size=10),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    st.lists(st.integers(-8, 8), max_size=10),
)
def test_compiled_client_walk_equals_numpy(bodies: list[bytes], flips: list[tuple[int, int]], cut: list[int]) -> None:
    """Real-shaped hellos, flipped bytes (lying lengths), random bytes, ends moved in and out: equal."""
    mutated = []
    for body in bodies:
        b = bytearray(body)
        for pos, value in flips:
            if b:
                b[pos % len(b)] = value
        mutated.append(bytes(b))
    buf, start, end = _batch(mutated)
    end = end + np.resize(np.array(cut or [0], dtype=np.int64), len(end))
    c = client_hello_batch(buf, start, end, compiled=True)
    _assert_same(c, client_hello_batch(buf, start, end, compiled=False))


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(server_hellos, st.binary(max_size=80)), min_size=1, max_size=10),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3))
def test_compiled_server_walk_equals_numpy(bodies: list[bytes], flips: list[tuple[int, int]]) -> None:
    mutated = []
    for body in bodies:
        b = bytearray(body)
        for pos, value in flips:
            if b:
                b[pos % len(b)] = value
        mutated.append(bytes(b))
    buf, start, end = _batch(mutated)
    c = server_hello_batch(buf, start, end, compiled=True)
    _assert_same(c, server_hello_batch(buf, start, end, compiled=False))


@needs_c
def test_hello_walk_refuses_hostile_arguments() -> None:
    from tlsdetect.readers.pcap import _ccore

    buf = np.zeros(64, dtype=np.uint8)
    with pytest.raises(ValueError, match="far outside"):
        ccore.hello_walk(buf, np.array([0, 2**62]), np.array([10, 2**62 + 10]), False)
    with pytest.raises(ValueError, match="empty buffer"):
        ccore.hello_walk(np.zeros(0, dtype=np.uint8), np.array([0]), np.array([10]), True)
    one = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="do not match"):
        _ccore.hello_walk(buf, one, one, False, np.zeros(2, dtype=bool), one, one, np.zeros(1, dtype=bool),
                          np.zeros(1, dtype=bool))
    with pytest.raises(TypeError):
        _ccore.hello_walk(buf, np.zeros(1), one, False, np.zeros(1, dtype=bool), one, one, np.zeros(1, dtype=bool),
                          np.zeros(1, dtype=bool))
    # offsets before and past the buffer (within the bound) are read clamped, as numpy reads them
    body, end = np.array([-40, 50, 60]), np.array([30, 200, 63])
    for server in (False, True):
        walk = server_hello_batch if server else client_hello_batch
        _assert_same(walk(buf, body, end, compiled=True), walk(buf, body, end, compiled=False))
