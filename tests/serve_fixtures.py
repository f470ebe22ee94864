"""The REST API tests' fixtures (a test module loads them with ``pytest_plugins``): baselines fitted from
the project's clean captures.

One baseline is fitted on the first rows only, so scoring every row gives ok, suspicious and (with a
known interception JA3) intercepted rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.readers.inputs import Inputs

from .conftest import CLEAN_PCAPS
from .serve_support import ESET_JA3


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def captures() -> pd.DataFrame:
    return Inputs([str(p) for p in CLEAN_PCAPS]).read_all()


@pytest.fixture(scope="session")
def rows(captures: pd.DataFrame) -> pd.DataFrame:
    """Every captured connection, plus one whose JA3/JA3N is a known interception product's."""
    x = captures.iloc[[0]].copy()
    x["ja3"] = ESET_JA3
    x["ja3n"] = ESET_JA3
    return pd.concat([captures, x], ignore_index=True)


@pytest.fixture(scope="session")
def baseline_dir(captures: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "current"
    Baseline().fit(captures.iloc[:8]).save(out)
    return out


@pytest.fixture
def own_baseline(captures: pd.DataFrame, tmp_path: Path) -> Path:
    out = tmp_path / "baseline"
    Baseline().fit(captures.iloc[:8]).save(out)
    return out
