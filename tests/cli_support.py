"""What the command-line tests of ``baseline``, ``lookup`` and ``score`` share: a runner and the sample baseline.

Each test module keeps its own module-scoped ``baseline_dir`` fixture that calls :func:`fit_sample`: a
fixture of that name in a ``pytest_plugins`` module would clash with :mod:`tests.serve_fixtures`' one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main

from .conftest import CLEAN_PCAPS

CLEAN = [str(p) for p in CLEAN_PCAPS]  # the project's clean captures (not pcaps/intercepted.pcapng)


def run(*args: str) -> tuple[int, str, str]:
    """``tlsdetect ARGS``: exit code, stdout, stderr."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def fit_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean captures fitted with a learned mesh CA, as ``baselines/sample`` is."""
    out = tmp_path_factory.mktemp("b") / "sample"
    code, stdout, err = run("baseline", "fit", *CLEAN, "-o", str(out), "--no-progress", "--mesh-ca", "learn")
    assert code == 0, err
    assert "15 connections" in stdout
    assert "LEARNED - confirm" in stdout
    return out
