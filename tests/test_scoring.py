"""Scoring: each signal fires for what it was planted for, with evidence; clean traffic stays ok."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.baseline import Baseline, MeshCA
from tlsdetect.knowledge import load_knowledge
from tlsdetect.scoring import SCORE_COLUMNS, SIGNALS, VERDICTS, score, summarize

from .detect_data import captured, later, population, stack_of, with_hello_of, with_issuer

MESH_DN = "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"
MESH_SKI = "be8757746f3f2a990715859e4c9b3cf8eb249e70"


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return population(repeat=12)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline().fit(train)


@pytest.fixture(scope="module")
def test_rows(train: pd.DataFrame) -> pd.DataFrame:
    return later(train)


def codes(row: pd.Series) -> set[str]:
    return {r["code"] for r in row["reasons"]}


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


def test_interception_ca(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = with_issuer(test_rows, [3], "CN=mitmproxy,O=mitmproxy")
    out = score(df, fitted)
    row = out.iloc[3]
    assert row["verdict"] == "intercepted"
    assert "interception_ca" in codes(row)
    assert row["issuer_class"] == "interception"
    detail = next(r["detail"] for r in row["reasons"] if r["code"] == "interception_ca")
    assert "mitmproxy" in detail
    assert "source" in detail


def test_blocklisted_certificate(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    kb = load_knowledge()
    sha = kb.interception_keys.loc[kb.interception_keys["kind"] == "cert", "sha256"].iloc[0]
    df = test_rows.copy()
    values = df["server_cert_sha256"].to_numpy(dtype=object, copy=True)
    values[5] = sha
    df["server_cert_sha256"] = pd.array(values, dtype="string")
    out = score(df, fitted)
    assert "interception_ca" in codes(out.iloc[5])
    assert out.iloc[5]["verdict"] == "intercepted"


def test_public_ca_inside_the_mesh(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    isrg = "CN=ISRG Root X1,O=Internet Security Research Group,C=US"
    df = with_issuer(test_rows, [2], isrg)
    out = score(df, fitted)
    assert "public_ca_in_mesh" in codes(out.iloc[2])
    assert out.iloc[2]["verdict"] == "intercepted"
    assert out.iloc[2]["issuer_class"] == "public-in-mesh"


def test_public_ca_without_a_mesh_is_not_an_alarm(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline(mesh_ca=[], model=False).fit(train)
    df = with_issuer(test_rows, [2], "CN=ISRG Root X1,O=Internet Security Research Group,C=US")
    out = score(df, b)
    assert out.iloc[2]["issuer_class"] == "public"
    assert codes(out.iloc[2]) == {"issuer_changed_for_sni"}  # no mesh alarm; the server name's issuer changed
    assert out.iloc[2]["verdict"] == "suspicious"
    reason = out.iloc[2]["reasons"][0]
    assert reason["observed"].startswith("CN=ISRG Root X1")
    assert reason["expected"] == "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"


def test_lookalike_of_the_mesh_ca(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    tls12 = np.flatnonzero(test_rows["server_issuer"].notna().to_numpy())[:2]
    df = with_issuer(test_rows, tls12, MESH_DN, akid="00" * 20)
    out = score(df, fitted)
    for r in tls12:
        assert "mesh_ca_lookalike" in codes(out.iloc[r])
        assert out.iloc[r]["verdict"] == "intercepted"
        assert out.iloc[r]["issuer_class"] == "mesh-lookalike"
    same_key = score(with_issuer(test_rows, tls12, MESH_DN, akid=MESH_SKI), fitted)
    assert (same_key.iloc[tls12]["verdict"] == "ok").all()


def test_given_mesh_ca_flags_an_unknown_private_issuer(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline(mesh_ca=[MeshCA(MESH_DN, MESH_SKI)], model=False).fit(train)
    df = with_issuer(test_rows, [4], "CN=Corp Inspection CA,O=Corp")
    out = score(df, b)
    assert codes(out.iloc[4]) == {"unknown_issuer_in_mesh", "issuer_changed_for_sni"}
    assert out.iloc[4]["score"] == pytest.approx(100 * (1 - (1 - 0.45) * (1 - 0.50)), abs=0.1)
    assert out.iloc[4]["verdict"] == "intercepted"


def test_known_interception_product_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    kb = load_knowledge()
    ja3 = kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja3"].iloc[0]
    df = test_rows.copy()
    values = df["ja3"].to_numpy(dtype=object, copy=True)
    values[7] = ja3["value"]
    df["ja3"] = pd.array(values, dtype="string")
    out = score(df, fitted)
    assert "known_interception_fingerprint" in codes(out.iloc[7])
    assert out.iloc[7]["known_product"] == ja3["product"]
    assert out.iloc[7]["verdict"] == "intercepted"


def _client_rows(df: pd.DataFrame, stack: str, version: str) -> np.ndarray:
    mask = (stack_of(df) == stack) & (df["ja4"].str.slice(1, 3) == version)
    return np.flatnonzero(mask.to_numpy())


def test_new_fingerprint_for_a_stable_client(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "curl", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "java", "13")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    row = out.iloc[rows[0]]
    assert "new_fingerprint_for_client" in codes(row)
    assert row["verdict"] in ("suspicious", "intercepted")
    reason = next(r for r in row["reasons"] if r["code"] == "new_fingerprint_for_client")
    assert reason["observed"] == donor["ja4"]
    assert test_rows.iloc[rows[0]]["ja4"] in reason["expected"]
    assert "1 other baseline client" in reason["detail"]


def test_unknown_client_is_compared_with_population_only(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = test_rows.copy()
    df["client_ip"] = pd.array(["192.0.2.9"] * len(df), dtype="string")
    out = score(df, fitted)
    assert out["compared"].str.contains("not in the baseline").all()
    assert "new_fingerprint_for_client" not in {c for rs in out["reasons"] for c in (r["code"] for r in rs)}


def test_tls_downgrade(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "node", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "node", "12")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    assert "tls_downgrade" in codes(out.iloc[rows[0]])


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


def test_convergence_of_many_clients_on_one_new_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    donor = new_hello()
    first_hour = test_rows["ts"] < test_rows["ts"].min() + pd.Timedelta(minutes=59)
    rows = np.flatnonzero(first_hour.to_numpy())[:4]
    out = score(with_hello_of(test_rows, rows, donor), fitted, convergence_min_clients=3)
    for r in rows:
        assert "fingerprint_convergence" in codes(out.iloc[r])
    alone = score(with_hello_of(test_rows, rows[:2], donor), fitted, convergence_min_clients=3)
    assert not any("fingerprint_convergence" in codes(alone.iloc[r]) for r in rows[:2])


def new_hello() -> pd.Series:
    """A hello no baseline client sent: Java's TLS 1.3 hello with only its first four ciphers."""
    from tlsdetect.fingerprint import add_fingerprints

    java = captured()[(stack_of(captured()) == "java") & captured()["ja4"].str.startswith("t13")].head(1).copy()
    java["ch_ciphers"] = pd.Series([tuple(java["ch_ciphers"].iloc[0][:4])], index=java.index, dtype=object)
    return add_fingerprints(java).iloc[0]


