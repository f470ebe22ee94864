"""benchmarks/quic_protect.py: the RFC 9001/9369 vectors, round trips, and malformed packets."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
qp: Any = importlib.import_module("quic_protect")
DCID = bytes.fromhex("8394c8f03e515708")


def test_initial_keys_match_rfc_9001_appendix_a() -> None:
    c = qp.initial_keys(DCID)
    assert (c.key.hex(), c.iv.hex(), c.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2")
    s = qp.initial_keys(DCID, server=True)
    assert (s.key.hex(), s.iv.hex(), s.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314")


def test_initial_keys_match_rfc_9369_appendix_a() -> None:
    c = qp.initial_keys(DCID, qp.V2)
    assert (c.key.hex(), c.iv.hex(), c.hp.hex()) == (
        "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9")


def test_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(qp.QuicPacketError, match="0xff00001d"):
        qp.initial_keys(DCID, 0xFF00001D)


@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2), st.sampled_from([1, 0x6B3343CF]),
       st.integers(0, 1 << 20), st.binary(min_size=0, max_size=20), st.booleans())
def test_protect_then_open_gives_the_crypto_stream_back(data: bytes, cuts: int, version: int, pn: int,
                                                      dcid: bytes, server: bool) -> None:
    keys = qp.initial_keys(dcid, version, server=server)
    step = -(-len(data) // (cuts + 1))
    frames = [qp.crypto_frame(i, data[i:i + step]) for i in range(0, len(data), step)]
    pkt = qp.protect_initial(b"".join(reversed(frames)), dcid=dcid, scid=b"\x01\x02", keys=keys, pn=pn,
                             version=version, pad_to=1200)
    assert len(pkt) >= 1200
    [(start, end, _)] = list(qp.long_packets(pkt))
    assert (start, end) == (0, len(pkt))
    opened = qp.open_initial(pkt, client_dcid=dcid, server=server)
    assert (opened.version, opened.dcid, opened.pn) == (version, dcid, pn)
    chunks = dict(qp.crypto_frames(opened.payload))
    stream = bytearray(len(data))
    for off, frag in chunks.items():
        stream[off:off + len(frag)] = frag
    assert bytes(stream) == data


@given(st.binary(max_size=200), st.integers(0, 1199), st.integers(1, 255))
def test_damaged_or_random_bytes_raise_quic_packet_error_only(junk: bytes, pos: int, flip: int) -> None:
    pkt = bytearray(qp.protect_initial(qp.crypto_frame(0, b"\x01\x00\x00\x01x"), dcid=DCID, scid=b"",
                                       keys=qp.initial_keys(DCID), pn=0, pad_to=1200))
    pkt[pos] ^= flip
    for candidate in (bytes(pkt), junk, b"\xc0" + junk):
        try:
            qp.open_initial(candidate)
        except qp.QuicPacketError:
            continue


def test_handshake_message_waits_for_the_whole_message() -> None:
    msg = b"\x01\x00\x00\x05abcde"
    assert qp.handshake_message({0: msg[:4], 6: msg[6:]}) is None
    assert qp.handshake_message({0: msg[:4], 4: msg[4:]}) == msg
