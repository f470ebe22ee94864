"""The columnar JSON lines writer (:mod:`tlsdetect.sinks.jsonl`) writes byte for byte what the per-row writer
wrote (``json.dumps`` of a dict per row, kept as :func:`record_lines`), on real captures, on scored rows and on
generated frames of odd values; in blocks of any size."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, ROOT
from tlsdetect.readers.inputs import Inputs
from tlsdetect.sinks.jsonl import jsonl_blocks, record_lines


def _same(df: pd.DataFrame, block_rows: int = 3) -> None:
    want = "".join(record_lines(df))
    assert "".join(jsonl_blocks(df)) == want
    assert "".join(jsonl_blocks(df, block_rows)) == want


def _captures() -> list[Path]:
    found = sorted(PROJECT_PCAPS.glob("*.pcap*"))
    for shared in (REFERENCE, INTERCEPTION):
        found += sorted(shared.glob("*.pcap*")) if shared.is_dir() else []
    return found


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_every_capture_is_written_as_before(path: Path) -> None:
    df = Inputs([str(path)]).read_all()
    if len(df):
        _same(df)


def test_scored_rows_with_reasons_are_written_as_before() -> None:
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score

    df = Inputs([str(PROJECT_PCAPS)]).read_all()
    scored = score(df, Baseline.load(ROOT / "baselines" / "sample"))
    assert "reasons" in scored.columns
    assert scored["reasons"].map(len).gt(0).any()
    _same(scored, block_rows=7)


# --- generated frames: every dtype the writers meet, and the values that trip an encoder ------------------
_ODD = st.text(st.characters(codec=None), max_size=8) | st.sampled_from(
    ["", '"', "\\", "\\x{1b}", "\x00", "\x1f\x7f", "\u2028", "\ud800", "a\udcffb", "é", "\U0001f600"])
_ANY = st.one_of(
    st.none(), st.just(math.nan), _ODD, st.integers(-(2**70), 2**70), st.booleans(),
    st.sampled_from([0.0, -0.0, 1, 1.0, True]),
    st.floats(allow_nan=True), st.lists(st.integers(0, 2**16), max_size=3).map(tuple),
    st.lists(st.fixed_dictionaries({"signal": _ODD, "detail": st.none() | _ODD}), max_size=2),
)


@st.composite
def _frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    def col(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))
    shared = (0x1301, 0x1302)  # one tuple object on several rows, as the pcap reader broadcasts it
    ns = col(st.none() | st.integers(-(2**62), 2**62))
    return pd.DataFrame({
        "text": pd.Series(col(st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=6)),
                          dtype="string"),
        "obj": pd.Series(col(_ANY), dtype=object),
        "port": pd.Series(col(st.none() | st.integers(-(2**31), 2**31 - 1)), dtype="Int32"),
        "flag": pd.Series(col(st.none() | st.booleans()), dtype="boolean"),
        "score": pd.Series(col(st.floats(allow_nan=True)), dtype="float64"),
        "count": pd.Series(col(st.integers(-(2**63), 2**63 - 1)), dtype="int64"),
        "name": pd.Series(col(st.none() | st.sampled_from(["CN=a", "O=A\\, Inc", "\x1b[2J"])), dtype="category"),
        "ts": pd.to_datetime(pd.Series(ns, dtype="Int64"), unit="ns", utc=True),
        "naive": pd.to_datetime(pd.Series(ns, dtype="Int64"), unit="ns"),
        "hello": pd.Series(col(st.sampled_from([shared, (), None, (1,)])), dtype=object),
        "half": pd.Series(col(st.floats(width=32)), dtype="float32"),
    })


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames(), st.integers(1, 4))
def test_generated_frames_are_written_as_before(df: pd.DataFrame, block_rows: int) -> None:
    _same(df, block_rows)


@settings(max_examples=50, deadline=None)
@given(_frames())
def test_any_column_subset_and_order(df: pd.DataFrame) -> None:
    cols = list(df.columns)
    _same(df[cols[::-2]])
    _same(df[cols[:1]])


def test_values_that_compare_equal_but_print_apart_stay_apart() -> None:
    """``1 == 1.0 == True`` and ``0.0 == -0.0``: one code would print one of them for all."""
    df = pd.DataFrame({"o": pd.Series([1, 1.0, True, 0.0, -0.0, np.float64(-0.0)], dtype=object),
                       "f": [0.0, -0.0, 0.0, -0.0, 1.0, 1.0]})
    _same(df)
    lines = "".join(jsonl_blocks(df)).splitlines()
    assert lines[:3] == ['{"o":1,"f":0.0}', '{"o":1.0,"f":-0.0}', '{"o":true,"f":0.0}']


def test_frames_a_dict_would_change_go_the_per_row_way() -> None:
    """Repeated or non-text column names: the record dict decides, as it did."""
    rep = pd.DataFrame([[1, 2]], columns=["a", "a"])
    num = pd.DataFrame({0: ["x"], 1.5: [None]})
    none = pd.DataFrame(index=range(2))
    for df in (rep, num, none):
        _same(df)
    assert "".join(jsonl_blocks(rep)) == '{"a":2}\n'
    assert "".join(jsonl_blocks(none)) == "{}\n{}\n"


def test_unserialisable_values_fail_as_before() -> None:
    df = pd.DataFrame({"x": pd.Series([object()], dtype=object)})
    with pytest.raises(TypeError, match="not JSON serializable"):
        "".join(record_lines(df))
    with pytest.raises(TypeError, match="not JSON serializable"):
        "".join(jsonl_blocks(df))


def test_equal_tuples_of_other_element_types_print_apart() -> None:
    """Tuple texts are remembered by value only for tuples of plain ints: ``(1,) == (1.0,) == (True,)``."""
    df = pd.DataFrame({"t": pd.Series([(1, 2), (1.0, 2), (True, 2), (1, 2), (np.int64(1), 2)], dtype=object)})
    _same(df)
    assert "".join(jsonl_blocks(df)).splitlines() == [
        '{"t":[1,2]}', '{"t":[1.0,2]}', '{"t":[true,2]}', '{"t":[1,2]}', '{"t":[1,2]}']
