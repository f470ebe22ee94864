"""Hello list columns as shared tuples: equal lists are one object, values unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect import lists

INT_CELLS = st.one_of(st.none(), st.lists(st.integers(0, 0xFFFF), max_size=6))
TEXT_CELLS = st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=4))


def _as_python(cells: np.ndarray) -> list[object]:
    return [None if c is None else list(c) for c in cells]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([None, [], [1], [1, 2], [2, 1], [0x0A0A, 4865]]) | INT_CELLS, max_size=40),
       st.integers(0, 5))
def test_from_arrow_ints_equal_and_shared(cells: list[list[int] | None], cut: int) -> None:
    arr = pa.array(cells, type=pa.list_(pa.int32())).slice(min(cut, len(cells)))  # a slice has an offset
    got = lists.from_arrow(arr)
    assert _as_python(got) == arr.to_pylist()
    assert all(isinstance(c, tuple) for c in got if c is not None)
    by_value: dict[tuple[int, ...], int] = {}
    for c in got:
        if c is not None:
            assert by_value.setdefault(c, id(c)) == id(c)  # equal lists: one object


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT_CELLS, max_size=30))
def test_from_arrow_texts_equal(cells: list[list[str | None] | None]) -> None:
    """Items with the separators and lengths inside them (``"1:a"``) never make two lists look equal."""
    arr = pa.array(cells, type=pa.list_(pa.string()))
    assert _as_python(lists.from_arrow(arr)) == cells


def test_from_arrow_framing_is_unambiguous() -> None:
    cells = [["a,b"], ["a", "b"], ["1:a"], ["", ""], [""], [], None, [None], ["a", None]]
    got = lists.from_arrow(pa.array(cells, type=pa.list_(pa.string())))
    assert _as_python(got) == cells
    assert len({id(c) for c in got if c is not None}) == 8  # all distinct


def test_from_arrow_chunked_and_all_null() -> None:
    kind = pa.list_(pa.int32())
    chunked = pa.chunked_array([pa.array([[1, 2]], kind), pa.array([[1, 2], None], kind)])
    got = lists.from_arrow(chunked)
    assert got[0] == (1, 2)
    assert got[0] is got[1]
    assert got[2] is None
    assert list(lists.from_arrow(pa.array([None, None], pa.list_(pa.int32())))) == [None, None]
    assert len(lists.from_arrow(pa.chunked_array([], pa.list_(pa.int32())))) == 0
    with pytest.raises(TypeError, match="not a list column"):
        lists.from_arrow(pa.array([1, 2]))


def test_shared_from_numpy_arrays_and_tuples() -> None:
    """Parquet's to_pandas and Spark's toPandas hand lists over as numpy arrays, one per row."""
    got = lists.shared([np.array([1, 2]), None, np.array([1, 2]), float("nan"), np.array([], dtype=np.int64)])
    assert list(got) == [(1, 2), None, (1, 2), None, ()]
    assert got[0] is got[2]
    tuples = lists.shared([(4865, 4866), None, (4865, 4866), ()])
    assert list(tuples) == [(4865, 4866), None, (4865, 4866), ()]
    assert tuples[0] is tuples[2]
    alpn = lists.shared([np.array(["6832"], dtype=object), np.array(["6832"], dtype=object)], item=pa.string())
    assert list(alpn) == [("6832",), ("6832",)]
    assert alpn[0] is alpn[1]
