"""``transports``: per client and server, the transports the baseline saw; saved and loaded with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.transports import learn_transports, server_keys


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"ts": "2026-01-01T00:00:00Z", "client_ip": "10.0.0.1", "client_port": 40000, "server_ip": "10.9.9.9",
            "server_port": 443, "source": "test", "transport": "tcp", "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}
    df = pd.DataFrame([{**base, **r, "conn_id": f"c{i}"} for i, r in enumerate(rows)])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return schema.conform(df)


def test_server_is_the_lowercase_name_else_the_address() -> None:
    df = table([{"sni": "Example.COM"}, {"sni": None, "server_ip": "192.0.2.7"}, {"sni": ""}])
    assert server_keys(df).tolist() == ["example.com", "192.0.2.7", "10.9.9.9"]


def test_learn_counts_each_transport_per_client_and_server() -> None:
    df = table([{"sni": "a.test", "transport": "quic", "ts": "2026-01-01T00:00:01Z"},
                {"sni": "A.test", "transport": "quic", "ts": "2026-01-01T00:00:05Z"},
                {"sni": "a.test", "transport": "tcp"},
                {"sni": "b.test", "transport": "quic", "client_ip": "10.0.0.2"},
                {"sni": "c.test", "transport": None}])
    cid = df["client_ip"].astype("string")
    got = learn_transports(df, cid, df["ts"]).sort_values(["client_id", "server", "transport"])
    assert got[["client_id", "server", "transport", "count"]].values.tolist() == [
        ["10.0.0.1", "a.test", "quic", 2], ["10.0.0.1", "a.test", "tcp", 1], ["10.0.0.2", "b.test", "quic", 1]]
    first = got.iloc[0]
    assert (first["first_seen"], first["last_seen"]) == (pd.Timestamp("2026-01-01T00:00:01Z"),
                                                         pd.Timestamp("2026-01-01T00:00:05Z"))


def test_the_baseline_learns_folds_saves_and_loads_the_table(tmp_path: Path) -> None:
    b = Baseline(model=False).fit(table([{"sni": "a.test", "transport": "quic"}] * 2))
    b.partial_fit(table([{"sni": "a.test", "transport": "quic"}, {"sni": "a.test", "transport": "tcp"}]))
    counts = dict(zip(b.transports_["transport"], b.transports_["count"], strict=True))
    assert counts == {"quic": 3, "tcp": 1}
    loaded = Baseline.load(b.save(tmp_path / "bl"))
    pd.testing.assert_frame_equal(loaded.transports_, b.transports_)
