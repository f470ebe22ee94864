"""wire.gather.Gather: big-endian reads at many offsets, against int.from_bytes, and clamping past the ends."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.wire.gather import Gather


def _clamped(data: bytes, i: int) -> int:
    return data[min(max(i, 0), len(data) - 1)]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=64), st.data())
def test_reads_inside_the_buffer_equal_int_from_bytes(data: bytes, draw: st.DataObject) -> None:
    g = Gather(np.frombuffer(data, dtype=np.uint8))
    width = draw.draw(st.integers(1, 7))
    offsets = draw.draw(st.lists(st.integers(0, len(data) - 8), min_size=1, max_size=10))
    idx = np.array(offsets, dtype=np.int64)
    assert g.be(idx, width).tolist() == [int.from_bytes(data[o:o + width], "big") for o in offsets]
    assert g.be16(idx).tolist() == [int.from_bytes(data[o:o + 2], "big") for o in offsets]
    assert g.be24(idx).tolist() == [int.from_bytes(data[o:o + 3], "big") for o in offsets]
    assert g.be32(idx).tolist() == [int.from_bytes(data[o:o + 4], "big") for o in offsets]
    assert [int(v) for v in g.be64(idx)] == [int.from_bytes(data[o:o + 8], "big") for o in offsets]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.lists(st.integers(-40, 40), min_size=1, max_size=10))
def test_a_read_past_either_end_takes_the_nearest_byte_and_never_raises(data: bytes, offsets: list[int]) -> None:
    """A lying length makes a value wrong, never a crash: each byte index is clamped into the buffer."""
    g = Gather(np.frombuffer(data, dtype=np.uint8))
    idx = np.array(offsets, dtype=np.int64)
    assert g.u8(idx).tolist() == [_clamped(data, o) for o in offsets]
    want = [(_clamped(data, o) << 8) | _clamped(data, o + 1) for o in offsets]
    assert g.be16(idx).tolist() == want


def test_be64_keeps_the_top_bit() -> None:
    g = Gather(np.frombuffer(b"\xff" * 8, dtype=np.uint8))
    assert int(g.be64(np.array([0], dtype=np.int64))[0]) == 2**64 - 1
