"""Population signals: the hello model's outliers, User-Agent families, Chromium without GREASE."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.scoring import score

from .detect_data import codes, stack_of

pytest_plugins = ["tests.detect_fixtures"]  # train, fitted, test_rows


def _client_rows(df: pd.DataFrame, stack: str, version: str) -> np.ndarray:
    mask = (stack_of(df) == stack) & (df["ja4"].str.slice(1, 3) == version)
    return np.flatnonzero(mask.to_numpy())


def test_user_agent_mismatch_and_chromium_without_grease(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    def with_ua(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        ua = np.where(stack_of(df) == "python", "python-requests/2.32", "curl/8.5.0")
        out["user_agent"] = pd.array(ua, dtype="string")
        return out

    b = Baseline(model=False).fit(with_ua(train))
    df = with_ua(test_rows)
    rows = _client_rows(df, "python", "13")[:1]
    df.loc[rows[0], "user_agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
    out = score(df, b)
    got = codes(out.iloc[rows[0]])
    assert {"ua_fingerprint_mismatch", "browser_without_grease"} <= got
    assert out.iloc[rows[0]]["verdict"] == "intercepted"
    assert (out.drop(index=rows)["verdict"] == "ok").all()


def test_model_flags_a_hello_unlike_the_population(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    from .conftest import INTERCEPTION, require_shared

    require_shared("pcaps/interception/SOURCES.md")
    from tlsdetect.readers.inputs import Inputs

    b = Baseline().fit(train)
    odd = Inputs([str(INTERCEPTION)]).read_all()
    out = score(pd.concat([test_rows, odd], ignore_index=True), b)
    flagged = out["reasons"].map(lambda rs: "model_outlier" in {r["code"] for r in rs}).to_numpy()
    assert flagged[len(test_rows):].all()
    assert not flagged[: len(test_rows)].any()
    reason = next(r for r in out.iloc[-1]["reasons"] if r["code"] == "model_outlier")
    assert float(reason["observed"]) > b.novelty_threshold  # evidence is text, numbers too


def test_model_sees_a_value_the_population_never_offered(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline().fit(train)
    assert b.model_ is not None
    row = test_rows.iloc[[0]].copy()
    from tlsdetect.detect.features import hello_codes

    _, base = hello_codes(row)
    same, _ = b.model_.distances(base)
    assert same[0] == 0.0
    changed = base.copy()
    changed.at[0, "ch_ciphers"] = (*base.at[0, "ch_ciphers"], 0x1301, 0xFFF0, 0xFFF1)
    dist, _ = b.model_.distances(changed)
    assert 0 < dist[0] < 0.35
