"""Scoring: each signal fires for what it was planted for, with evidence; clean traffic stays ok."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import SIGNALS
from tlsdetect.detect.scoring import SCORE_COLUMNS, VERDICTS, score, summarize

from .detect_data import with_issuer

pytest_plugins = ["tests.detect_fixtures"]  # train, fitted, test_rows


def test_clean_held_out_traffic_is_ok(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    out = score(test_rows, fitted)
    assert set(SCORE_COLUMNS) <= set(out.columns)
    assert (out["verdict"] == "ok").all(), out.loc[out["verdict"] != "ok", ["client_id", "reasons"]]
    assert (out["score"] == 0).all()
    assert out["compared"].str.startswith("client baseline").all()


def test_every_flagged_row_has_reasons_with_evidence(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = with_issuer(test_rows, [0, 1], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    flagged = out[out["verdict"] != "ok"]
    assert len(flagged) == 2
    for reasons in flagged["reasons"]:
        assert reasons
        for r in reasons:
            assert set(r) == {"code", "detail", "expected", "observed"}
            assert r["code"] in SIGNALS
            assert r["detail"]
            assert "<NA>" not in r["detail"]
            assert "dtype" not in r["detail"]


def test_interception_captures_are_caught(fitted: Baseline) -> None:
    from .conftest import INTERCEPTION, require_shared

    require_shared("pcaps/interception/SOURCES.md")
    from tlsdetect.readers.inputs import Inputs

    out = score(Inputs([str(INTERCEPTION)]).read_all(), fitted)
    assert len(out) >= 5
    assert (out["verdict"] == "intercepted").all()
    assert out["known_product"].notna().all()


def test_summary(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    out = score(with_issuer(test_rows, [0, 1, 2], "CN=mitmproxy,O=mitmproxy"), fitted)
    s = summarize(out)
    assert s["verdicts"] == {"ok": len(out) - 3, "suspicious": 0, "intercepted": 3}
    assert s["top_reasons"]["interception_ca"] == 3
    assert sum(s["top_flagged_clients"].values()) == 3


def test_no_baseline_scores_with_knowledge_only(test_rows: pd.DataFrame) -> None:
    out = score(with_issuer(test_rows, [0], "CN=mitmproxy,O=mitmproxy"), None)
    assert out.iloc[0]["verdict"] == "intercepted"
    assert out["compared"].str.contains("no baseline").all()


_OPTIONAL = ["user_agent", "server_issuer", "peer_issuer", "ja3n", "ja4", "ja3", "ch_ciphers", "ts", "sni"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mix_of_missing_columns_and_values_scores(data: st.DataObject, fitted: Baseline,
                                                      test_rows: pd.DataFrame) -> None:
    """Sources differ in what they carry: scoring never crashes and keeps its contract."""
    n = data.draw(st.integers(0, 30))
    df = test_rows.sample(n=n, random_state=data.draw(st.integers(0, 1000)), replace=True).reset_index(drop=True)
    for col in data.draw(st.lists(st.sampled_from(_OPTIONAL), unique=True)):
        if data.draw(st.booleans()):
            df = df.drop(columns=col)
        else:
            df[col] = pd.Series([None] * len(df), dtype=df[col].dtype if df[col].dtype != object else object)
    out = score(df, fitted)
    assert len(out) == n
    assert set(out["verdict"]) <= set(VERDICTS)
    assert all(v == "ok" or bool(r) for v, r in zip(out["verdict"], out["reasons"], strict=True))
    assert ((out["score"] >= 0) & (out["score"] <= 100)).all()


def test_scoring_leaves_the_input_table_alone(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    before = test_rows.copy()
    score(test_rows, fitted)
    pd.testing.assert_frame_equal(test_rows, before)


def _with_weak_cipher(df: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    """Rows ``rows`` also offer RC4-SHA (0x0005), a cipher no baseline hello offered (fingerprints recomputed)."""
    from tlsdetect.fingerprint import add_fingerprints

    out = df.copy()
    values = out["ch_ciphers"].to_numpy(dtype=object, copy=True)
    for r in rows:
        values[r] = (5, *values[r])
    out["ch_ciphers"] = pd.Series(values, index=out.index, dtype=object)
    return add_fingerprints(out)


def test_reason_fields_are_text_or_null_numbers_included(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    """issue 14 item 1: ``expected``/``observed`` mixed numbers and text (Parquet failed); now one type: str or None."""
    df = with_issuer(_with_weak_cipher(test_rows, [0, 1]), [2], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    reasons = [r for rs in out["reasons"] for r in rs]
    assert {"weak_ciphers", "interception_ca"} <= {r["code"] for r in reasons}
    for r in reasons:
        assert list(r) == ["code", "detail", "expected", "observed"]
        assert isinstance(r["code"], str)
        assert isinstance(r["detail"], str)
        assert all(r[f] is None or isinstance(r[f], str) for f in ("expected", "observed")), r
    weak = [r for r in out.iloc[0]["reasons"] if r["code"] == "weak_ciphers"]
    assert weak
    assert weak[0]["observed"] == "1"  # a count, written once as decimal text


def test_flagged_reasons_round_trip_through_parquet(fitted: Baseline, test_rows: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    """issue 14 item 1: Parquet of flagged rows (numbers and text in the evidence) reads back as written."""
    import pyarrow.parquet as pq

    import tlsdetect.sinks.files as sinks
    from tlsdetect import schema

    df = with_issuer(_with_weak_cipher(test_rows, [0, 1]), [2], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    assert (out["verdict"] != "ok").sum() >= 3
    path = tmp_path / "scored.parquet"
    sinks.write(out[["ts", "verdict", "reasons"]], "parquet", path=str(path))
    table = pq.read_table(path)
    assert table.schema.field("reasons").type == schema.REASONS_ARROW
    back = table.column("reasons").to_pylist()
    assert back == [list(rs) for rs in out["reasons"]]


def test_summary_reads_flagged_rows_only_and_matches_a_plain_count(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    """summarize counts the verdict codes and ranks the flagged rows' reasons and clients: the same answer as
    counting over the whole table, for score()'s own categorical verdicts and for plain text ones."""
    out = score(with_issuer(test_rows, [0, 1, 2], "CN=mitmproxy,O=mitmproxy"), fitted)
    flagged = out[out["verdict"] != "ok"]
    codes = pd.Series([r["code"] for rs in flagged["reasons"] for r in rs], dtype="string")
    want = {
        "connections": len(out),
        "verdicts": {v: int((out["verdict"] == v).sum()) for v in VERDICTS},
        "top_reasons": {str(k): int(v) for k, v in codes.value_counts().head(5).items()},
        "top_flagged_clients": {str(k): int(v) for k, v in flagged["client_id"].value_counts().head(5).items()},
    }
    assert summarize(out) == want
    plain = out.assign(verdict=out["verdict"].astype(object))
    assert summarize(plain) == want
    clean = score(test_rows.iloc[:1], fitted)
    assert summarize(clean) == {"connections": 1, "verdicts": {"ok": 1, "suspicious": 0, "intercepted": 0},
                                "top_reasons": {}, "top_flagged_clients": {}}


def test_one_row_scores_as_it_does_inside_a_batch(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    """The fixed-cost cuts (issue 18 #15) take no size-dependent path: each row scored alone gets the score,
    verdict and reasons it gets in the whole batch (rows whose signals compare rows with each other, like
    convergence and resumption, excepted: none fire here)."""
    df = with_issuer(test_rows, [0, 3], "CN=mitmproxy,O=mitmproxy")
    whole = score(df, fitted)
    assert not {r["code"] for rs in whole["reasons"] for r in rs} & {"fingerprint_convergence",
                                                                     "resumed_intercepted_session"}
    for i in range(min(len(df), 12)):
        one = score(df.iloc[[i]], fitted)
        for col in ("client_id", "known_product", "score", "verdict", "compared"):
            assert one[col].iloc[0] == whole[col].iloc[i] or (pd.isna(one[col].iloc[0]) and pd.isna(whole[col].iloc[i]))
        assert one["reasons"].iloc[0] == whole["reasons"].iloc[i]
