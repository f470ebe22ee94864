"""scripts/eval_quic_blocked.py: its page (one connection per host), its report, and its scoring path."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, load_script, needs_tshark

eq = load_script("eval_quic_blocked")


def test_the_page_pulls_one_image_from_every_other_host(tmp_path: Path) -> None:
    eq.write_docroot(tmp_path, 4433)
    page = (tmp_path / "page.html").read_text()
    assert [h for h in eq.HOSTS[1:] if f"https://{h}:4433/pixel.txt" in page] == list(eq.HOSTS[1:])
    assert eq.HOSTS[0] not in page
    assert len(set(eq.HOST_IP.values())) == len(eq.HOSTS)  # no two hosts share an address: no pooling


def test_report_has_a_row_per_phase_with_the_flagged_servers() -> None:
    res = {"baseline": {"rows": 10, "by_transport": {"quic": 8}, "quic_blocked_rows": 0, "flagged_servers": [],
                        "verdicts": {}, "codes": []},
           "later_blocked": {"rows": 6, "by_transport": {"tcp": 6}, "quic_blocked_rows": 5,
                             "flagged_servers": ["h1.sample.tlsdetect.test"], "verdicts": {"suspicious": 5},
                             "codes": ["quic_blocked"]}}
    text = eq.report(res, 2)
    assert "| later_blocked | 6 | {'tcp': 6} | 5 | h1 | {'suspicious': 5} | quic_blocked |" in text
    assert "| baseline | 10 |" in text


@pytest.mark.slow
@needs_tshark
def test_a_later_run_equal_to_the_baseline_is_not_flagged() -> None:
    cap = ROOT / "tests" / "data" / "quic" / "quic.pcapng"
    res = eq.evaluate({"baseline": cap, "later_clean": cap, "later_blocked": cap})
    assert res["later_clean"]["rows"] == 5
    assert res["later_clean"]["quic_blocked_rows"] == 0
    assert res["later_clean"]["by_transport"] == {"quic": 5}
