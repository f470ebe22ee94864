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


def test_a_new_client_is_not_suspicious_by_the_model_alone(train: pd.DataFrame) -> None:
    """gnutls held out of the baseline: its real hello is an outlier (it flagged 24 of 24 rows before
    model_outlier became supporting evidence); now it adds only to other evidence."""
    from tlsdetect.detect.evidence import Evidence
    from tlsdetect.detect.features import hello_codes
    from tlsdetect.detect.knowledge import load_knowledge
    from tlsdetect.detect.population_signals import model_signal

    from .detect_data import later

    new = (stack_of(train) == "gnutls").to_numpy()
    b = Baseline().fit(train[~new])
    test = later(train[new].reset_index(drop=True))
    ev = Evidence(len(test))
    c, hellos = hello_codes(test)
    model_signal(c, hellos, b, ev, test["ja3_full"], load_knowledge())
    assert len(ev.parts) == 1  # it fired on every row ...
    assert ev.parts[0]["code"].eq("model_outlier").all()
    assert len(ev.parts[0]) == len(test)
    assert (ev.scores() == 0).all()  # ... and counts for nothing by itself
    out = score(test, b)
    assert (out["verdict"] == "ok").all()
    assert not out["reasons"].map(bool).any()  # a supporting reason that did not count is not shown

    # beside other evidence it counts: a downgrade-sized weight (40) + the model (30) -> 58
    ev.add("tls_downgrade", np.ones(len(test), dtype=bool), "planted")
    assert (ev.scores() == 58.0).all()
    assert {r["code"] for r in ev.reasons()[0]} == {"tls_downgrade", "model_outlier"}


def test_the_model_counts_alone_on_a_hello_near_an_interception_product(train: pd.DataFrame) -> None:
    from .conftest import INTERCEPTION, require_shared

    require_shared("pcaps/interception/SOURCES.md")
    from tlsdetect.detect.evaluation import muted
    from tlsdetect.detect.evidence import Evidence
    from tlsdetect.detect.features import hello_codes
    from tlsdetect.detect.knowledge import load_knowledge
    from tlsdetect.detect.population_signals import model_signal, product_like
    from tlsdetect.readers.inputs import Inputs

    kb = load_knowledge()
    odd = Inputs([str(INTERCEPTION)]).read_all()
    kaspersky = odd["conn_id"].str.contains("kaspersky").to_numpy()
    rows = np.ones(len(odd), dtype=bool)
    like = product_like(odd["ja3_full"], rows, kb, 0.35)
    assert like[kaspersky].all()  # its hello is a product's (mitmengine) and far from every clean stack
    assert not product_like(odd["ja3_full"], ~rows, kb, 0.35).any()  # only the rows asked about
    clean = train.drop_duplicates("ja3_full").reset_index(drop=True)
    assert not product_like(clean["ja3_full"], np.ones(len(clean), dtype=bool), kb, 0.35).any()

    b = Baseline().fit(train)
    c, hellos = hello_codes(odd)
    ev = Evidence(len(odd))
    with muted(["weak_ciphers"]):  # these hellos offer weak ciphers too: what is left is the model alone
        model_signal(c, hellos, b, ev, odd["ja3_full"], kb)
    fired = ev.fired()
    assert set(fired["code"]) == {"model_outlier"}
    assert (ev.scores()[kaspersky] == 30.0).all()  # suspicious by itself
    assert (ev.scores()[~like] == 0.0).all()  # the other products' hellos: supporting only
    detail = fired.set_index("row").loc[int(np.flatnonzero(kaspersky)[0]), "detail"]
    assert "nearer to an interception product's hello" in detail
    without_kb = Evidence(len(odd))
    with muted(["weak_ciphers"]):
        model_signal(c, hellos, b, without_kb)  # no knowledge given: never alone
    assert (without_kb.scores() == 0.0).all()
