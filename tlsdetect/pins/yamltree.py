"""YAML and JSON policy files as a tree that remembers each value's line, hardened against bombs.

PyYAML's safe loader builds no objects but plain ones, yet an alias can point at a mapping full of
aliases (the "billion laughs" of YAML): copying the tree visits every expansion. The copy here counts
the nodes it visits and stops at :data:`MAX_NODES` with a one-line error; duplicate keys are an
error too (the last one would silently win in YAML, and a reviewer reads the first).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from tlsdetect.pins.rows import PolicyError

MAX_NODES = 100_000
MAX_DEPTH = 64
#: Quoted strings and comments, whose brackets do not nest (newlines kept, so line numbers stay).
_NOT_SYNTAX = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')
_BRACKET = re.compile(r"[\[\]{}]")
#: YAML tags a policy may carry (the core schema); ``!!python/...`` and custom tags are refused.
_CORE_TAGS = frozenset("tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null",
                                                           "timestamp", "merge"))


@dataclass(frozen=True)
class Y:
    """One value and the 1-based line it starts on (None when the file was read as plain JSON)."""

    value: Any
    line: int | None

    def get(self, key: str) -> Y | None:
        """The value under a key of a mapping (None for a missing key or a value that is no mapping)."""
        return self.value.get(key) if isinstance(self.value, dict) else None

    def items(self) -> list[tuple[str, Y]]:
        """A mapping's entries in file order; nothing for other values."""
        return list(self.value.items()) if isinstance(self.value, dict) else []

    def seq(self) -> list[Y]:
        """A sequence's items; nothing for other values."""
        return list(self.value) if isinstance(self.value, list) else []


class _Budget:
    def __init__(self, path: str) -> None:
        self.path, self.left = path, MAX_NODES

    def spend(self, line: int | None) -> None:
        self.left -= 1
        if self.left < 0:
            raise PolicyError(self.path, line, f"more than {MAX_NODES} values (an alias bomb?)")


def _check_flow_depth(path: str, text: str) -> None:
    """Refuse deep ``[[[...`` before parsing: PyYAML's scanner is quadratic in flow depth (seconds at 5,000)."""
    plain = _NOT_SYNTAX.sub("", text)
    depth = 0
    for m in _BRACKET.finditer(plain):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise PolicyError(path, plain.count("\n", 0, m.start()) + 1, f"nested deeper than {MAX_DEPTH} levels")


def _from_node(node: yaml.Node, ctor: yaml.constructor.SafeConstructor, budget: _Budget, depth: int) -> Y:
    line = node.start_mark.line + 1
    budget.spend(line)
    if node.tag not in _CORE_TAGS:
        raise PolicyError(budget.path, line, f"YAML tag {str(node.tag)[:60]!r} is not allowed")
    if depth > MAX_DEPTH:
        raise PolicyError(budget.path, line, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Y] = {}
        for k, v in node.value:
            key = ctor.construct_object(k) if isinstance(k, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool):
                raise PolicyError(budget.path, k.start_mark.line + 1, "a mapping key that is no plain value")
            skey = str(key)
            if skey in out:
                raise PolicyError(budget.path, k.start_mark.line + 1, f"duplicate key {skey[:60]!r}")
            out[skey] = _from_node(v, ctor, budget, depth + 1)
        return Y(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Y([_from_node(v, ctor, budget, depth + 1) for v in node.value], line)
    return Y(ctor.construct_object(node), line)


def _from_json(value: Any, budget: _Budget, depth: int) -> Y:
    budget.spend(None)
    if depth > MAX_DEPTH:
        raise PolicyError(budget.path, None, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return Y({str(k): _from_json(v, budget, depth + 1) for k, v in value.items()}, None)
    if isinstance(value, list):
        return Y([_from_json(v, budget, depth + 1) for v in value], None)
    return Y(value, None)


def load(path: str, data: bytes) -> Y:
    """The file's one document as a :class:`Y` tree; YAML or JSON errors are one line with the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(path, data[:exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    budget = _Budget(path)
    _check_flow_depth(path, text)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise PolicyError(path, None, "empty document")
            return _from_node(node, loader, budget, 0)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        if text.lstrip().startswith(("{", "[")):
            try:
                return _from_json(json.loads(text), _Budget(path), 0)
            except (json.JSONDecodeError, RecursionError) as jexc:
                raise PolicyError(path, getattr(jexc, "lineno", None), f"not JSON: {getattr(jexc, 'msg', jexc)}"
                                  ) from None
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(path, mark.line + 1 if mark else None, f"not YAML: {problem}") from None
    except RecursionError:
        raise PolicyError(path, None, "nested too deeply") from None
