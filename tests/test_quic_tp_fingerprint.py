"""``quic_tp_fingerprint``: one fingerprint per QUIC stack, whatever its order, GREASE or version; learned per
client and User-Agent family, saved and loaded with the baseline."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.craft import hypothesis_examples
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.quic_tp_fingerprint import normal_form, quic_tp_fingerprints
from tlsdetect.readers.pcap.engine import read_pcap

from .test_transports import table

QUIC_CAPTURE = ROOT / "tests" / "data" / "quic" / "quic.pcapng"
CHROMIUM = ("8=100,4=15728640,20=65536,11=00000001/00000001/grease,7=6291456,3=1472,6=6291456,grease,f,9=103,"
            "5=6291456,3128,1=30000")
AIOQUIC = "1=60000,4=1048576,5=1048576,6=1048576,7=1048576,8=128,9=128,a=3,b=25,e=8,f,11=00000001/00000001/6b3343cf"


@pytest.fixture(scope="module")
def captured() -> pd.DataFrame:
    df, _ = read_pcap(QUIC_CAPTURE)
    return df


def test_real_stacks_one_fingerprint_each_across_order_version_and_retry(captured: pd.DataFrame) -> None:
    fp = quic_tp_fingerprints(captured["quic_transport_params"])
    stack = captured["sni"].str.split("-").str[0]
    per_stack = fp.groupby(stack.to_numpy())["quic_tp"].unique().to_dict()
    assert {k: len(v) for k, v in per_stack.items()} == {"aioquic": 1, "chromium": 1}  # v1, v2, Retry: one
    assert per_stack["aioquic"][0] != per_stack["chromium"][0]
    id_orders = captured["quic_transport_params"].str.replace(r"=[^,]*", "", regex=True)
    assert id_orders.nunique() == 4  # Chromium: 3 connections, 3 orders; aioquic: 1
    assert per_stack["chromium"][0].startswith("12g_")
    assert per_stack["aioquic"][0].startswith("12n_")


def test_same_ids_other_values_share_the_ids_part_only() -> None:
    other = AIOQUIC.replace("4=1048576", "4=2097152")
    fp = quic_tp_fingerprints(pd.Series([AIOQUIC, other]))["quic_tp"].tolist()
    assert fp[0] != fp[1]
    assert fp[0].split("_")[:2] == fp[1].split("_")[:2]


def test_missing_and_unparsable_values_have_no_fingerprint() -> None:
    fp = quic_tp_fingerprints(pd.Series([None, "zz,1", "", CHROMIUM], dtype="string"))
    assert fp["quic_tp"].isna().tolist() == [True, True, True, False]
    assert fp["quic_tp_params"].iloc[3].startswith("1,3,4,5,6,7,8,9,f,11:g,20,3128,grease_1=30000,3=1472,")


@settings(max_examples=hypothesis_examples(100), deadline=None)
@given(st.permutations(CHROMIUM.split(",")), st.sampled_from(["grease", "grease,grease", "grease,2a"]))
def test_any_order_and_grease_draw_give_one_fingerprint(tokens: list[str], grease: str) -> None:
    shuffled = ",".join(t for t in tokens if t != "grease") + "," + grease.replace("2a", "grease")
    assert normal_form(shuffled) == normal_form(CHROMIUM)


def test_learned_per_client_and_family_and_kept_by_save(tmp_path: Path) -> None:
    rows = ([{"transport": "quic", "quic_transport_params": CHROMIUM, "user_agent": "Mozilla/5.0 Chrome/156.0"}] * 3
            + [{"transport": "quic", "quic_transport_params": AIOQUIC, "client_ip": "10.0.0.2"}]
            + [{"transport": "tcp"}])
    b = Baseline(model=False).fit(table(rows))
    learned = b.quic_params_.set_index("client_id")["count"].to_dict()
    assert learned == {"10.0.0.1": 3, "10.0.0.2": 1}
    assert b.quic_param_families_[["ua_family", "count"]].values.tolist() == [["chromium", 3]]
    back = Baseline.load(b.save(tmp_path / "b"))
    pd.testing.assert_frame_equal(back.quic_params_, b.quic_params_)
    pd.testing.assert_frame_equal(back.quic_param_families_, b.quic_param_families_)
    b.partial_fit(table(rows[:1]))
    assert b.quic_params_.set_index("client_id")["count"].to_dict() == {"10.0.0.1": 4, "10.0.0.2": 1}
