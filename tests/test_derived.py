"""Structures derived from a baseline: built once per baseline, rebuilt when its tables change, never stale."""

from __future__ import annotations

import gc
import json
import weakref

import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.derived import derived
from tlsdetect.detect.scoring import score
from tlsdetect.sinks.files import to_records

pytest_plugins = ["tests.detect_fixtures"]  # train, test_rows


class Owner:
    def __init__(self) -> None:
        self.table_ = pd.DataFrame({"x": [1, 2]})
        self.other_ = pd.DataFrame({"y": [3]})


def test_built_once_while_the_tables_are_the_same_objects() -> None:
    owner, builds = Owner(), []

    def build() -> int:
        builds.append(1)
        return int(owner.table_["x"].sum())

    assert derived(owner, "sum", ("table_",), build) == 3
    assert derived(owner, "sum", ("table_",), build) == 3
    assert len(builds) == 1
    owner.other_ = pd.DataFrame({"y": [4]})  # a table the entry does not read
    assert derived(owner, "sum", ("table_",), build) == 3
    assert len(builds) == 1


def test_a_replaced_table_rebuilds_the_entry() -> None:
    owner = Owner()
    assert derived(owner, "sum", ("table_",), lambda: int(owner.table_["x"].sum())) == 3
    owner.table_ = pd.DataFrame({"x": [10, 20]})
    assert derived(owner, "sum", ("table_",), lambda: int(owner.table_["x"].sum())) == 30
    del owner.table_  # a missing table is None: still a change
    assert derived(owner, "sum", ("table_",), lambda: -1) == -1


def test_entries_are_per_owner_and_per_name() -> None:
    a, b = Owner(), Owner()
    b.table_ = pd.DataFrame({"x": [5]})
    assert derived(a, "sum", ("table_",), lambda: int(a.table_["x"].sum())) == 3
    assert derived(b, "sum", ("table_",), lambda: int(b.table_["x"].sum())) == 5
    assert derived(a, "len", ("table_",), lambda: len(a.table_)) == 2


class Built:
    """A derived value that can be watched for being freed."""


def test_an_owner_dropped_takes_its_entries_with_it() -> None:
    owner = Owner()
    value = weakref.ref(derived(owner, "built", ("table_",), Built))
    gc.collect()
    assert value() is not None  # held by the entry while the owner lives
    del owner
    gc.collect()
    assert value() is None


def _scored(df: pd.DataFrame, b: Baseline) -> str:
    return json.dumps(to_records(score(df, b)), default=str, sort_keys=True)


def test_partial_fit_is_seen_by_the_next_score(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    # every third client is learned only by partial_fit: its rows change from "not in the baseline" to compared
    late = train["client_ip"].isin(train["client_ip"].unique()[::3]).to_numpy()
    first, second = train[~late], train[late]
    reused = Baseline(mesh_ca="learn").fit(first)
    before = _scored(test_rows, reused)  # fills the entries of ``reused``
    reused.partial_fit(second)
    fresh = Baseline(mesh_ca="learn").fit(first).partial_fit(second)
    after = _scored(test_rows, reused)
    assert after == _scored(test_rows, fresh)
    assert after != before  # the second half changed what the baseline knows (else the test proves nothing)
