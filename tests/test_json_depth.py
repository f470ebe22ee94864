"""The JSON depth bound: the exact count, the vectorised block check, and the bounded ``loads``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.readers.json_depth import (
    MAX_DEPTH,
    JsonTooDeepError,
    deep_lines,
    depth,
    loads,
    scan,
    without_lines,
)


def nested(n: int, inner: str = "1") -> str:
    return '{"a":' + "[" * (n - 1) + inner + "]" * (n - 1) + "}"


def test_depth_counts_structure_not_strings() -> None:
    assert depth('{"a": 1}') == 1
    assert depth(nested(5)) == 5
    assert depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert depth(r'{"a": "\"[[[[", "b": {}}') == 2  # an escaped quote does not end the string
    assert depth("42") == 0
    assert depth(b"[[]]") == 2


def test_unterminated_string_counts_its_brackets() -> None:
    assert depth('{"a": "[[[[') >= 5  # never less than the truth of a line that is broken anyway


_JSON = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(alphabet="[]{}x", max_size=3), kids, max_size=3),
    max_leaves=30,
)


def _true_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    return 0


@given(_JSON)
def test_depth_equals_the_parsed_depth(value: object) -> None:
    assert depth(json.dumps(value)) == _true_depth(value)


def test_deep_lines_of_a_block() -> None:
    lines = [nested(3), nested(MAX_DEPTH), nested(MAX_DEPTH + 1), '{"a": "' + "[" * 200 + '"}', nested(20_000), ""]
    block = "\n".join(lines).encode()
    assert deep_lines(block) == [2, 4]
    assert deep_lines(block, limit=2) == [0, 1, 2, 4]
    assert deep_lines(b"") == []
    assert deep_lines(nested(MAX_DEPTH + 1).encode()) == [0]  # a last line without its newline


def test_without_lines_keeps_line_numbers() -> None:
    block = b"a\nb\nc\n"
    assert without_lines(block, [1]) == b"a\n\nc\n"
    assert without_lines(block, [0, 2]).split(b"\n") == [b"", b"b", b"", b""]


def test_bounded_loads() -> None:
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    assert loads('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}
    with pytest.raises(JsonTooDeepError, match="nested too deep"):
        loads(nested(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="nested too deep"):  # what every reader already catches
        loads(nested(100_000).encode())
    with pytest.raises(JsonTooDeepError, match="deeper than 3"):
        loads(nested(4), limit=3)


def test_deep_lines_across_the_scan_pieces() -> None:
    """The scan works in 1 MB pieces: a deep line across a piece boundary is found, with its index."""
    filler = ('{"a": [1, 2], "b": "' + "x" * 200 + '"}\n') * 4_000  # 3 brackets a line
    pad = '{"p": "' + "x" * ((1 << 20) - 40 - len(filler) - 10) + '"}\n'
    deep = nested(MAX_DEPTH + 10)  # starts 40 bytes before the boundary and ends after it
    block = (filler + pad + deep + "\n" + filler + nested(MAX_DEPTH) + "\n" + nested(500)).encode()
    assert block.index(deep.encode()) == (1 << 20) - 40
    assert deep_lines(block) == [4_001, 8_003]


def test_scan_gives_the_deep_lines_and_every_newline() -> None:
    block = ("{}\n" + nested(MAX_DEPTH + 1) + "\n\n[1]\n" + "x" * 10).encode()
    deep, newlines = scan(block)
    assert deep == deep_lines(block) == [1]
    assert newlines.tolist() == [i for i, b in enumerate(block) if b == 0x0A]
    assert scan(b"")[1].tolist() == []
    assert scan(b"{}\n")[1].tolist() == [2]