def test_model_flags_a_hello_unlike_the_population(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    from .conftest import INTERCEPTION

    if not INTERCEPTION.is_dir():
        pytest.skip(f"interception captures not found at {INTERCEPTION}")
    from tlsdetect.inputs import Inputs

    b = Baseline().fit(train)
    odd = Inputs([str(INTERCEPTION)]).read_all()
    out = score(pd.concat([test_rows, odd], ignore_index=True), b)
    flagged = out["reasons"].map(lambda rs: "model_outlier" in {r["code"] for r in rs}).to_numpy()
    assert flagged[len(test_rows):].all()
    assert not flagged[: len(test_rows)].any()
    reason = next(r for r in out.iloc[-1]["reasons"] if r["code"] == "model_outlier")
    assert reason["observed"] > b.novelty_threshold


def test_model_sees_a_value_the_population_never_offered(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline().fit(train)
    assert b.model_ is not None
    row = test_rows.iloc[[0]].copy()
    from tlsdetect.features import hello_codes

    _, base = hello_codes(row)
    same, _ = b.model_.distances(base)
    assert same[0] == 0.0
    changed = base.copy()
    changed.at[0, "ch_ciphers"] = (*base.at[0, "ch_ciphers"], 0x1301, 0xFFF0, 0xFFF1)
    dist, _ = b.model_.distances(changed)
    assert 0 < dist[0] < 0.35


def test_interception_captures_are_caught(fitted: Baseline) -> None:
    from .conftest import INTERCEPTION

    if not INTERCEPTION.is_dir():
        pytest.skip(f"interception captures not found at {INTERCEPTION}")
    from tlsdetect.inputs import Inputs

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


def test_rows_without_a_time_are_not_placed_in_a_convergence_window(fitted: Baseline,
                                                                    test_rows: pd.DataFrame) -> None:
    import warnings

    df = with_hello_of(test_rows, np.arange(6), new_hello())
    df["ts"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = score(df, fitted)
    assert not any("fingerprint_convergence" in codes(out.iloc[r]) for r in range(6))
    assert all("new_fingerprint_for_client" in codes(out.iloc[r]) for r in range(6))


def test_scoring_leaves_the_input_table_alone(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    before = test_rows.copy()
    score(test_rows, fitted)
    pd.testing.assert_frame_equal(test_rows, before)
