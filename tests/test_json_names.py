"""Name bounds of JSON lines: exact counts, the wide lines of a block, the sample's end."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers import json_depth
from tlsdetect.readers.json_names import MAX_NAMES, names, sample_end, wide_lines

_TEXT = st.text(alphabet=st.sampled_from('ab:"\\{}[],: \u00e9'), max_size=6)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6), st.booleans())
def test_names_counts_every_key_and_no_colon_in_strings(obj: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":") if ascii_only else (", ", ": "))
    assert names(text.encode()) == _count(obj)


def test_names_of_broken_text_is_never_less_than_its_keys() -> None:
    assert names(b'{"a": 1, "b": "x:y') == 3  # the unterminated string's colon counted
    assert names(b"") == 0


def _wide(n: int) -> bytes:
    return json.dumps({f"k{i}": i for i in range(n)}).encode()


def _block(lines: list[bytes]) -> tuple[bytes, np.ndarray[Any, Any]]:
    block = b"\n".join(lines) + b"\n"
    return block, json_depth.scan(block)[1]


def test_wide_lines_are_those_over_the_bound() -> None:
    colons_in_strings = json.dumps({"a": ":" * (MAX_NAMES * 4)}).encode()  # long, many colons, one name
    lines = [b'{"a": 1}', _wide(MAX_NAMES + 1), b"", colons_in_strings, _wide(MAX_NAMES), _wide(5 * MAX_NAMES)]
    block, newlines = _block(lines)
    assert wide_lines(block, newlines) == [1, 5]
    assert wide_lines(block, newlines, limit=MAX_NAMES - 1) == [1, 4, 5]


def test_wide_lines_of_a_short_block_and_of_a_last_line_without_newline() -> None:
    assert wide_lines(b'{"a": 1}\n', json_depth.scan(b'{"a": 1}\n')[1]) == []
    block = b'{"a": 1}\n' + _wide(MAX_NAMES + 1)
    assert wide_lines(block, json_depth.scan(block)[1]) == [1]


def test_sample_end_bounds_bytes_and_names_and_keeps_the_first_line() -> None:
    line = json.dumps({"a": 1, "b": 2}).encode() + b"\n"  # 2 names, 17 bytes
    block = line * 100
    assert sample_end(block, 10 * len(line), 1000) == 10 * len(line)  # bytes bound: whole lines
    assert sample_end(block, 10 * len(line) + 5, 1000) == 10 * len(line)
    assert sample_end(block, 10_000, 7) == 3 * len(line)  # names bound: 3 lines hold 6 colons
    assert sample_end(block, 10_000, 1) == len(line)  # always the first line
    assert sample_end(block, 4, 1000) == len(line)
    big = _wide(50) + b"\n" + line
    assert sample_end(big, 16, 10) == len(big) - len(line)
    assert sample_end(b'{"a": 1}', 100, 10) == len(b'{"a": 1}')  # no newline at all
