"""tlsdetect.wire.quic_tp: a ClientHello's QUIC transport parameters as column text (ids, values, GREASE)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.craft import hypothesis_examples
from tlsdetect.wire.quic_tp import VALUED, transport_parameters


def varint(v: int) -> bytes:
    """RFC 9000 section 16 encoding in the shortest form."""
    for size, prefix in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if v < 1 << (8 * size - 2):
            return (v | prefix << (8 * size - 8)).to_bytes(size, "big")
    raise ValueError(v)


def param(pid: int, value: bytes) -> bytes:
    return varint(pid) + varint(len(value)) + value


def hello(ext_body: bytes | None) -> bytes:
    """A ClientHello body (no handshake header) with one cipher and, if given, extension 0x39."""
    exts = b"" if ext_body is None else b"\x00\x39" + len(ext_body).to_bytes(2, "big") + ext_body
    return b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts


def test_ids_in_wire_order_with_the_values_of_a_stacks_settings() -> None:
    ext = (param(0x4, varint(15728640)) + param(0x1B, b"\x01\x02")  # GREASE id 27: its value is noise
           + param(0xF, bytes(8)) + param(0x1, varint(30000)) + param(0x3128, b"x")
           + param(0x11, bytes.fromhex("00000001" "6b3343cf" "1a2a3a4a")))
    assert transport_parameters(hello(ext)) == "4=15728640,grease,f,1=30000,3128,11=00000001/6b3343cf/grease"


def test_a_valued_id_whose_value_is_not_one_varint_keeps_only_its_id() -> None:
    ext = param(0x3, varint(1472) + b"\x00") + param(0xE, b"")
    assert transport_parameters(hello(ext)) == "3,e"


def test_without_the_extension_or_cut_short_it_is_missing() -> None:
    assert transport_parameters(hello(None)) is None
    body = hello(param(0x1, varint(100)))
    assert transport_parameters(body[:-1]) is None  # the extension runs past the hello
    ext = b"\x01\x05\x40\x64"  # a parameter (5 bytes said) longer than the extension
    assert transport_parameters(hello(ext)) is None
    assert transport_parameters(b"\x03") is None


@settings(max_examples=hypothesis_examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**30), st.integers(0, 2**40)), max_size=20))
def test_any_list_round_trips_ids_order_and_values(params: list[tuple[int, int]]) -> None:
    ext = b"".join(param(pid, varint(v)) for pid, v in params)
    want = ",".join("grease" if pid % 31 == 27 else f"{pid:x}={v}" if pid in VALUED else f"{pid:x}"
                    for pid, v in params)
    assert transport_parameters(hello(ext)) == want


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_text_or_none_never_an_exception(data: bytes) -> None:
    out = transport_parameters(hello(data))
    assert out is None or isinstance(out, str)
    assert transport_parameters(data) is None or isinstance(transport_parameters(data), str)
