"""A column as codes into its distinct values (:mod:`tlsdetect.sinks.distinct`): every row's value comes back
as iterating the column yields it, and values that print apart never share a code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.sinks.distinct import distinct


def _same(a: Any, b: Any) -> bool:
    """Identical for a writer: same type and same text (so ``0.0`` and ``-0.0``, ``1`` and ``True`` differ);
    every missing value (None, NaN, NA) is written as missing."""
    missing = [x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) for x in (a, b)]
    return all(missing) or (type(a) is type(b) and repr(a) == repr(b))


def _check(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
    codes, values = distinct(s)
    assert len(codes) == len(s)
    rows = list(s)
    assert all(_same(values[c], v) for c, v in zip(codes, rows, strict=True))
    return codes, values


@pytest.mark.parametrize("dtype", ["string", "Int32", "boolean", "Float64", "category", "object"])
def test_missing_is_one_value_of_its_own(dtype: str) -> None:
    raw = {"Int32": [1, None, 1], "boolean": [True, None, True], "Float64": [0.5, None, 0.5]}.get(
        dtype, ["a", None, "a"])
    codes, values = _check(pd.Series(raw, dtype=dtype))
    assert codes.tolist() == [0, 1, 0]
    assert len(values) == 2


def test_equal_values_that_print_apart_keep_their_own_codes() -> None:
    codes, _values = _check(pd.Series([1, 1.0, True, 0.0, -0.0, 1], dtype=object))
    assert codes.tolist() == [0, 1, 2, 3, 4, 0]
    codes, _ = _check(pd.Series([0.0, -0.0, np.nan, np.nan, 0.0]))
    assert codes.tolist()[:2] == [0, 1]
    assert codes[0] == codes[4]
    codes, _ = _check(pd.Series([0.0, -0.0, None], dtype="Float64"))
    assert len(set(codes.tolist())) == 3


def test_objects_are_one_value_per_object() -> None:
    """The pcap reader's shared hello tuples cost one format each; equal tuples that are other objects are
    formatted again (never wrongly merged)."""
    shared = (1, 2)
    codes, values = _check(pd.Series([shared, shared, (1, 2), None, shared], dtype=object))
    assert values[0] is shared
    assert codes.tolist()[:2] == [0, 0]
    assert codes[4] == 0


def test_unknown_dtypes_are_a_value_per_row() -> None:
    s = pd.Series(pd.period_range("2020-01", periods=3, freq="M"))
    codes, _values = _check(pd.concat([s, s], ignore_index=True))
    assert codes.tolist() == list(range(6))


@given(st.lists(st.one_of(st.none(), st.text(max_size=3), st.integers(-3, 3), st.floats(), st.booleans())))
def test_any_object_column(values: list[Any]) -> None:
    _check(pd.Series(values, dtype=object))


@given(st.lists(st.floats(width=32)), st.sampled_from(["float32", "float64"]))
def test_any_float_column(values: list[float], dtype: str) -> None:
    _check(pd.Series(values, dtype=dtype))
