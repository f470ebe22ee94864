"""Server profiles: what the baseline learns per server (by name and by address) and client hello family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.server_profiles import combine, learn_server_values, profile_counts, server_rows, server_summary

from .detect_data import population


def with_flights(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Full handshakes whose first flight is a size per server name, varying by up to 2 bytes (ECDSA)."""
    out = df.copy()
    rng = np.random.default_rng(seed)
    size = out["sni"].str.len().to_numpy(dtype=np.int64) * 100 + rng.integers(0, 3, len(out))
    out["server_flight_bytes"] = pd.array(size, dtype="Int32")
    out["resumed"] = pd.array([False] * len(out), dtype="boolean")
    return out


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return with_flights(population(repeat=6))


def _values(table: pd.DataFrame, scope: str, server: str, kind: str) -> set[str]:
    sub = table[(table["scope"] == scope) & (table["server"] == server) & (table["kind"] == kind)]
    return set(sub["value"])


def test_learned_per_name_and_address_and_family(train: pd.DataFrame) -> None:
    table = Baseline(model=False).fit(train).server_values_
    curl = "curl.sample.tlsdetect.test"
    rows = train[train["sni"] == curl]
    assert set(table.loc[(table["scope"] == "sni") & (table["server"] == curl), "family"]) == \
        set(rows["ja4"].str.slice(0, 10))
    assert _values(table, "sni", curl, "ja3s") == set(rows["ja3s"])
    assert _values(table, "sni", curl, "version") == {"TLSv1.2", "TLSv1.3"}
    assert _values(table, "sni", curl, "cipher") == {f"0x{c:04x}" for c in rows["sh_cipher"]}
    assert _values(table, "sni", curl, "flight") == {str(s) for s in rows["server_flight_bytes"]}
    ports = {f"127.0.0.1:{p}" for p in train["server_port"]}
    assert set(table.loc[table["scope"] == "addr", "server"]) == ports
    counts = profile_counts(table)
    ja3s = counts[(counts["scope"] == "sni") & (counts["server"] == curl) & (counts["kind"] == "ja3s")]
    assert ja3s["observations"].sum() == len(rows)


def test_resumed_handshakes_never_teach_a_flight_size(train: pd.DataFrame) -> None:
    df = train.copy()
    resumed = np.zeros(len(df), dtype=bool)
    resumed[::2] = True
    df["resumed"] = pd.array(resumed, dtype="boolean")
    sizes = df["server_flight_bytes"].to_numpy(dtype=np.int64).copy()
    sizes[resumed] = 90  # a resumed TLS 1.3 flight: EncryptedExtensions and Finished, no certificate
    df["server_flight_bytes"] = pd.array(sizes, dtype="Int32")
    table = Baseline(model=False).fit(df).server_values_
    assert "90" not in set(table.loc[table["kind"] == "flight", "value"])
    res = table[(table["kind"] == "resumed") & (table["scope"] == "sni")]
    assert res.groupby("value")["count"].sum().to_dict() == {"false": int((~resumed).sum()), "true": int(resumed.sum())}


def test_no_flight_columns_no_flight_profile() -> None:
    df = population(repeat=3).drop(columns=["server_flight_bytes", "server_flight", "resumed"])  # a log without them
    table = Baseline(model=False).fit(df).server_values_
    assert len(table) > 0
    assert "flight" not in set(table["kind"])
    assert server_summary(table)["profiles"]["flight"] == 0  # type: ignore[index]


def test_partial_fit_folds_like_one_fit(train: pd.DataFrame) -> None:
    half = len(train) // 2
    parts = Baseline(model=False).fit(train.iloc[:half]).partial_fit(train.iloc[half:]).server_values_
    whole = Baseline(model=False).fit(train).server_values_
    pd.testing.assert_frame_equal(parts, whole)


def test_rows_without_a_family_or_server_are_not_learned(train: pd.DataFrame) -> None:
    df = train.copy()
    df["ja4"] = pd.array([None] * len(df), dtype="string")
    assert len(learn_server_values(df, df["ts"])) == 0
    rows = server_rows(train.assign(sni=pd.array([None] * len(train), dtype="string")))
    assert (rows.keys["sni"].codes == -1).all()
    assert (rows.keys["addr"].codes >= 0).all()


def test_names_differing_in_case_are_one_server(train: pd.DataFrame) -> None:
    df = train.copy()
    df.loc[df.index[::2], "sni"] = df.loc[df.index[::2], "sni"].str.upper()
    rows = server_rows(df)
    assert len(rows.keys["sni"].texts) == train["sni"].nunique()


def test_saved_and_loaded_and_summarised(train: pd.DataFrame, tmp_path: Path) -> None:
    b = Baseline(model=False).fit(train)
    b.save(tmp_path / "b")
    back = Baseline.load(tmp_path / "b")
    pd.testing.assert_frame_equal(back.server_values_, b.server_values_)
    meta = (tmp_path / "b" / "meta.json").read_text()
    assert '"server_profiles"' in meta
    summary = server_summary(b.server_values_)
    assert summary["servers"] == {"sni": train["sni"].nunique(), "addr": train["server_port"].nunique()}


def test_an_old_baseline_without_server_profiles_loads(train: pd.DataFrame, tmp_path: Path) -> None:
    b = Baseline(model=False).fit(train)
    path = b.save(tmp_path / "old")
    (path / "server_values.parquet").unlink()
    back = Baseline.load(path)
    assert len(back.server_values_) == 0
    assert list(back.server_values_.columns) == list(b.server_values_.columns)


@pytest.mark.parametrize("high", [5, 1 << 40])  # small codes pack into one int64; huge ones force renumbering
def test_combine_numbers_distinct_tuples_by_first_appearance(high: int) -> None:
    rng = np.random.default_rng(3)
    cols = [rng.integers(-1, 4, 5000), rng.integers(-1, high, 5000) % 7 * (high // 5 + 1) - 1,
            rng.integers(-1, 3, 5000), np.full(5000, high)]
    group, first = combine(*cols)
    tuples = list(zip(*(c.tolist() for c in cols), strict=True))
    order: dict[tuple[int, ...], int] = {}
    expected = [order.setdefault(t, len(order)) for t in tuples]
    assert group.tolist() == expected
    firsts = {}
    for r, t in enumerate(tuples):
        firsts.setdefault(t, r)
    assert first.tolist() == sorted(firsts.values())
    assert len(combine(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))[1]) == 0


def test_integer_columns_read_as_int64_with_minus_one_for_missing() -> None:
    """_ints reads an integer column from its values and mask (issue 18 #15); objects and floats as before."""
    from tlsdetect.detect.server_profiles import _ints

    want = [443, -1, 0, 65535]
    for s in (pd.Series([443, None, 0, 65535], dtype="Int32"), pd.Series([443, None, 0, 65535], dtype="Int64"),
              pd.Series([443, None, 0, 65535], dtype=object), pd.Series([443.0, None, 0.0, 65535.0])):
        got = _ints(s)
        assert got.dtype == np.int64, s.dtype
        assert got.tolist() == want, s.dtype
    assert _ints(pd.Series([1, 2], dtype=np.int16)).tolist() == [1, 2]
    assert _ints(pd.Series([None], dtype="Int32")).tolist() == [-1]
