"""benchmarks/eval_quic_params.py: its vantage split by server port and its report, on real captured rows."""
from __future__ import annotations

import importlib.util
from types import ModuleType

import pandas as pd

from tests.conftest import ROOT
from tlsdetect.readers.pcap.engine import read_pcap


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_quic_params", ROOT / "benchmarks" / "eval_quic_params.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ep = _load()


def test_views_split_the_intercepted_capture_by_the_servers_port() -> None:
    df, _ = read_pcap(ROOT / "tests" / "data" / "quic" / "quic.pcapng")
    port = int(df["server_port"].iloc[0])
    views = ep.views({"later": df, "intercepted": df}, port)
    upstream = views["intercepted: capture (proxy's upstream)"]
    genuine = views["intercepted: inline_client (genuine hellos)"]
    assert len(upstream) + len(genuine) == len(df)
    assert set(upstream["server_port"].astype(int)) == {port}
    assert port not in set(genuine["server_port"].astype(int))
    pd.testing.assert_frame_equal(views["later (clean)"], df)


def test_report_has_a_row_per_scored_set_and_per_sender() -> None:
    row = {"rows": 6, "clients": {"127.0.0.1": 6}, "fingerprints": {"13n_a_b": 6}, "quic_params_changed": 6,
           "new_fingerprint_for_client": 6, "verdicts": {"intercepted": 6}}
    res = {"baseline": {"rows": 6, "fingerprints": {"127.0.0.1": ["12g_x_y"]}}, "upstream": row,
           "stacks": {"rows": [{"set": "upstream", "client": "127.0.0.1", "ja4": "q13i", "quic_tp": "13n_a_b",
                                "rows": 6}]}}
    text = ep.report(res, 3, "1.00 1.00 1.00 1/1 1")
    assert "| upstream | 6 | {'127.0.0.1': 6} | {'13n_a_b': 6} | 6 | 6 | {'intercepted': 6} |" in text
    assert "| upstream | 127.0.0.1 | `q13i` | `13n_a_b` | 6 |" in text
    assert "Load average while scoring: `1.00 1.00 1.00 1/1 1`." in text
