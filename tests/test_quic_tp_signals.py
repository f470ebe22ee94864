"""``quic_params_changed`` and ``quic_params_ua_mismatch``: a QUIC hello whose transport parameters the client
(or its User-Agent family) never sent; on real Chromium and aioquic hellos and through ``score``."""
from __future__ import annotations

import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.quic_tp_signals import MIN_LEARNED, difference, quic_params_signals
from tlsdetect.detect.scoring import score
from tlsdetect.detect.useragent import ua_family
from tlsdetect.readers.pcap.engine import read_pcap

from .test_quic_tp_fingerprint import AIOQUIC, CHROMIUM, QUIC_CAPTURE
from .test_transports import table

CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
JA4 = "q13d0312h3_55b375c5d22e_178839b6cec1"


def _rows(params: str, n: int, **kw: str) -> list[dict[str, str]]:
    return [{"transport": "quic", "ja4": JA4, "quic_transport_params": params, **kw}] * n


def _codes(df: pd.DataFrame, b: Baseline) -> list[list[str]]:
    ev = Evidence(len(df))
    quic_params_signals(df, b, df["client_ip"].astype("string"), ua_family(df["user_agent"]), ev)
    return [sorted(r["code"] for r in rs) for rs in ev.reasons()]


def test_real_aioquic_params_for_a_client_that_sent_chromiums_are_flagged_with_the_difference() -> None:
    df, _ = read_pcap(QUIC_CAPTURE)
    chromium = df["sni"].str.startswith("chromium").to_numpy()
    b = Baseline(model=False).fit(df[chromium])
    out = score(df, b)
    flagged = [any(r["code"] == "quic_params_changed" for r in rs) for rs in out["reasons"]]
    assert flagged == (~chromium).tolist()  # Chromium's own 3 (v1, v2, Retry) clean, aioquic's 2 flagged
    reason = next(r for r in out["reasons"].iloc[3] if r["code"] == "quic_params_changed")
    assert "(3 of 3 connections)" in reason["expected"]
    assert "values changed: 1: 30000 -> 60000, 4: 15728640 -> 1048576" in reason["observed"]
    assert out["verdict"].iloc[3] in ("suspicious", "intercepted")


def test_a_client_below_the_minimum_or_unknown_is_not_compared() -> None:
    b = Baseline(model=False).fit(table(_rows(CHROMIUM, MIN_LEARNED - 1) + _rows(CHROMIUM, MIN_LEARNED,
                                                                                      client_ip="10.0.0.2")))
    df = table(_rows(AIOQUIC, 1) + _rows(AIOQUIC, 1, client_ip="10.0.0.2") + _rows(AIOQUIC, 1, client_ip="10.0.0.3")
               + [{"transport": "tcp"}])
    assert _codes(df, b) == [[], ["quic_params_changed"], [], []]


def test_a_user_agent_whose_family_sent_other_params_is_flagged() -> None:
    b = Baseline(model=False).fit(table(_rows(CHROMIUM, MIN_LEARNED, user_agent=CHROME_UA, client_ip="10.0.0.5")))
    df = table(_rows(AIOQUIC, 1, user_agent=CHROME_UA) + _rows(CHROMIUM, 1, user_agent=CHROME_UA)
               + _rows(AIOQUIC, 1, user_agent="curl/8.0"))
    assert _codes(df, b) == [["quic_params_ua_mismatch"], [], []]


def test_a_baseline_without_the_tables_or_rows_without_params_add_nothing() -> None:
    b = Baseline(model=False).fit(table([{"transport": "tcp"}]))
    del b.quic_params_, b.quic_param_families_  # as a baseline object from before the tables
    assert _codes(table(_rows(AIOQUIC, 1)), b) == [[]]
    b = Baseline(model=False).fit(table(_rows(CHROMIUM, 3)))
    assert _codes(table([{"transport": "tcp"}, {"transport": "quic", "quic_transport_params": "bad,,"}]), b) == [[], []]


@pytest.mark.parametrize(("expected", "observed", "text"), [
    ("1,4_1=5,4=6", "1,4_1=5,4=6", "same ids and values"),
    ("1,4_1=5,4=6", "1,4,e_1=5,4=7", "ids added: e; values changed: 4: 6 -> 7"),
    ("1,4,grease_1=5", "1_1=5", "ids missing: 4,grease"),
])
def test_difference_names_ids_added_missing_and_values_changed(expected: str, observed: str, text: str) -> None:
    assert difference(expected, observed) == text


def test_real_mitmproxy_upstream_quic_is_flagged_and_the_genuine_legs_are_not() -> None:
    mitm = QUIC_CAPTURE.parent / "mitm"
    port = int((mitm / "server_port").read_text())
    b = Baseline(model=False).fit(read_pcap(mitm / "baseline.pcapng")[0])
    df, _ = read_pcap(mitm / "intercepted.pcapng")
    ev = Evidence(len(df))
    quic_params_signals(df, b, df["client_ip"].astype("string"), ua_family(df["user_agent"]), ev)
    fired = [any(r["code"] == "quic_params_changed" for r in rs) for rs in ev.reasons()]
    upstream = (df["server_port"].astype(int) == port).tolist()
    assert sum(upstream) == 6
    assert fired == upstream  # mitmproxy's own 6 legs; none of the clients' 6 genuine ones
    observed = next(r["observed"] for rs in ev.reasons() for r in rs)
    assert "ids added: 11,a,b,e" in observed  # aioquic's parameters in place of Chromium's
