"""The hardened XML parse: element lines kept, any DTD refused, parse errors one line with the line."""

from __future__ import annotations

import pytest

from tlsdetect.pins.rows import PolicyError
from tlsdetect.pins.safexml import parse


def test_lines() -> None:
    tree = parse("x", b"<a>\n  <b/>\n\n  <c>t</c>\n</a>")
    assert [(e.tag, tree.line(e)) for e in tree.root.iter()] == [("a", 1), ("b", 2), ("c", 4)]


@pytest.mark.parametrize(("data", "line", "words"), [
    (b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "y">]>\n<a>&x;</a>', 2, "DTDForbidden"),
    (b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd">\n<a/>', 1, "DTDForbidden"),
    (b"<a>\n&undefined;</a>", 2, "undefined entity"),
    (b"<a>\n<b></a>", 2, "mismatched tag"),
    (b"", 1, "no element found"),
])
def test_refused(data: bytes, line: int, words: str) -> None:
    with pytest.raises(PolicyError, match=words) as err:
        parse("x", data)
    assert err.value.line == line
