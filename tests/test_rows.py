"""Rows joined from per-column fragments (:mod:`tlsdetect.sinks.rows`): merging neighbour columns into runs
never changes a row's text, and a run stays within its bound of distinct combinations."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.sinks.rows import Column, join_rows, merge_runs


@st.composite
def _columns(draw: st.DrawFn) -> tuple[list[Column], int]:
    rows = draw(st.integers(0, 40))
    cols = []
    for _ in range(draw(st.integers(1, 6))):
        texts = np.array(draw(st.lists(st.text(max_size=3), min_size=1, max_size=12)), dtype=object)
        codes = np.array(draw(st.lists(st.integers(0, len(texts) - 1), min_size=rows, max_size=rows)), dtype=np.int64)
        cols.append((codes, texts))
    return cols, rows


def _plain_rows(cols: list[Column], rows: int) -> str:
    return "".join("".join(texts[codes[i]] for codes, texts in cols) for i in range(rows))


@given(_columns(), st.integers(1, 30), st.integers(1, 50))
def test_merged_runs_keep_every_row(data: tuple[list[Column], int], limit: int, block: int) -> None:
    cols, rows = data
    runs = merge_runs(cols, limit)
    assert all(len(texts) <= max(limit, *(len(t) for _, t in cols)) for _, texts in runs)
    assert _plain_rows(runs, rows) == _plain_rows(cols, rows)
    assert "".join(join_rows(cols, rows, block)) == _plain_rows(cols, rows)


def test_constant_columns_merge_and_distinct_ones_stop_a_run() -> None:
    n = 100
    const = (np.zeros(n, dtype=np.int64), np.array(["a"], dtype=object))
    few = (np.arange(n) % 3, np.array(["x", "y", "z"], dtype=object))
    ids = (np.arange(n), np.array([f"{i}," for i in range(n)], dtype=object))
    runs = merge_runs([const, few, ids, const, few], limit=10)
    assert [len(t) for _, t in runs] == [3, 100, 3]
    assert runs[0][1].tolist() == ["ax", "ay", "az"]
