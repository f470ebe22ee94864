"""The Spark tests' fixtures and helpers (a test module loads them with ``pytest_plugins``): a local
session, the shared samples, and rows made comparable between the Spark and the local path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from .conftest import SHARED, needs_shared

SAMPLES = SHARED / "samples"


needs_samples = needs_shared("samples/zeek", "samples/envoy/envoy_access.sample.jsonl")


KEY = ["conn_id", "client_ip", "client_port", "server_ip", "server_port", "_ns"]


def cell(v: Any) -> Any:
    """A cell as a comparable plain value (timestamps as nanoseconds, arrays as tuples, missing as None)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(cell(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, None if cell(x) is None else str(x)) for k, x in sorted(v.items()))
    if isinstance(v, pd.Timestamp):
        return v.value
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return v


def plain_frame(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``cols`` of ``df`` as plain values, whatever dtypes the Spark or the local path gave them."""
    out = pd.DataFrame({c: [cell(v) for v in df[c].astype(object)] for c in cols})
    return out


def sorted_rows(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """:func:`plain_frame` plus the exact time (``_ns``), sorted by :data:`KEY`: row order does not matter."""
    df = df.reset_index(drop=True).copy()
    df["_ns"] = [None if pd.isna(t) else pd.Timestamp(t).value for t in df["ts"]]
    out = plain_frame(df, [*cols, "_ns"])
    return out.sort_values(KEY, key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark session per test module (a module's last test may stop it: the CLI does)."""
    from tlsdetect.spark import session

    s = session("local[2]", driver_memory="1g", conf={"spark.sql.shuffle.partitions": "4"})
    yield s
    s.stop()
