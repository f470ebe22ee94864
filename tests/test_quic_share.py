"""``quic_share_dropped``: the network's QUIC share to QUIC-capable servers fell; on tables, its bound, and on
real Chromium captures before (QUIC + TCP) and after (TCP only) QUIC was taken away."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.conftest import ROOT
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.quic_share import MIN_INPUT, quic_share_signal, tail_bound
from tlsdetect.detect.scoring import score
from tlsdetect.readers.pcap.engine import read_pcap

from .test_transports import table

QUIC = {"transport": "quic", "ja4": "q13d0312h3_55b375c5d22e_178839b6cec1"}
TCP = {"transport": "tcp", "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}
CAPTURES = ROOT / "tests" / "data" / "quic"


def _baseline() -> Baseline:
    """Ten clients; a.test and b.test mostly over QUIC (16 of 20), c.test TCP only, d.test QUIC once."""
    rows = []
    for i in range(10):
        ip = f"10.0.0.{i + 1}"
        rows += [{"sni": s, "client_ip": ip, **(QUIC if i < 8 else TCP)} for s in ("a.test", "b.test")]
        rows += [{"sni": "c.test", "client_ip": ip, **TCP}]
    rows += [{"sni": "d.test", "client_ip": "10.0.0.1", **QUIC}]
    return Baseline(model=False).fit(table(rows))


def _fired(df: pd.DataFrame, b: Baseline) -> list[bool]:
    ev = Evidence(len(df))
    quic_share_signal(df, b, df["client_ip"].astype("string"), ev)
    return [any(r["code"] == "quic_share_dropped" for r in rs) for rs in ev.reasons()]


def _later(n_tcp: int, n_quic: int = 0, servers: tuple[str, ...] = ("a.test", "b.test")) -> pd.DataFrame:
    """New clients (never in the baseline): ``n_tcp`` TCP and ``n_quic`` QUIC rows over ``servers``, then c.test."""
    rows = [{"sni": servers[i % len(servers)], "client_ip": f"10.1.0.{i}", **TCP} for i in range(n_tcp)]
    rows += [{"sni": servers[i % len(servers)], "client_ip": f"10.1.1.{i}", **QUIC} for i in range(n_quic)]
    return table([*rows, {"sni": "c.test", "client_ip": "10.1.2.1", **TCP}])


def test_tcp_only_to_quic_capable_servers_from_new_clients_is_flagged() -> None:
    assert _fired(_later(6), _baseline()) == [True] * 6 + [False]  # c.test was always TCP: not evidence


def test_an_ordinary_mix_or_too_little_evidence_is_not() -> None:
    b = _baseline()
    assert not any(_fired(_later(2, 8), b))  # 80% QUIC, as before
    assert not any(_fired(_later(MIN_INPUT - 1), b))  # too few connections
    assert not any(_fired(_later(8, servers=("a.test",)), b))  # one server: quic_blocked's case, not a network's
    assert not any(_fired(_later(8, servers=("d.test", "c.test")), b))  # d.test: one QUIC connection only


def test_tail_bound_is_exact_at_zero_and_one_when_not_below() -> None:
    assert tail_bound(0, 5, 0.9) == pytest.approx(0.1**5)
    assert tail_bound(8, 10, 0.8) == 1.0
    assert tail_bound(0, 0, 0.5) == 1.0
    exact = sum(math.comb(40, i) * 0.5**40 for i in range(5))
    assert exact <= tail_bound(4, 40, 0.5) < 1e-3  # a bound, above the exact tail


def test_through_score_with_its_evidence() -> None:
    out = score(_later(6), _baseline())
    reason = next(r for r in out["reasons"].iloc[0] if r["code"] == "quic_share_dropped")
    assert reason["expected"].startswith("80% QUIC: 16 of 20 connections to 2 QUIC-capable servers")
    assert reason["observed"].startswith("0% QUIC: 0 of 6 connections to 2 of those servers from 6 clients")
    assert out["verdict"].iloc[0] == "suspicious"


@pytest.fixture(scope="module")
def share_captures() -> dict[str, pd.DataFrame]:
    return {p: read_pcap(CAPTURES / "share" / f"{p}.pcapng")[0] for p in ("baseline", "later_clean", "later_blocked")}


def _flagged(scored: pd.DataFrame) -> list[str]:
    return [str(s) for s, rs in zip(scored["sni"], scored["reasons"], strict=True)
            if any(r["code"] == "quic_share_dropped" for r in rs)]


def test_real_chromium_before_quic_and_tcp_after_tcp_only(share_captures: dict[str, pd.DataFrame]) -> None:
    b = Baseline(model=False).fit(share_captures["baseline"])
    assert _flagged(score(share_captures["later_clean"], b)) == []
    blocked = share_captures["later_blocked"]
    flagged = _flagged(score(blocked, b))
    assert sorted(s.split(".")[0] for s in flagged) == ["h1", "h1", "h2", "h3", "h4"]  # not h5: always TCP
    # the same TCP-only run against a baseline without QUIC is not evidence
    tcp_only = Baseline(model=False).fit(share_captures["baseline"][lambda d: d["transport"] == "tcp"])
    assert _flagged(score(blocked, tcp_only)) == []


def test_the_captures_are_what_their_sources_say(share_captures: dict[str, pd.DataFrame]) -> None:
    counts = {p: df["transport"].value_counts().to_dict() for p, df in share_captures.items()}
    assert counts == {"baseline": {"quic": 12, "tcp": 3}, "later_clean": {"quic": 4, "tcp": 1},
                      "later_blocked": {"tcp": 6}}
    assert (CAPTURES / "share" / "SOURCES.md").exists()
