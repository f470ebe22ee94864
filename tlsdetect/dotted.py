"""Nested JSON objects as flat dotted names: ``{"tls": {"client": {"ja3": x}}}`` -> ``{"tls.client.ja3": x}``.

Zeek's JSON writer nests some fields (``id.orig_h``, ``certificate.subject``) and the ECS sink
writes nested documents that its tests read back flat. Kept here, beside neither, so that a reader
never imports a sink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["flatten"]


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"tls": {"client": {"ja3": x}}}`` -> ``{"tls.client.ja3": x}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
