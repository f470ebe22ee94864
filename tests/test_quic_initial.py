"""QUIC Initial protection (:mod:`tlsdetect.wire.quic_initial`): the RFCs' key vectors, a round trip per
version, coalesced packets, frames, and malformed input as a named :class:`QuicSkipError`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.wire import quic_initial as q

from .craft import hypothesis_examples

DCID = bytes.fromhex("8394c8f03e515708")  # RFC 9001 appendix A


def test_version_1_keys_match_rfc_9001_appendix_a() -> None:
    client = q.initial_keys(0x00000001, DCID, server=False)
    assert client.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert client.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert client.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"
    server = q.initial_keys(0x00000001, DCID, server=True)
    assert server.key.hex() == "cf3a5331653c364c88f0f379b6067e37"
    assert server.iv.hex() == "0ac1493ca1905853b0bba03e"
    assert server.hp.hex() == "c206b8d9b9f0f37644430b490eeaa314"


def test_version_2_keys_match_rfc_9369_appendix_a() -> None:
    client = q.initial_keys(0x6B3343CF, DCID, server=False)
    assert client.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert client.iv.hex() == "91f73e2351d8fa91660e909f"
    assert client.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


@pytest.mark.parametrize("version", sorted(q.VERSIONS))
def test_round_trip_and_coalesced_packets(version: int) -> None:
    first = q.protect_initial(version, DCID, b"\x01", 0, [(0, b"hello "), (6, b"world")])
    second = q.protect_initial(version, DCID, b"\x01", 1, [(11, b"!")], pad_to=40)
    datagram = first + second + bytes(30)  # trailing padding after the last packet
    packets = [p for p in q.initial_packets(datagram) if isinstance(p, q.InitialPacket)]
    assert [(p.start, p.end) for p in packets] == [(0, len(first)), (len(first), len(first) + len(second))]
    keys = q.initial_keys(version, DCID, server=False)
    opened = [q.open_packet(datagram, p, keys) for p in packets]
    assert [pn for pn, _ in opened] == [0, 1]
    assert q.crypto_frames(opened[0][1]) == [(0, b"hello "), (6, b"world")]
    assert q.crypto_frames(opened[1][1]) == [(11, b"!")]


def test_wrong_keys_and_damage_do_not_decrypt() -> None:
    packet = q.protect_initial(1, DCID, b"", 0, [(0, b"x" * 30)])
    parsed = next(iter(q.initial_packets(packet)))
    assert isinstance(parsed, q.InitialPacket)
    with pytest.raises(q.QuicSkipError) as err:
        q.open_packet(packet, parsed, q.initial_keys(1, DCID, server=True))
    assert err.value.reason == "decrypt_failed"
    damaged = bytearray(packet)
    damaged[-1] ^= 1
    with pytest.raises(q.QuicSkipError):
        q.open_packet(bytes(damaged), parsed, q.initial_keys(1, DCID, server=False))


def test_frames_allowed_in_an_initial() -> None:
    ack = bytes([q.ACK, 5, 0, 1, 2, 1, 0])  # largest 5, delay 0, one more range, first range 2, gap 1, len 0
    payload = bytes([q.PING]) + ack + bytes([q.CRYPTO, 0, 2]) + b"hi" + bytes(10)
    assert q.crypto_frames(payload) == [(0, b"hi")]
    assert q.crypto_frames(bytes([q.CONNECTION_CLOSE]) + b"\xff" * 5) == []
    with pytest.raises(q.QuicSkipError) as err:
        q.crypto_frames(b"\x08\x00\x01a")  # STREAM is not allowed in an Initial
    assert err.value.reason == "bad_frame"
    with pytest.raises(q.QuicSkipError):
        q.crypto_frames(bytes([q.CRYPTO, 0, 9]) + b"short")


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\xc0\x00\x00\x00\x00" + bytes(30), "version_negotiation"),
        (b"\xc0\x0a\x0a\x0a\x0a" + bytes(30), "version_unknown"),
        (b"\x80\x00\x00\x00\x01" + bytes(30), "fixed_bit_clear"),
        (b"\xc0\x00\x00\x00\x01\x30" + bytes(30), "bad_connection_id"),
        (b"\xc0\x00\x00\x00\x01\x00", "truncated"),
        (b"\xc0\x00\x00\x00\x01\x00\x00\x00\x44\xff" + bytes(30), "truncated"),
    ],
)
def test_malformed_headers_are_named_skips(datagram: bytes, reason: str) -> None:
    out = list(q.initial_packets(datagram))
    assert len(out) == 1
    assert isinstance(out[0], q.QuicSkipError)
    assert out[0].reason == reason


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(st.binary(max_size=1400))
def test_any_bytes_give_packets_or_named_skips(data: bytes) -> None:
    """The header walk, the opening and the frame walk answer every input with a result or a skip."""
    reasons = []
    for packet in q.initial_packets(data):
        if isinstance(packet, q.QuicSkipError):
            reasons.append(packet.reason)
            continue
        try:
            _, plain = q.open_packet(data, packet, q.initial_keys(packet.version, packet.dcid, server=False))
            q.crypto_frames(plain)
        except q.QuicSkipError as skip:
            reasons.append(skip.reason)
    assert all(reasons)


needs_kernel = pytest.mark.skipif(q._quic_crypto is None, reason="the libcrypto kernel _quic_crypto is not built")


def _both(datagram: bytes, packet: q.InitialPacket, cid: bytes, server: bool) -> list[tuple[int, bytes] | str]:
    """:func:`q.open_initial` through the C kernel and through `cryptography`: result or skip reason."""
    out: list[tuple[int, bytes] | str] = []
    for native in (True, False):
        try:
            out.append(q.open_initial(datagram, packet, cid, server=server, native=native))
        except q.QuicSkipError as skip:
            out.append(skip.reason)
    return out


@needs_kernel
@pytest.mark.parametrize("version", sorted(q.VERSIONS))
@pytest.mark.parametrize("server", [False, True])
def test_kernel_opens_what_the_python_path_opens(version: int, server: bool) -> None:
    cid = bytes(range(1, 19))
    datagram = q.protect_initial(version, b"\x07" * 8, b"\x09" * 5, 77, [(0, b"a" * 300)], server=server, key_cid=cid)
    packet = next(iter(q.initial_packets(datagram)))
    assert isinstance(packet, q.InitialPacket)
    native, python = _both(datagram, packet, cid, server)
    assert native == python
    assert isinstance(native, tuple)
    assert native[0] == 77
    assert q.crypto_frames(native[1]) == [(0, b"a" * 300)]
    assert _both(datagram, packet, cid, not server) == ["decrypt_failed", "decrypt_failed"]  # the other direction
    assert _both(datagram, packet, cid[:-1], server) == ["decrypt_failed", "decrypt_failed"]


@needs_kernel
@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(sorted(q.VERSIONS)), st.booleans())
def test_kernel_and_python_agree_on_damaged_packets(at: int, flip: int, version: int, cut: bool) -> None:
    """Any one byte changed (or the datagram cut there): both paths give the same plaintext or the same skip."""
    datagram = bytearray(q.protect_initial(version, DCID, b"\x01\x02", 3, [(0, b"hello" * 40)], pad_to=300))
    at %= len(datagram)
    damaged = bytes(datagram[:at]) if cut else bytes(datagram[:at] + bytes([datagram[at] ^ flip]) + datagram[at + 1 :])
    for packet in q.initial_packets(damaged):
        if isinstance(packet, q.InitialPacket):
            native, python = _both(damaged, packet, DCID, False)
            assert native == python
