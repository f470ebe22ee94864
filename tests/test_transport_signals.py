"""``quic_blocked``: QUIC to a server in the baseline, only TCP to it now; on tables and through ``score``."""
from __future__ import annotations

import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.scoring import score
from tlsdetect.detect.transport_signals import MIN_QUIC, quic_blocked_signal

from .test_transports import table

QUIC = {"transport": "quic", "ja4": "q13d0312h3_55b375c5d22e_178839b6cec1"}
TCP = {"transport": "tcp", "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}


def _baseline() -> Baseline:
    rows = ([{"sni": "quic.test", **QUIC}] * MIN_QUIC + [{"sni": "quic.test", **TCP}]
            + [{"sni": "once.test", **QUIC}] * (MIN_QUIC - 1) + [{"sni": "tcp.test", **TCP}] * 3)
    return Baseline(model=False).fit(table(rows))


def _fired(df: pd.DataFrame, b: Baseline) -> list[bool]:
    ev = Evidence(len(df))
    quic_blocked_signal(df, b, df["client_ip"].astype("string"), ev)
    return [any(r["code"] == "quic_blocked" for r in rs) for rs in ev.reasons()]


def test_tcp_only_to_a_server_reached_over_quic_before_is_flagged() -> None:
    df = table([{"sni": "quic.test", **TCP}, {"sni": "QUIC.test", **TCP}, {"sni": "tcp.test", **TCP},
                {"sni": "once.test", **TCP}, {"sni": "new.test", **TCP}])
    assert _fired(df, _baseline()) == [True, True, False, False, False]


def test_any_quic_to_the_server_in_the_input_keeps_its_tcp_rows_clean() -> None:
    df = table([{"sni": "quic.test", **TCP}, {"sni": "quic.test", **QUIC}])
    assert _fired(df, _baseline()) == [False, False]


def test_another_client_and_a_baseline_without_the_table_are_not_compared() -> None:
    df = table([{"sni": "quic.test", "client_ip": "10.0.0.9", **TCP}])
    assert _fired(df, _baseline()) == [False]
    old = _baseline()
    del old.transports_  # a baseline object from before the table
    assert _fired(table([{"sni": "quic.test", **TCP}]), old) == [False]


def test_score_gives_the_reason_with_expected_and_observed() -> None:
    scored = score(table([{"sni": "quic.test", **TCP}] * 3), _baseline())
    reasons = [r for r in scored["reasons"].iloc[0] if r["code"] == "quic_blocked"]
    assert len(reasons) == 1
    assert reasons[0]["expected"] == f"quic ({MIN_QUIC} connections to this server in the baseline)"
    assert reasons[0]["observed"] == "tcp only (3 tcp, 0 quic connections in this input)"
    assert set(scored["verdict"].astype(str)) == {"suspicious"}
