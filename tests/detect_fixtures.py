"""The detection tests' fixtures (a test module loads them with ``pytest_plugins``): a population of the
project's real hellos, the baseline fitted on it, and the same clients' later traffic.

Module-scoped: each signal test module fits its own baseline once, so a test that changes rows never
sees another module's.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline

from .detect_data import later, population


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=12)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline(mesh_ca="learn").fit(train)  # the tests of mesh signals use the mesh CA it learns


@pytest.fixture(scope="module")
def test_rows(train: pd.DataFrame) -> pd.DataFrame:
    return later(train)
