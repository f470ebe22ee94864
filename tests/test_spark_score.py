"""Scoring on Spark (:mod:`tlsdetect.spark.score`) gives the local rows; the whole pipeline is in ``test_spark.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.scoring import score
from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS as PCAPS
from .spark_fixtures import KEY, SAMPLES, needs_samples
from .spark_fixtures import sorted_rows as _rows

pytest_plugins = ["tests.spark_fixtures"]  # spark


@pytest.mark.slow
@needs_samples
def test_spark_score_new_fingerprints_equal_local(spark: Any, tmp_path: Path) -> None:
    """Rows whose JA4 the baseline never saw take the (hour, JA4) path; still the local rows."""
    from tlsdetect.spark import read_connections, score_connections
    from tlsdetect.spark.schema import from_spark_frame

    Baseline().fit(Inputs([str(PCAPS)]).read_all()).save(tmp_path / "b")
    b = Baseline.load(tmp_path / "b")
    paths = [str(SAMPLES / "zeek"), str(SAMPLES / "envoy" / "envoy_access.sample.jsonl")]
    local = score(Inputs(paths).read_all(), b)
    known = set(b.fingerprints_["value"])
    assert (local["ja4"].notna() & ~local["ja4"].isin(known)).any()
    got = from_spark_frame(score_connections(spark, read_connections(spark, paths), tmp_path / "b").toPandas())
    for c in ("issuer_class", "known_product", "verdict", "compared"):
        local[c] = local[c].astype(object)
    extra = ["client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared"]
    pd.testing.assert_frame_equal(_rows(got, [*KEY[:-1], *extra]), _rows(local, [*KEY[:-1], *extra]))
