"""Bounds on the names (object keys) of JSON lines, checked before Arrow's JSON reader sees a block.

Arrow's JSON reader (26) makes a column for every name it meets in a block and pays for every cell
of it: one line with 100,000 names takes 3.5 s and 400 MB alone, 20,000 lines beside it took 157 s
and 21 GB, and 4,000 lines of 50 random names each aborted the process (``std::bad_alloc``). An
access log line has a few dozen names. So a line with more than :data:`MAX_NAMES` is a dead letter
(``JSON object with too many names``) and never parsed, and a block's schema is learnt from a
sample of its first lines bounded by bytes and by names (:func:`sample_end`).

The per-line check is vectorised and conservative: a line needs at least :data:`_MIN_BYTES` bytes a
name, so only lines longer than that many times the bound get a count, and only those with more
colons than the bound get the exact, string-aware one (a name is a colon outside strings).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["MAX_NAMES", "TOO_MANY_NAMES", "names", "sample_end", "wide_lines"]

#: Most names one log line may have (all the nested objects' names counted).
MAX_NAMES = 512
#: The dead-letter reason of a line with more (its part before ``:`` is the counted name).
TOO_MANY_NAMES = f"JSON object with too many names: more than {MAX_NAMES} keys in one line"

#: ``"":0,`` is the shortest name with its value and separator (5 bytes): 4 is a safe lower bound.
_MIN_BYTES = 4
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def names(text: bytes) -> int:
    """How many names one JSON text holds: its colons outside strings (never less than the truth;
    an unterminated string's colons are counted)."""
    colons = text.count(b":")
    if colons == 0:
        return 0
    return _STRING.sub(b"", text).count(b":")


def wide_lines(block: bytes, newlines: np.ndarray[Any, np.dtype[np.int64]], limit: int = MAX_NAMES) -> list[int]:
    """0-based indices (in ``block.split(b"\\n")``) of the lines with more than ``limit`` names;
    ``newlines``: the offsets of the block's newlines (:func:`~tlsdetect.readers.json_depth.scan`)."""
    if len(block) <= limit * _MIN_BYTES:
        return []
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(block)]))
    out = []
    for i in np.flatnonzero(ends - starts > limit * _MIN_BYTES).tolist():
        line = block[starts[i] : ends[i]]
        if line.count(b":") > limit and names(line) > limit:
            out.append(i)
    return out


def sample_end(block: bytes, max_bytes: int, max_names: int) -> int:
    """Where the sample of a block's first lines ends: whole lines within ``max_bytes`` whose colons
    (an upper bound on their names) stay within ``max_names``; at least the first line."""
    head = np.frombuffer(block, dtype=np.uint8, count=min(len(block), max_bytes))
    newlines = np.flatnonzero(head == 0x0A)
    if not len(newlines):
        first = block.find(b"\n")
        return len(block) if first < 0 else first + 1
    colons = np.cumsum(head == 0x3A, dtype=np.int64)[newlines]
    within = int(np.searchsorted(colons, max_names, side="right"))
    return int(newlines[max(within, 1) - 1]) + 1
