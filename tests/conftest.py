"""Shared fixtures: where the reference corpus lives, and its expected values keyed by 4-tuple.

The corpus is ``../shared`` beside the checkout (CI lays it there). When it is absent, the tests
that need it skip with the reason, never silently pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TLSDETECT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "pcaps" / "reference"
INTERCEPTION = SHARED / "pcaps" / "interception"
PROJECT_PCAPS = ROOT / "pcaps"

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "expected_ja4.json").is_file(),
    reason=f"reference corpus not found at {REFERENCE} (set TLSDETECT_SHARED to the shared/ folder)",
)
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

Tuple4 = tuple[str, int, str, int]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_envoy_script() -> ModuleType:
    """``scripts/envoy_logs.py`` as a module."""
    return load_script("envoy_logs")


@cache
def expected_ja4() -> dict[str, Any]:
    return json.loads((REFERENCE / "expected_ja4.json").read_text())["files"]  # type: ignore[no-any-return]


@cache
def expected_ja3() -> dict[str, Any]:
    return json.loads((REFERENCE / "expected_ja3.json").read_text())["files"]  # type: ignore[no-any-return]


def reference_files() -> list[str]:
    if not (REFERENCE / "expected_ja4.json").is_file():
        return []
    return sorted(expected_ja4())


def ja4_streams(name: str, transport: str | None = None) -> list[dict[str, Any]]:
    """Expected JA4 records of one capture, each with a ``tuple`` (client, cport, server, sport)."""
    out = []
    for s in expected_ja4()[name]["streams"]:
        if transport is None or s["transport"] == transport:
            out.append({**s, "tuple": (s["src"], s["src_port"], s["dst"], s["dst_port"])})
    return out


def ja3_streams(name: str, transport: str | None = None) -> list[dict[str, Any]]:
    """Expected JA3/JA3S records (tshark 4.0) of one capture, keyed like :func:`ja4_streams`."""
    out = []
    for s in expected_ja3().get(name, {}).get("streams", []):
        if transport is None or s["transport"] == transport:
            out.append({**s, "tuple": (s["client"], s["client_port"], s["server"], s["server_port"])})
    return out
