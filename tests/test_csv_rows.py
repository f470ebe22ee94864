"""The columnar CSV writer (:mod:`tlsdetect.sinks.csv_rows`) writes byte for byte what pandas wrote over the
whole frame (kept as :func:`write_csv_whole`), wire text escaped the same way, on real captures, on scored
rows and on generated frames of odd values; in blocks of any size, with or without the header."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, ROOT
from tests.test_jsonl import _captures, _frames
from tlsdetect.readers.inputs import Inputs
from tlsdetect.sinks.csv_rows import csv_blocks, write_csv_whole


def _same(df: pd.DataFrame, block_rows: int = 3) -> None:
    for header in (True, False):
        buf = io.StringIO()
        write_csv_whole(df, buf, header=header)
        want = buf.getvalue()
        assert "".join(csv_blocks(df, header=header)) == want
        assert "".join(csv_blocks(df, header=header, block_rows=block_rows)) == want


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_every_capture_is_written_as_before(path: Path) -> None:
    assert {PROJECT_PCAPS, REFERENCE, INTERCEPTION} >= {path.parent}
    _same(Inputs([str(path)]).read_all())


def test_scored_rows_with_reasons_are_written_as_before() -> None:
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score

    scored = score(Inputs([str(PROJECT_PCAPS)]).read_all(), Baseline.load(ROOT / "baselines" / "sample"))
    assert scored["reasons"].map(len).gt(0).any()
    _same(scored, block_rows=7)


def _utf8(df: pd.DataFrame) -> pd.DataFrame:
    """Lone surrogates out of the object column: an object column of text holding one crashes
    ``escape.escape_series`` (its ``isin`` builds an Arrow string index), before either writer runs."""
    out = df.copy()
    out["obj"] = out["obj"].map(lambda v: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                                if isinstance(v, str) else v)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames().map(_utf8), st.integers(1, 4))
def test_generated_frames_are_written_as_before(df: pd.DataFrame, block_rows: int) -> None:
    _same(df.drop(columns=["naive"]), block_rows)  # naive times: pandas formats them per block (below)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames().map(_utf8))
def test_single_columns_and_any_order(df: pd.DataFrame) -> None:
    """A row of one empty cell is written ``""`` (else it reads as no row): per column as pandas does."""
    for col in df.columns:
        _same(df[[col]])
    _same(df[list(df.columns)[::-3]])


def test_hostile_names_escaped_and_formula_guarded_as_before() -> None:
    values = ["=cmd|' /C calc'!A0", "a\rb", "x\ny", 'q"uote', "c,omma", "", None, "\u202e", "-2+3", "\\x{1b}"]
    df = pd.DataFrame({"sni": pd.Series(values, dtype="string"), "n": range(len(values)),
                       "obj": pd.Series(values, dtype=object), "cat": pd.Series(values, dtype="category")})
    _same(df)
    text = "".join(csv_blocks(df))
    assert "\r" not in text
    assert text.count("\n") == 1 + len(values)


def test_odd_frames_go_through_pandas_whole() -> None:
    days = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02"]))  # naive dates: pandas drops the time for all
    for df in (pd.DataFrame({"d": days, "x": [1, 2]}), pd.DataFrame({0: ["x"], 1: [np.nan]}),
               pd.DataFrame(index=range(2))):
        _same(df)
    twice = pd.DataFrame([[1, 2]], columns=["a", "a"])  # a repeated name fails as it did, in pandas
    with pytest.raises(AttributeError):
        write_csv_whole(twice, io.StringIO())
    with pytest.raises(AttributeError):
        "".join(csv_blocks(twice))
    assert "".join(csv_blocks(pd.DataFrame({"d": days}))) == "d\n2020-01-01\n2020-01-02\n"


def test_equal_tuples_of_other_element_types_print_apart() -> None:
    df = pd.DataFrame({"t": pd.Series([(1, 2), (1.0, 2), (True, 2), (1, 2)], dtype=object), "n": range(4)})
    _same(df)
    assert "".join(csv_blocks(df)).splitlines() == [
        "t,n", '"[1, 2]",0', '"[1.0, 2]",1', '"[true, 2]",2', '"[1, 2]",3']
