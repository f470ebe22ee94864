"""Shared fixtures: where the reference corpus lives, and its expected values keyed by 4-tuple.

The corpus is ``../shared`` beside the checkout (CI lays it there), or wherever ``TLSDETECT_SHARED``
points. Every test finds it through :data:`SHARED` and asks for it with :func:`needs_shared` (a mark)
or :func:`require_shared` (inside a test). When it is absent the test skips with the reason on a
developer's machine and FAILS under CI (``CI`` set), so a CI run never passes on skipped corpus tests.
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

# Helpers that assert, imported by test modules: pytest rewrites their asserts too (a failure shows values).
pytest.register_assert_rewrite("tests.serve_support", "tests.cli_support", "tests.spark_fixtures")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TLSDETECT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "pcaps" / "reference"
INTERCEPTION = SHARED / "pcaps" / "interception"
PROJECT_PCAPS = ROOT / "pcaps"
#: Ground truth of ``pcaps/`` (written by ``scripts/make_captures.py``).
CAPTURES_MANIFEST = ROOT / "docs" / "captures" / "MANIFEST.json"
#: The captures of clean traffic (what ``baselines/sample`` learned); ``pcaps/intercepted.pcapng`` is not one.
CLEAN_PCAPS = tuple(PROJECT_PCAPS / name for name, capture in json.loads(CAPTURES_MANIFEST.read_text())["captures"]
                    .items() if capture["label"] == "clean")

#: Under CI a missing corpus is a failure, not a skip (issue 14 item 15).
ON_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
#: What the suite reads from the corpus: checked once at session start under CI.
SHARED_PARTS = ("pcaps/reference/expected_ja4.json", "pcaps/interception/SOURCES.md", "samples/zeek",
                "samples/envoy/envoy_access.sample.jsonl", "knowledge/SOURCES.md")


def shared_missing(*parts: str) -> str | None:
    """Why the corpus paths ``parts`` (relative to :data:`SHARED`) cannot be read, or None."""
    for part in parts:
        path = SHARED / part
        if not path.exists():
            return f"shared data not found: {path} (set TLSDETECT_SHARED to the shared/ folder)"
    return None


def require_shared(*parts: str) -> Path:
    """``SHARED / parts[0]``; skips the test when a part is missing, or fails it under CI."""
    reason = shared_missing(*parts)
    if reason is not None:
        if ON_CI:
            pytest.fail(f"CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return SHARED / parts[0] if parts else SHARED


def needs_shared(*parts: str) -> pytest.MarkDecorator:
    """Mark a test that reads ``parts`` of the corpus: :func:`require_shared` runs before it."""
    return pytest.mark.shared_data(*parts)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_data(*parts): reads these paths under TLSDETECT_SHARED (../shared)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI, stop before any test when the corpus is not where TLSDETECT_SHARED says."""
    reason = shared_missing(*SHARED_PARTS)
    if ON_CI and reason is not None:
        raise pytest.UsageError(f"CI: {reason}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("shared_data"):
        require_shared(*mark.args)


needs_reference = needs_shared("pcaps/reference/expected_ja4.json")
needs_interception = needs_shared("pcaps/interception/SOURCES.md")
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
    """Names of the reference captures (none without the corpus; a collection error under CI)."""
    reason = shared_missing("pcaps/reference/expected_ja4.json")
    if reason is not None:
        if ON_CI:
            pytest.fail(f"CI: {reason}", pytrace=False)
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
