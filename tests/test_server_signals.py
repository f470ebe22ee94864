"""Server signals: another flight size, JA3S, version or cipher than the server always answered this family."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.detect.scoring import score
from tlsdetect.detect.server_signals import FLIGHT_TOLERANCE, MIN_OBSERVATIONS

from .detect_data import _like, codes, later, population
from .test_server_profiles import with_flights

SERVER_CODES = {"server_flight_changed", "server_fingerprint_changed", "server_version_changed",
                "server_cipher_changed", "server_convergence"}


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return with_flights(population(repeat=8))


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> Baseline:
    return Baseline(model=False).fit(train)


@pytest.fixture(scope="module")
def test_rows(train: pd.DataFrame) -> pd.DataFrame:
    return with_flights(later(train), seed=2)


def _set(df: pd.DataFrame, col: str, rows: list[int] | np.ndarray, value: object) -> pd.DataFrame:
    out = df.copy()
    values = out[col].to_numpy(dtype=object, copy=True)
    values[list(rows)] = value
    out[col] = _like(out[col], values)
    return out


def _server_codes(out: pd.DataFrame) -> set[str]:
    return {r["code"] for rs in out["reasons"] for r in rs} & SERVER_CODES


def _rows_of(df: pd.DataFrame, stack: str, version: str) -> np.ndarray:
    mask = df["sni"].str.startswith(stack + ".") & (df["ja4"].str.slice(1, 3) == version)
    return np.flatnonzero(mask.to_numpy())


def test_the_baseline_and_the_same_servers_later_are_clean(train: pd.DataFrame, fitted: Baseline,
                                                           test_rows: pd.DataFrame) -> None:
    for df in (train, test_rows):
        out = score(df, fitted)
        assert _server_codes(out) == set()
        assert out["compared"].str.contains("server profile (flight size, JA3S, version, cipher)",
                                            regex=False).all()


def test_a_new_flight_size_is_suspicious_with_evidence(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    r = int(_rows_of(test_rows, "curl", "13")[0])
    old = int(test_rows.iloc[r]["server_flight_bytes"])
    out = score(_set(test_rows, "server_flight_bytes", [r], old + 600), fitted)
    row = out.iloc[r]
    assert codes(row) == {"server_flight_changed"}
    assert row["verdict"] == "suspicious"
    reason = row["reasons"][0]
    assert reason["observed"] == str(old + 600)
    assert reason["expected"].startswith(f"{old // 100 * 100}-")
    assert "curl.sample.tlsdetect.test" in reason["detail"]
    assert _server_codes(out.drop(index=[r])) == set()


def test_ecdsa_jitter_within_the_tolerance_is_the_same_flight(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    r = _rows_of(test_rows, "java", "13")[:3]  # TLS 1.3: no certificate in clear to explain a new size
    sizes = test_rows["server_flight_bytes"].to_numpy(dtype=np.int64)
    base = int(sizes[r].min()) // 100 * 100
    assert _server_codes(score(_set(test_rows, "server_flight_bytes", r, base + 2 + FLIGHT_TOLERANCE), fitted)) == set()
    out = score(_set(test_rows, "server_flight_bytes", r, base + 2 + FLIGHT_TOLERANCE + 1), fitted)
    assert _server_codes(out) == {"server_flight_changed"}


def test_a_resumed_session_is_never_compared_with_full_flights(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    r = _rows_of(test_rows, "node", "13")
    df = _set(_set(test_rows, "server_flight_bytes", r, 120), "resumed", r, True)
    out = score(df, fitted)
    assert _server_codes(out) == set()
    assert not out.iloc[r[0]]["compared"].endswith("flight size, JA3S, version, cipher)")
    assert "JA3S" in out.iloc[r[0]]["compared"]


def test_another_server_stack_and_chain_is_intercepted(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    """The client-to-proxy leg: the client's own hello, answered by another stack with another chain."""
    r = int(_rows_of(test_rows, "openssl", "12")[0])
    df = _set(test_rows, "ja3s", [r], "4ef1b297bb817d8212165a86308bac5f")  # mitmproxy's answer in pcaps/
    df = _set(df, "sh_cipher", [r], 49199)
    df = _set(df, "server_flight_bytes", [r], 1156)
    row = score(df, fitted).iloc[r]
    assert {"server_flight_changed", "server_fingerprint_changed", "server_cipher_changed"} <= codes(row)
    assert row["verdict"] == "intercepted"
    cipher = next(x for x in row["reasons"] if x["code"] == "server_cipher_changed")
    assert cipher["observed"] == "0xc02f"
    assert cipher["expected"].startswith("0xc02")


