"""Evidence: the noisy-OR score, reasons in weight order, and every evidence value as text or null."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.detect.evidence import SIGNALS, Evidence, evidence_text, text_of, top_list


def test_signal_table_is_well_formed() -> None:
    for code, s in SIGNALS.items():
        assert s.code == code
        assert 0 <= s.weight <= 100
        assert s.meaning
        assert s.weight > 0 or "informational" in s.meaning  # a weight-0 signal says it only informs
        assert not (s.supporting and s.weight == 0)  # supporting evidence must add something


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(SIGNALS)), st.lists(st.booleans(), min_size=4, max_size=4)),
                max_size=5))
def test_score_is_the_noisy_or_of_the_weights_that_fired(fired: list[tuple[str, list[bool]]]) -> None:
    ev = Evidence(4)
    for code, mask in fired:
        ev.add(code, np.array(mask), "because")
    want = []
    counted = []
    for row in range(4):
        # supporting signals count only where a non-supporting signal with a weight fired
        primary = any(mask[row] and not SIGNALS[code].supporting and SIGNALS[code].weight > 0
                      for code, mask in fired)
        here = [code for code, mask in fired if mask[row] and (primary or not SIGNALS[code].supporting)]
        survive = 1.0
        for code in here:
            survive *= 1 - SIGNALS[code].weight / 100
        want.append(100 * (1 - survive))
        counted.append(here)
    assert ev.scores().tolist() == pytest.approx(want, abs=0.05 + 1e-9)  # rounded to one decimal
    reasons = ev.reasons()
    for row in range(4):
        got = [r["code"] for r in reasons[row]]
        assert sorted(got) == sorted(counted[row])
        weights = [SIGNALS[c].weight for c in got]
        assert weights == sorted(weights, reverse=True)  # strongest first


def test_reasons_hold_text_for_fired_rows_only() -> None:
    ev = Evidence(3)
    ev.add("tls_downgrade", np.array([False, True, False]), lambda i: [f"row {j}" for j in i],
           expected=pd.Series([1.0, 12.0, 3.0]), observed=np.array([None, 0.5, None], dtype=object), weight=10.0)
    reasons = ev.reasons()
    assert reasons[0] == () and reasons[2] == ()  # noqa: PT018
    assert reasons[1] == [{"code": "tls_downgrade", "detail": "row 1", "expected": "12", "observed": "0.5"}]
    assert set(reasons[1][0]) == set(schema.REASON_FIELDS)
    assert ev.scores().tolist() == [0.0, 10.0, 0.0]


def test_supporting_evidence_counts_only_beside_other_evidence() -> None:
    assert SIGNALS["model_outlier"].supporting
    ev = Evidence(4)
    ev.add("model_outlier", np.array([True, True, True, False]), "unlike the population",
           alone=np.array([False, False, True, False]))
    ev.add("weak_ciphers", np.array([False, True, False, True]), "weak")
    ev.add("resumed_no_certificate", np.array([True, False, False, False]), "resumed")  # weight 0: not evidence
    # row 0: the model and an informational reason only -> nothing counts, the model's reason is dropped;
    # row 1: beside weak_ciphers it adds 30 (noisy-OR: 1 - 0.6 * 0.7); row 2: named alone -> it counts;
    # row 3: weak_ciphers alone
    assert ev.scores().tolist() == [0.0, 58.0, 30.0, 40.0]
    codes = [[r["code"] for r in rs] for rs in ev.reasons()]
    assert codes == [["resumed_no_certificate"], ["weak_ciphers", "model_outlier"], ["model_outlier"],
                     ["weak_ciphers"]]
    assert set(ev.fired()["code"]) == {"resumed_no_certificate", "weak_ciphers", "model_outlier"}
    assert sorted(ev.fired().query("code == 'model_outlier'")["row"]) == [1, 2]


def test_supporting_evidence_with_a_weight_array() -> None:
    ev = Evidence(3)
    ev.add("model_outlier", np.array([True, True, True]), "x", weight=np.array([10.0, 50.0, 90.0]))
    ev.add("tls_downgrade", np.array([False, True, True]), "y", weight=np.array([0.0, 0.0, 20.0]))
    # row 1's only other signal weighs 0: it is not evidence, so the model's 50 does not count either
    assert ev.scores().tolist() == [0.0, 0.0, 92.0]


def test_text_of_each_kind() -> None:
    assert text_of(None) is None
    assert text_of(pd.NA) is None
    assert text_of(float("nan")) is None
    assert text_of(2.0) == "2"
    assert text_of(np.float64(0.731)) == "0.731"
    assert text_of(np.int64(7)) == "7"
    assert text_of("x") == "x"
    values = np.array([2, 2.0, "a", None, [1, 2]], dtype=object)
    assert evidence_text(values) == ["2", "2", "a", None, "[1, 2]"]


def test_top_list_orders_by_count_and_keeps_k() -> None:
    frame = pd.DataFrame({"c": ["a", "a", "a", "a", "b"], "v": ["w", "x", "y", "z", "q"], "n": [1, 5, 3, 2, 9]})
    assert top_list(frame, "c", "v", "n") == {"a": "x (5), y (3), z (2)", "b": "q (9)"}
    assert top_list(frame.iloc[:0], "c", "v", "n") == {}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["k1", "k2", "k3", "k10"]), st.sampled_from(["u", "v", "w", "x"]),
                          st.integers(0, 4)), max_size=25), st.integers(1, 4), st.booleans())
def test_top_list_equals_a_plain_ranking(rows: list[tuple[str, str, int]], k: int, category: bool) -> None:
    """Per key (in key order), its k largest counts, ties in row order, as 'v (n)' joined by ', '."""
    frame = pd.DataFrame(rows, columns=["c", "v", "n"])
    if category:
        frame["c"] = frame["c"].astype("category")
    want = {}
    for key in sorted({r[0] for r in rows}):
        mine = sorted((r for r in rows if r[0] == key), key=lambda r: -r[2])[:k]  # sorted() is stable
        want[key] = ", ".join(f"{v} ({n})" for _, v, n in mine)
    got = top_list(frame, "c", "v", "n", k)
    assert got == want
    assert list(got) == list(want)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.just(pd.NA), st.just(float("nan")), st.text(max_size=3)), max_size=15))
def test_evidence_text_of_text_keeps_each_string_and_nulls_none(values: list[object]) -> None:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    assert evidence_text(arr) == [text_of(v) for v in values]


def test_reasons_keep_the_evidence_objects_given() -> None:
    """A detail given once is one object in every fired row's reason (no Python string per row), and a text
    computed per row is that text."""
    detail = "".join(["shared ", "detail"])  # a str object built at run time, not an interned constant
    ev = Evidence(4)
    ev.add("tls_downgrade", np.array([True, True, False, True]), detail,
           observed=lambda i: [f"seen {j}" for j in i], weight=10.0)
    reasons = ev.reasons()
    details = [reasons[i][0]["detail"] for i in (0, 1, 3)]
    assert details == ["shared detail"] * 3
    assert all(d is detail for d in details)
    assert [reasons[i][0]["observed"] for i in (0, 1, 3)] == ["seen 0", "seen 1", "seen 3"]
    assert reasons[2] == ()
