"""dotted.flatten: nested objects as dotted names, checked against rebuilding the nesting by hand."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.dotted import flatten

_KEY = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
_LEAF = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))
_DOC = st.recursive(_LEAF, lambda inner: st.dictionaries(_KEY, inner, min_size=1, max_size=4), max_leaves=20)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse, written out: split each name on dots and walk down, making objects as needed."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *path, last = name.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _leaves(doc: Any) -> int:
    return sum(_leaves(v) for v in doc.values()) if isinstance(doc, dict) else 1


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEY, _DOC, max_size=5))
def test_flatten_then_nest_gives_the_document_back(doc: dict[str, Any]) -> None:
    """Keys without dots: one dotted name per leaf, and nesting them again is the original document."""
    flat = flatten(doc)
    assert len(flat) == _leaves(doc)
    assert _nest(flat) == doc
    assert not any(isinstance(v, dict) for v in flat.values())


def test_lists_are_leaves_and_the_prefix_is_prepended() -> None:
    doc = {"tls": {"client": {"ja3": "abc", "ciphers": [1, 2]}}, "id": {"orig_h": "10.0.0.1"}}
    assert flatten(doc) == {"tls.client.ja3": "abc", "tls.client.ciphers": [1, 2], "id.orig_h": "10.0.0.1"}
    assert flatten({"a": 1}, prefix="zeek.") == {"zeek.a": 1}
