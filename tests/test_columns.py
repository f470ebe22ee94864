"""Distinct values as codes: positions, pair membership and per-row broadcasting against plain Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.detect.columns import Unique, as_category, codes_of, combination_codes, pair_in, positions, texts_at

SETTINGS = settings(max_examples=150, deadline=None)
_VAL = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))


@SETTINGS
@given(st.lists(_VAL, max_size=20), st.lists(st.sampled_from(["a", "b", "c", "x"]), unique=True, max_size=4),
       st.booleans())
def test_positions_and_rows_equal_a_dict_lookup(values: list[str | None], index: list[str], category: bool) -> None:
    s = pd.Series(values, dtype="string")
    if category:
        s = s.astype("category")
    where = {v: i for i, v in enumerate(index)}
    assert positions(s, pd.Index(index)).tolist() == [where.get(v, -1) if v is not None else -1 for v in values]
    u = Unique(s)
    upper = u.rows(u.values.str.upper().to_numpy(dtype=object))
    assert list(upper) == [None if v is None else v.upper() for v in values]
    # the Arrow path gives the same texts; a distinct value mapped to None stays missing
    mapped = u.values.str.upper().where(u.values != "b", None).to_numpy(dtype=object)
    strings = pd.Series(u.strings(mapped))
    assert str(strings.dtype) == "string"
    assert [None if pd.isna(x) else x for x in strings] == [None if v in (None, "b") else v.upper() for v in values]
    assert [x or "" for x in codes_of(u, u.values).at_rows(np.arange(len(values)))] == [v or "" for v in values]
    assert texts_at(s, np.arange(len(values))).tolist() == [v or "" for v in values]


@SETTINGS
@given(st.lists(st.tuples(st.integers(-1, 5), st.integers(-1, 5)), max_size=20),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=10))
def test_pair_in_equals_set_membership(rows: list[tuple[int, int]], known: list[tuple[int, int]]) -> None:
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=np.int64)
    pa_ = np.array([k[0] for k in known], dtype=np.int64)
    pb = np.array([k[1] for k in known], dtype=np.int64)
    want = [x >= 0 and y >= 0 and (x, y) in set(known) for x, y in rows]
    assert pair_in(a, b, pa_, pb, 6).tolist() == want


def test_a_categorical_with_unused_categories_is_renumbered() -> None:
    s = pd.Series(pd.Categorical(["b", None, "b"], categories=["a", "b", "c"]))
    u = Unique(s)
    assert u.values.tolist() == ["b"]
    assert u.codes.tolist() == [0, -1, 0]


def test_as_category_keeps_few_texts_as_codes() -> None:
    cat = as_category(np.array(["x", "y", "x", None], dtype=object))
    assert list(cat.categories) == ["x", "y"]
    assert [None if pd.isna(v) else v for v in cat] == ["x", "y", "x", None]


def _plain_text(v: object) -> str:
    return "" if v is None or v is pd.NA else str(v)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.just(pd.NA), st.just(float("nan")), st.text(max_size=3),
                          st.integers(-3, 3), st.floats(allow_nan=False, width=32)), max_size=15),
       st.booleans())
def test_texts_at_renders_each_value_as_str_of_it(values: list[object], texts_only: bool) -> None:
    """Text columns keep their strings (missing -> "", NaN -> "nan"); other values are str() of each."""
    if texts_only:
        values = [v if v is None or v is pd.NA or isinstance(v, str) or (isinstance(v, float) and np.isnan(v))
                  else str(v) for v in values]
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    idx = np.arange(len(values))[::-1].copy()
    want = [_plain_text(values[i]) for i in idx]
    assert texts_at(arr, idx).tolist() == want
    assert texts_at(pd.Series(arr, dtype=object), idx).tolist() == want


def test_texts_at_of_numbers_and_codes() -> None:
    assert texts_at(np.array([0.731, 2.0, np.nan]), np.array([2, 0, 1])).tolist() == ["nan", "0.731", "2.0"]
    u = Unique(pd.Series(["b", None, "a", "b"], dtype="string"))
    assert texts_at(codes_of(u, u.values.str.upper()), np.array([3, 1, 2])).tolist() == ["B", "", "A"]


@SETTINGS
@given(st.lists(st.tuples(st.integers(-1, 3), st.integers(-1, 2), st.integers(-1, 65535)), min_size=1, max_size=40))
def test_combination_codes_number_each_distinct_tuple_by_first_appearance(rows: list[tuple[int, int, int]]) -> None:
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)]
    code, first = combination_codes(cols, [5, 4, 65_537])
    order = list(dict.fromkeys(rows))  # distinct tuples, first appearance first
    assert code.tolist() == [order.index(r) for r in rows]
    assert first.tolist() == [rows.index(t) for t in order]