def test_a_server_that_only_did_tls12_now_negotiates_tls13(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    r = int(_rows_of(test_rows, "gnutls", "12")[0])
    row = score(_set(test_rows, "sh_selected_version", [r], 0x0304), fitted).iloc[r]
    assert "server_version_changed" in codes(row)
    reason = next(x for x in row["reasons"] if x["code"] == "server_version_changed")
    assert (reason["observed"], reason["expected"].split(" ")[0]) == ("TLSv1.3", "TLSv1.2")
    assert row["verdict"] in ("suspicious", "intercepted")


def test_too_few_observations_are_not_compared(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    few = Baseline(model=False).fit(train.groupby("client_ip").head(MIN_OBSERVATIONS - 1))
    r = int(_rows_of(test_rows, "curl", "13")[0])
    out = score(_set(test_rows, "server_flight_bytes", [r], 9999), few)
    assert _server_codes(out) == set()
    assert not out["compared"].str.contains("server profile").any()


def test_a_baseline_without_flights_compares_no_flight(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    b = Baseline(model=False).fit(train.assign(server_flight_bytes=pd.array([None] * len(train), dtype="Int32")))
    r = int(_rows_of(test_rows, "curl", "13")[0])
    out = score(_set(test_rows, "server_flight_bytes", [r], 9999), b)
    assert _server_codes(out) == set()
    assert not out["compared"].str.contains("flight").any()
    assert out["compared"].str.contains("server profile (JA3S, version, cipher)", regex=False).all()


def test_an_old_baseline_scores_as_before(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    old = Baseline(model=False).fit(test_rows)
    before = score(test_rows, old)
    old.server_values_ = old.server_values_.iloc[:0]  # what an old directory loads
    after = score(test_rows, old)
    assert not after["compared"].str.contains("server profile").any()
    pd.testing.assert_series_equal(before["score"], after["score"])


def test_a_proxy_by_name_is_compared_by_name_and_a_nameless_row_by_address(fitted: Baseline,
                                                                           test_rows: pd.DataFrame) -> None:
    r = int(_rows_of(test_rows, "python", "13")[0])
    moved = _set(_set(test_rows, "server_port", [r], 3128), "server_flight_bytes", [r], 5000)
    reason = score(moved, fitted).iloc[r]["reasons"][0]
    assert (reason["code"], "server name python.sample.tlsdetect.test" in reason["detail"]) == \
        ("server_flight_changed", True)
    nameless = _set(_set(test_rows, "sni", [r], None), "server_flight_bytes", [r], 5000)
    reason = score(nameless, fitted).iloc[r]["reasons"]
    assert [x["code"] for x in reason if x["code"] in SERVER_CODES] == ["server_flight_changed"]
    assert "server address 127.0.0.1:" in reason[-1]["detail"] or any("address 127.0.0.1:" in x["detail"]
                                                                      for x in reason)


def test_two_stacks_behind_one_name_both_learned_stay_clean(train: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    r = _rows_of(train, "curl", "13")
    pool = _set(_set(train, "ja3s", r[::2], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "server_flight_bytes", r[::2], 4321)
    b = Baseline(model=False).fit(pool)
    assert _server_codes(score(pool, b)) == set()
    t = _rows_of(test_rows, "curl", "13")
    later_pool = _set(_set(test_rows, "ja3s", t[1::2], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "server_flight_bytes",
                      t[1::2], 4322)
    assert _server_codes(score(later_pool, b)) == set()


def test_many_clients_one_server_same_new_answer_is_intercepted(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    r = _rows_of(test_rows, "java", "13")[:4]
    df = _set(test_rows, "server_flight_bytes", r, 7777)
    df = _set(df, "client_ip", r, None)
    ips = df["client_ip"].to_numpy(dtype=object, copy=True)
    ips[r] = [f"10.9.0.{i}" for i in range(len(r))]
    df["client_ip"] = pd.array(ips, dtype="string")
    ts = df["ts"].to_numpy(copy=True)
    ts[r] = ts[r[0]]  # one window
    df["ts"] = pd.Series(ts, index=df.index).astype("datetime64[ns, UTC]")
    out = score(df, fitted)
    for i in r:
        assert {"server_flight_changed", "server_convergence"} <= codes(out.iloc[i])
        assert out.iloc[i]["verdict"] == "intercepted"
    assert _server_codes(out.drop(index=list(r))) == set()


def _cell(df: pd.DataFrame, col: str, rows: np.ndarray, value: object) -> pd.DataFrame:
    """``_set`` for any column: a categorical takes a value it did not have (as its categories grow)."""
    out = df.copy()
    values = out[col].astype(object).to_numpy(copy=True)
    for r in rows:
        values[r] = value
    kind = out[col].dtype
    out[col] = pd.Series(values, index=out.index).astype("category" if isinstance(kind, pd.CategoricalDtype)
                                                          else kind)
    return out


def _renewed(df: pd.DataFrame, grow: int, *, grow13: int | None = None, issuer: str | None = None,
             akid: str | None = None, chain: int | None = None, server: str = "openssl") -> pd.DataFrame:
    """Every leg to ``server`` answers with a certificate ``grow`` bytes longer; its TLS 1.2 legs show it."""
    r12, r13 = _rows_of(df, server, "12"), _rows_of(df, server, "13")
    sizes = df["server_flight_bytes"].to_numpy(dtype=np.int64)
    out = df.copy()
    out["server_flight_bytes"] = pd.array(np.where(np.isin(np.arange(len(df)), r12), sizes + grow, sizes),
                                          dtype="Int32")
    flight13 = sizes[r13] + (grow if grow13 is None else grow13)
    b = out["server_flight_bytes"].to_numpy(dtype=object, copy=True)
    b[r13] = flight13
    out["server_flight_bytes"] = pd.array(b, dtype="Int32")
    flights = out["server_flight"].to_numpy(dtype=object, copy=True)
    for r in r12:
        flights[r] = (int(flights[r][0]) + grow, *flights[r][1:])
    out["server_flight"] = pd.Series(flights, index=out.index, dtype=object)
    out = _cell(out, "server_cert_sha256", r12, "renewed" + "0" * 33)
    if issuer is not None:
        out = _cell(out, "server_issuer", r12, issuer)
    if akid is not None:
        out = _cell(out, "server_issuer_akid", r12, akid)
    if chain is not None:
        out = _cell(out, "server_chain", r12, json.dumps([{"subject": f"CN=c{i}"} for i in range(chain)]))
    return add_issuer_keys(out)


def _flagged(out: pd.DataFrame, rows: np.ndarray) -> int:
    return sum("server_flight_changed" in codes(out.iloc[int(r)]) for r in rows)


def test_a_renewal_seen_in_clear_with_a_known_issuer_is_not_flagged(train: pd.DataFrame,
                                                                    test_rows: pd.DataFrame) -> None:
    b = Baseline(model=False).fit(add_issuer_keys(train))
    df = add_issuer_keys(test_rows)
    assert _server_codes(score(_renewed(df, 300), b)) == set()
    # a longer chain: TLS 1.3 sends 2 more bytes (extensions' length) per certificate
    chain = len(json.loads(str(df["server_chain"].dropna().iloc[0])))
    assert _server_codes(score(_renewed(df, 300, grow13=302, chain=chain + 1), b)) == set()
    assert _server_codes(score(_renewed(df, 300, grow13=302 + FLIGHT_TOLERANCE + 1, chain=chain + 1), b)) \
        == {"server_flight_changed"}


def test_a_renewal_does_not_excuse_another_size_nor_a_new_issuer(train: pd.DataFrame,
                                                                 test_rows: pd.DataFrame) -> None:
    b = Baseline(model=False).fit(add_issuer_keys(train))
    df = add_issuer_keys(test_rows)
    r12, r13 = _rows_of(df, "openssl", "12"), _rows_of(df, "openssl", "13")
    # an interceptor's TLS 1.3 legs during the renewal: their size is not the old one plus the renewal's
    out = score(_renewed(df, 300, grow13=700), b)
    assert _flagged(out, r13) == len(r13)
    assert _flagged(out, r12) == 0
    # a forged leaf from the interceptor's own CA, in clear, is no renewal: nothing is excused
    out = score(_renewed(df, 300, issuer="CN=Corporate Inspection CA,O=Example"), b)
    assert _flagged(out, r13) == len(r13)
    assert _flagged(out, r12) == len(r12)
    # the same issuer name under another key (a look-alike CA) is no renewal either
    out = score(_renewed(df, 300, akid="ab" * 20), b)
    assert _flagged(out, r13) == len(r13)
    assert _flagged(out, r12) == len(r12)


def test_a_renewal_seen_in_clear_only_later_or_never_stays_flagged(train: pd.DataFrame,
                                                                   test_rows: pd.DataFrame) -> None:
    b = Baseline(model=False).fit(add_issuer_keys(train))
    df = _renewed(add_issuer_keys(test_rows), 300)
    r12, r13 = _rows_of(df, "openssl", "12"), _rows_of(df, "openssl", "13")
    # the TLS 1.2 legs come a day after the TLS 1.3 ones: before them, nothing explains the new size
    late = df.copy()
    late.loc[late.index[r12], "ts"] = late["ts"].iloc[r12] + pd.Timedelta(days=1)
    out = score(late, b)
    first12 = late["ts"].iloc[r12].min()
    early = r13[(late["ts"].iloc[r13] < first12 - pd.Timedelta(hours=1)).to_numpy()]
    assert len(early)
    assert _flagged(out, early) == len(early)
    # a TLS 1.3-only server: the renewal cannot be told from a middlebox keeping the server's stack
    out = score(df.drop(index=r12).reset_index(drop=True), b)
    assert _server_codes(out) == {"server_flight_changed"}
