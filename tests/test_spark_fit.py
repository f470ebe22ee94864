"""Fitting on Spark (:mod:`tlsdetect.spark.fit`) learns the local fit's baseline, with any options; the default
fit over read, fit and score is compared end to end in ``test_spark.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_tables import TABLES
from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS as PCAPS

pytest_plugins = ["tests.spark_fixtures"]  # spark


def test_aggregates_come_back_as_utc_times_and_int64_counts() -> None:
    """Spark hands first/last seen over as exact nanoseconds (int64) and counts as int32 or int64."""
    from tlsdetect.spark.fit import _times

    ns = [0, 1_454_006_230_545_976_123]
    df = pd.DataFrame({"first_seen": np.array(ns, dtype=np.int64), "count": np.array([1, 2], dtype=np.int32)})
    out = _times(df)
    assert str(out["first_seen"].dtype) == "datetime64[ns, UTC]"
    assert [t.value for t in out["first_seen"]] == ns
    assert out["count"].dtype == np.int64


@pytest.mark.slow
@pytest.mark.parametrize(("client_key", "mesh_ca", "model"), [("ua", "learn", False), ("server_ip", None, True)])
def test_fit_with_options_equals_local(spark: Any, tmp_path: Path, client_key: str, mesh_ca: str | None,
                                       model: bool) -> None:
    """Other client keys, a learned mesh CA and no hello model: still the local fit's tables and summary."""
    from tlsdetect.spark import fit_baseline, read_connections

    fit_baseline(read_connections(spark, [str(PCAPS)]), client_key=client_key, mesh_ca=mesh_ca,
                 model=model).save(tmp_path / "spark")
    Baseline(client_key=client_key, mesh_ca=mesh_ca, model=model).fit(Inputs([str(PCAPS)]).read_all()).save(
        tmp_path / "local")
    a, b = Baseline.load(tmp_path / "spark"), Baseline.load(tmp_path / "local")
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, f"{name}_"), getattr(b, f"{name}_"), obj=name)
    assert a.model_ is None if not model else a.model_ is not None
    assert a.summary() == b.summary()


@pytest.mark.slow
def test_fit_of_no_rows_is_the_local_error(spark: Any) -> None:
    from tlsdetect.spark import fit_baseline, read_connections

    with pytest.raises(ValueError, match="no connections to learn from"):
        Baseline().fit(Inputs([str(PCAPS)]).read_all().iloc[:0])
    with pytest.raises(ValueError, match="no connections to learn from"):
        fit_baseline(read_connections(spark, [str(PCAPS)]).limit(0))
