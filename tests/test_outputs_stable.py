"""The CLI's outputs stay byte-identical across refactors (issue 15: "outputs byte-identical on pcaps/,
../shared/pcaps and the shared Zeek/Envoy samples, checked by a test before and after").

Each case runs one command over one input in process and compares the SHA-256 of what it wrote with
``tests/golden/outputs.json``. A change that is meant to alter outputs (a new column, a new signal, a
refitted sample baseline) updates the file on purpose, and the diff shows which outputs moved:

    TLSDETECT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_outputs_stable.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, SHARED, require_shared
from tlsdetect.cli import main

GOLDEN = ROOT / "tests" / "golden" / "outputs.json"
UPDATE = os.environ.get("TLSDETECT_UPDATE_GOLDEN", "") not in ("", "0")
BASELINE = ROOT / "baselines" / "sample"

#: (input name, path relative to the repo or to the shared corpus, whether it is shared)
INPUTS = [
    ("pcaps", "pcaps", False),
    ("reference", "pcaps/reference", True),
    ("interception", "pcaps/interception", True),
    ("zeek", "samples/zeek", True),
    ("envoy", "samples/envoy/envoy_access.sample.jsonl", True),
]
#: (command name, arguments before the input, output format)
COMMANDS = [
    ("fingerprint-jsonl", ["fingerprint", "--no-progress", "-f", "jsonl"]),
    ("fingerprint-csv", ["fingerprint", "--no-progress", "-f", "csv"]),
    ("score-jsonl", ["score", "--no-progress", "--baseline", str(BASELINE), "-f", "jsonl"]),
    ("score-ecs", ["score", "--no-progress", "--baseline", str(BASELINE), "-f", "ecs"]),
]
CASES = [(f"{cmd} {name}", args, rel, shared) for cmd, args in COMMANDS for name, rel, shared in INPUTS]


def _load() -> dict[str, str]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize(("case", "args", "rel", "shared"), CASES, ids=[c[0] for c in CASES])
def test_output_is_byte_identical(case: str, args: list[str], rel: str, shared: bool, tmp_path: Path) -> None:
    """The bytes a command writes for an input have the digest recorded in ``tests/golden/outputs.json``."""
    path = require_shared(rel) if shared else ROOT / rel
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*args, "-o", str(out), str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    golden = _load()
    if UPDATE:
        golden[case] = digest
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1) + "\n")
        return
    assert case in golden, f"no golden digest for {case!r}: run with TLSDETECT_UPDATE_GOLDEN=1 once"
    assert digest == golden[case], f"{case}: output changed (shared corpus at {SHARED})"


def test_every_golden_case_is_still_run() -> None:
    """A golden digest without its case would hide an output nobody checks any more."""
    assert set(_load()) == {c[0] for c in CASES}
