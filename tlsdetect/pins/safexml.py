"""XML policy files parsed with no DTD, no entities and no network, each element with its line.

defusedxml's parser with ``forbid_dtd``: an Android config has no reason to carry a DTD, so any
``<!DOCTYPE`` is refused outright (no XXE, no entity expansion bombs). ElementTree keeps no line
numbers; the builder here records them as elements start.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml.common import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from tlsdetect.pins.rows import PolicyError


class _LineBuilder(ET.TreeBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.parser: DefusedXMLParser | None = None

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        elem = super().start(tag, attrs)
        assert self.parser is not None
        self.lines[id(elem)] = self.parser.parser.CurrentLineNumber
        return elem


class Tree:
    """A parsed document and the line each element starts on."""

    def __init__(self, root: ET.Element, lines: dict[int, int]) -> None:
        self.root, self._lines = root, lines

    def line(self, elem: ET.Element) -> int | None:
        """The 1-based line of an element's start tag."""
        return self._lines.get(id(elem))


def parse(path: str, data: bytes) -> Tree:
    """The document, or a one-line :class:`PolicyError` (a DTD, an entity, bad XML) with the line."""
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    builder.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        line = parser.parser.CurrentLineNumber
        raise PolicyError(path, line, f"refused: {type(exc).__name__} (no DTD or entities allowed)") from None
    except ET.ParseError as exc:
        raise PolicyError(path, exc.position[0], f"not XML: {str(exc).split(':')[0]}") from None
    except RecursionError:
        raise PolicyError(path, None, "nested too deeply") from None
    return Tree(root, builder.lines)
