"""The learned tables: dtypes as declared, and folding in parts equals counting the whole by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.detect.baseline_tables import TABLE_KEYS, TABLES, empty_table, merge_table, typed_table

_ROW = st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["ja4", "ja3n"]), st.sampled_from(["v1", "v2", "v3"]),
                 st.integers(1, 5), st.integers(0, 10_000))


def _part(rows: list[tuple[str, str, str, int, int]]) -> pd.DataFrame:
    ts = pd.to_datetime([r[4] for r in rows], unit="s", utc=True)
    return typed_table("fingerprints", pd.DataFrame({
        "client_id": [r[0] for r in rows], "kind": [r[1] for r in rows], "value": [r[2] for r in rows],
        "count": [r[3] for r in rows], "first_seen": ts, "last_seen": ts}))


@settings(max_examples=100, deadline=None)
@given(st.lists(_ROW, max_size=12), st.lists(_ROW, max_size=12))
def test_merge_adds_counts_and_widens_first_and_last_seen(old: list, new: list) -> None:  # type: ignore[type-arg]
    keys = TABLE_KEYS["fingerprints"]
    got = merge_table("fingerprints", merge_table("fingerprints", empty_table("fingerprints"), _part(old), keys),
                      _part(new), keys)
    want: dict[tuple[str, str, str], list[int]] = {}
    for c, k, v, n, t in old + new:
        w = want.setdefault((c, k, v), [0, t, t])
        w[0] += n
        w[1], w[2] = min(w[1], t), max(w[2], t)
    assert len(got) == len(want)
    for r in got.itertuples():
        n, first, last = want[(r.client_id, r.kind, r.value)]
        assert r.count == n
        assert r.first_seen == pd.Timestamp(first, unit="s", tz="UTC")
        assert r.last_seen == pd.Timestamp(last, unit="s", tz="UTC")
    assert {c: str(t) for c, t in got.dtypes.items()} == TABLES["fingerprints"]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_empty_tables_have_the_declared_columns_and_dtypes(name: str) -> None:
    assert {c: str(t) for c, t in empty_table(name).dtypes.items()} == TABLES[name]


def test_typed_table_casts_and_drops_extra_columns() -> None:
    df = pd.DataFrame({"client_id": ["a"], "connections": [3.0], "first_seen": ["2026-01-01T00:00:00Z"],
                       "last_seen": ["2026-01-02T00:00:00Z"], "extra": [1]})
    got = typed_table("clients", df)
    assert list(got.columns) == list(TABLES["clients"])
    assert got["connections"].tolist() == [3]
    assert str(got["connections"].dtype) == "int64"


def test_merge_keeps_the_least_rest_of_flight_of_a_certificate() -> None:
    """Two chunks of one certificate fold to the smallest ``rest_bytes``, as one fit over both gives."""
    from tlsdetect.detect.baseline_tables import OPTIONAL_KEYS

    t = pd.Timestamp("2026-12-07", tz="UTC")
    row = {"scope": "name", "server": "cdn", "family": "t12d280700", "cert": "ab", "cert_bytes": 1616,
           "issuer_key": "k", "issuer_akid": "a", "chain": 2, "count": 1, "first_seen": t, "last_seen": t}
    a = typed_table("server_certs", pd.DataFrame([{**row, "rest_bytes": 340}]))
    b = typed_table("server_certs", pd.DataFrame([{**row, "rest_bytes": 338}]))
    out = merge_table("server_certs", a, b, OPTIONAL_KEYS["server_certs"])
    assert out["rest_bytes"].tolist() == [338]
    assert out["count"].tolist() == [2]
