"""DTLS records and fragment assembly (:mod:`tlsdetect.wire.dtls`): any fragment order, repeats, bad input."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.wire.dtls import DtlsFragment, DtlsSide, handshake_fragments

from .craft import hypothesis_examples


def _record(msg_type: int, body: bytes, offset: int, length: int, seq: int = 0, *, ctype: int = 22,
            epoch: int = 0, version: int = 0xFEFD) -> bytes:
    frag = bytes([msg_type]) + len(body).to_bytes(3, "big") + seq.to_bytes(2, "big")
    frag += offset.to_bytes(3, "big") + length.to_bytes(3, "big") + body[offset : offset + length]
    return struct.pack(">BHH", ctype, version, epoch) + bytes(6) + struct.pack(">H", len(frag)) + frag


def test_records_of_one_datagram() -> None:
    body = bytes(range(100))
    datagram = _record(1, body, 0, 60) + _record(20, b"", 0, 0, ctype=20) + _record(1, body, 60, 40)
    datagram += _record(22, b"x" * 10, 0, 10, epoch=1)  # encrypted epoch: stepped over
    frags, stop = handshake_fragments(datagram)
    assert stop is None
    assert [(f.msg_type, f.length, f.offset, len(f.data)) for f in frags] == [(1, 100, 0, 60), (1, 100, 60, 40)]


def test_bad_records_stop_with_a_reason() -> None:
    body = bytes(50)
    assert handshake_fragments(_record(1, body, 0, 50)[:20])[1] == "dtls_truncated"
    assert handshake_fragments(_record(1, body, 0, 50, version=0x0303))[1] == "dtls_not_a_record"
    lying = bytearray(_record(1, body, 0, 50))
    lying[13 + 9 : 13 + 12] = (60).to_bytes(3, "big")  # fragment longer than its record
    assert handshake_fragments(bytes(lying))[1] == "dtls_bad_fragment"


@settings(max_examples=hypothesis_examples(100), deadline=None)
@given(data=st.data())
def test_any_fragment_order_and_repeats_give_the_message_once(data: st.DataObject) -> None:
    body = data.draw(st.binary(min_size=1, max_size=300))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=5)))) if len(body) > 1 else []
    bounds = [0, *cuts, len(body)]
    frags = [DtlsFragment(1, len(body), 0, a, body[a:b]) for a, b in itertools.pairwise(bounds)]
    order = data.draw(st.permutations(frags))
    order += data.draw(st.lists(st.sampled_from(frags), max_size=3))
    side = DtlsSide()
    whole = [m for m in (side.add(f) for f in order) if m is not None]
    assert whole == [(1, body)]


def test_a_new_message_seq_is_a_new_message() -> None:
    side = DtlsSide()
    assert side.add(DtlsFragment(1, 3, 0, 0, b"abc")) == (1, b"abc")
    assert side.add(DtlsFragment(1, 3, 0, 0, b"abc")) is None  # a retransmission
    assert side.add(DtlsFragment(1, 3, 1, 0, b"abd")) == (1, b"abd")  # after a HelloVerifyRequest
    assert side.add(DtlsFragment(1, 3, 99, 0, b"abc")) is None  # past the hello flight


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_never_raise(data: bytes) -> None:
    frags, stop = handshake_fragments(data)
    assert stop is None or stop.startswith("dtls_")
    side = DtlsSide()
    for f in frags:
        side.add(f)
