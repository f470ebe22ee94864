"""Lookup structures derived from a baseline's tables, built once per loaded baseline and reused.

Scoring a one-row request used to rebuild them on every call (indexes over the learned fingerprints, the
JA4 parts of every learned JA4, the server profiles): ~0.8 s of a ~0.9 s ``POST /v1/score`` (issue 18 #15).
An entry is kept per baseline object (weakly: a reloaded baseline's entries go with the old object) and
remembers the table objects it was built from; ``fit``/``partial_fit`` assign new tables, so an entry built
before them no longer matches and is rebuilt on next use: never stale, no explicit invalidation to forget.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["derived"]

T = TypeVar("T")

_ENTRIES: weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple[object, ...], Any]]] = weakref.WeakKeyDictionary()


def derived(owner: object, name: str, tables: tuple[str, ...], build: Callable[[], T]) -> T:
    """``build()``, computed once per ``owner`` while its attributes ``tables`` are the same objects.

    ``name`` names the structure (one per caller); ``tables`` are the attributes it reads (``"fingerprints_"``);
    a missing attribute counts as ``None``. The entry holds its tables, so their identities cannot be reused.
    """
    now = tuple(getattr(owner, t, None) for t in tables)
    entries = _ENTRIES.setdefault(owner, {})
    hit = entries.get(name)
    if hit is not None and len(hit[0]) == len(now) and all(a is b for a, b in zip(hit[0], now, strict=True)):
        value: T = hit[1]
        return value
    value = build()
    entries[name] = (now, value)
    return value
