"""Fingerprint signals: interception products' hellos, a hello new for its client, downgrades, convergence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import score

from .detect_data import captured, codes, stack_of, with_hello_of

pytest_plugins = ["tests.detect_fixtures"]  # train, fitted, test_rows


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


def test_convergence_of_many_clients_on_one_new_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    donor = new_hello()
    first_hour = test_rows["ts"] < test_rows["ts"].min() + pd.Timedelta(minutes=59)
    rows = np.flatnonzero(first_hour.to_numpy())[:4]
    out = score(with_hello_of(test_rows, rows, donor), fitted, convergence_min_clients=3)
    for r in rows:
        assert "fingerprint_convergence" in codes(out.iloc[r])
    alone = score(with_hello_of(test_rows, rows[:2], donor), fitted, convergence_min_clients=3)
    assert not any("fingerprint_convergence" in codes(alone.iloc[r]) for r in rows[:2])


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


def new_hello() -> pd.Series:
    """A hello no baseline client sent: Java's TLS 1.3 hello with only its first four ciphers."""
    from tlsdetect.fingerprint import add_fingerprints

    java = captured()[(stack_of(captured()) == "java") & captured()["ja4"].str.startswith("t13")].head(1).copy()
    java["ch_ciphers"] = pd.Series([tuple(java["ch_ciphers"].iloc[0][:4])], index=java.index, dtype=object)
    return add_fingerprints(java).iloc[0]
