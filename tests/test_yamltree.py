"""The line-keeping YAML/JSON tree: lines, duplicate keys, tags, alias bombs and deep nesting refused."""

from __future__ import annotations

import pytest

from tlsdetect.pins.rows import PolicyError
from tlsdetect.pins.yamltree import MAX_DEPTH, load


def test_values_keep_their_lines() -> None:
    root = load("y", b"a:\n  b: [1,\n    2]\n  c: '[[[['\n")
    b = root.get("a").get("b")  # type: ignore[union-attr]
    assert [v.line for v in b.seq()] == [2, 3]  # type: ignore[union-attr]
    assert root.get("a").get("c").value == "[[[["  # type: ignore[union-attr]


def test_plain_json_fallback_has_no_lines() -> None:
    root = load("j", b'{\n\t"a": [1, 2]\n}')
    assert root.get("a").seq()[1].value == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "words"), [
    (b"a: 1\na: 2\n", "duplicate key 'a'"),
    (b"a: !!python/name:os.system\n", "tag"),
    (b"a: !!python/tuple [1]\n", "tag"),
    (b"a: !custom 1\n", "tag '!custom' is not allowed"),
    (b"? [1, 2]\n: x\n", "no plain value"),
    (b"a: [\n", "not YAML"),
    (b"", "empty document"),
    (b"a: 1\n---\nb: 2\n", "not YAML"),
    (b"\xff\xfe", "not UTF-8"),
    (b"x: " + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
])
def test_refused(text: bytes, words: str) -> None:
    with pytest.raises(PolicyError, match=words) as err:
        load("y", text)
    assert "\n" not in str(err.value)


def test_alias_bomb_stops_at_the_budget() -> None:
    doc = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
    with pytest.raises(PolicyError, match="alias bomb"):
        load("y", doc.encode())
