"""Bound-identity signals: look-alike issuing keys, new certificates weighed by stability and renewal timing,
new networks (the real Envoy sample through the CLI and the API: ``test_bound_identities_envoy.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.identity_signals import _in, identity_signals
from tlsdetect.detect.scoring import verdict_of

MESH = "CN=Mesh CA,O=t"
JA4 = "t13d1516h2_8daaf6152771_02713d6af862"


def _rows(n: int, *, day: str = "2026-01-01", ip: str = "10.0.0.1", sha: str | None = "aa", akid: str | None = "k1",
          subject: str = "CN=orders", not_before: str | None = "2025-12-01", not_after: str | None = "2026-03-01",
          issuer: str = MESH) -> pd.DataFrame:
    def t(v: str | None) -> Any:
        return pd.Timestamp(v, tz="UTC") if v else pd.NaT

    return schema.conform(pd.DataFrame({
        "ts": pd.date_range(day, periods=n, freq="h", tz="UTC"), "peer_subject": [subject] * n, "client_ip": [ip] * n,
        "peer_cert_sha256": [sha] * n, "peer_issuer": [issuer] * n, "peer_issuer_akid": [akid] * n,
        "peer_not_before": [t(not_before)] * n, "peer_not_after": [t(not_after)] * n, "ja4": [JA4] * n,
    }))


@pytest.fixture(scope="module")
def steady() -> Baseline:
    """One workload, one certificate (valid 2025-12-01 .. 2026-03-01) over 10 connections from 10.0.0.0/24."""
    return Baseline(model=False).fit(_rows(10))


def _scored(df: pd.DataFrame, b: Baseline) -> pd.DataFrame:
    """The module's evidence alone, as scoring turns it into score, verdict and reasons."""
    ev = Evidence(len(df))
    identity_signals(df, b, ev)
    scores = ev.scores()
    return pd.DataFrame({"score": scores, "verdict": np.asarray(verdict_of(scores)), "reasons": ev.reasons()})


def _one(b: Baseline, **kw: Any) -> pd.Series:
    return _scored(_rows(1, **kw), b).iloc[0]


def _reason(row: pd.Series, code: str) -> dict[str, Any] | None:
    return next((r for r in row["reasons"] if r["code"] == code), None)


def test_known_certificate_from_the_usual_network_is_ok(steady: Baseline) -> None:
    row = _one(steady, day="2026-01-10", ip="10.0.0.77")
    assert (row["verdict"], list(row["reasons"])) == ("ok", [])


def test_lookalike_issuing_key_is_intercepted(steady: Baseline) -> None:
    row = _one(steady, day="2026-01-10", sha="bb", akid="evil")
    mis = _reason(row, "issuer_key_mismatch")
    assert mis is not None
    assert "look-alike" in mis["detail"]
    assert mis["observed"] == "evil"
    assert mis["expected"] == "k1"
    changed = _reason(row, "client_cert_changed")
    assert changed is not None
    assert "another issuing key" in changed["detail"]
    assert row["verdict"] == "intercepted"


def test_renewal_with_the_same_key_near_expiry_is_not_flagged(steady: Baseline) -> None:
    # 2026-02-10 is in the last third of 2025-12-01 .. 2026-03-01
    row = _one(steady, day="2026-02-10", sha="cc", not_before="2026-02-09", not_after="2026-05-01")
    assert (row["verdict"], list(row["reasons"])) == ("ok", [])


def test_same_key_early_is_half_weight(steady: Baseline) -> None:
    row = _one(steady, day="2026-01-05", sha="cc")
    changed = _reason(row, "client_cert_changed")
    assert changed is not None
    assert "early re-issue" in changed["detail"]
    assert row["score"] == pytest.approx(30.0)


def test_key_not_logged_near_expiry_is_weak_from_the_usual_network_and_full_from_a_new_one(steady: Baseline) -> None:
    usual = _one(steady, day="2026-02-20", sha="cc", akid=None)
    assert "possibly a renewal" in _reason(usual, "client_cert_changed")["detail"]  # type: ignore[index]
    assert usual["score"] == pytest.approx(10.0)
    assert usual["verdict"] == "ok"
    moved = _one(steady, day="2026-02-20", sha="cc", akid=None, ip="192.0.2.7")
    assert "not excused as a renewal" in _reason(moved, "client_cert_changed")["detail"]  # type: ignore[index]
    assert _reason(moved, "identity_new_network") is not None
    assert moved["verdict"] == "suspicious"


def test_new_certificate_not_near_expiry_is_full_weight(steady: Baseline) -> None:
    row = _one(steady, day="2026-01-10", sha="cc", akid=None)
    assert "not a renewal" in _reason(row, "client_cert_changed")["detail"]  # type: ignore[index]
    assert row["score"] == pytest.approx(60.0)


def test_a_rotating_identity_weighs_little() -> None:
    rotating = pd.concat([_rows(1, day=f"2026-01-0{i}", sha=f"s{i}") for i in range(1, 9)], ignore_index=True)
    b = Baseline(model=False).fit(schema.conform(rotating))
    row = _one(b, day="2026-01-10", sha="new", akid=None)
    assert 0 < row["score"] < 10  # 60 x 1/8 share of its connections on one certificate


def test_new_network_alone_does_not_flag(steady: Baseline) -> None:
    row = _one(steady, day="2026-01-10", ip="198.51.100.4")
    assert row["verdict"] == "ok"
    assert row["score"] == 0.0


def test_rows_of_unknown_identities_and_old_baselines_are_untouched(steady: Baseline) -> None:
    stranger = _one(steady, subject="CN=never-seen", sha="zz", akid="evil")
    assert not any(r["code"] in ("client_cert_changed", "issuer_key_mismatch") for r in stranger["reasons"])
    old = Baseline(model=False).fit(_rows(10))
    old.identities_ = old.identities_.iloc[0:0]  # what a baseline written before the table loads
    row = _scored(_rows(1, sha="bb", akid="evil"), old).iloc[0]
    assert _reason(row, "client_cert_changed") is None


_CELL = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "spiffe://x/y", "10.0.0.0/24"]))


@given(st.lists(st.tuples(_CELL, _CELL), max_size=30), st.lists(st.tuples(_CELL, _CELL), max_size=30))
def test_membership_equals_a_set_of_complete_rows(frame_rows: list[tuple[str | None, str | None]],
                                                  table_rows: list[tuple[str | None, str | None]]) -> None:
    """``_in`` answers as a set of the table's complete rows would: a missing cell never matches."""
    frame = pd.DataFrame(frame_rows, columns=["identity", "cert"], dtype=object)
    table = pd.DataFrame(table_rows, columns=["identity", "cert"], dtype=object)
    known = {r for r in table_rows if None not in r}
    want = [None not in r and r in known for r in frame_rows]
    assert _in(frame, table, ["identity", "cert"]).tolist() == want
    assert _in(frame, table, ["identity"]).tolist() == [
        r[0] is not None and r[0] in {t[0] for t in table_rows if t[0] is not None} for r in frame_rows]
