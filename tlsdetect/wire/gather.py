"""Big-endian reads at many offsets of one byte buffer at once, with every index clamped.

Header fields of many packets or hellos are read with one numpy gather each. Clamping makes a
read past the end return a byte of the buffer instead of raising; callers check lengths and
mark such rows invalid, so a lying length can make a value wrong but never crash a read.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Gather"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


class Gather:
    __slots__ = ("buf",)

    def __init__(self, buf: npt.NDArray[np.uint8]) -> None:
        self.buf = buf

    def u8(self, idx: I64) -> I64:
        # take(mode="clip") clamps to [0, len - 1] inside one C call: the same bytes as
        # ``buf[np.clip(idx, 0, last)]`` without clip's Python-level wrapper (hot: ~50k calls).
        return self.buf.take(idx, mode="clip").astype(np.int64)

    def be(self, idx: I64, width: int) -> I64:
        """Unsigned big-endian integer of ``width`` bytes (1 to 7) at each offset."""
        out = self.u8(idx)
        for k in range(1, width):
            out = (out << 8) | self.u8(idx + k)
        return out

    def be16(self, idx: I64) -> I64:
        return self.be(idx, 2)

    def be24(self, idx: I64) -> I64:
        return self.be(idx, 3)

    def be32(self, idx: I64) -> I64:
        return self.be(idx, 4)

    def be64(self, idx: I64) -> U64:
        return (self.be32(idx).astype(np.uint64) << np.uint64(32)) | self.be32(idx + 4).astype(np.uint64)
