"""JA4 parts and stack keys: the SNI flag of JA4_a is the connection's, not the stack's."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.detect import ja4_parts as ja4_parts_module
from tlsdetect.detect.ja4_parts import ja4_parts, learn_ja4_stacks, stack_a

# measured on loopback (see the module docstring): the same client to a name and to an IP literal
PAIRS = [
    ("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"),  # curl 7.88.1
    ("t13d311000_e8f1e7e78f70_1f22a2ca17c4", "t13i310900_e8f1e7e78f70_1f22a2ca17c4"),  # openssl s_client
    ("t13d181100_85036bcba153_d41ae481755e", "t13i181000_85036bcba153_d41ae481755e"),  # Python ssl
    ("t13d291300_723694b0fccc_2cc26d266019", "t13i291200_723694b0fccc_2cc26d266019"),  # gnutls-cli
    ("t13d1517h2_8daaf6152771_cb7bf5808d99", "t13i1516h2_8daaf6152771_cb7bf5808d99"),  # Chromium 156
]


def test_a_hello_without_sni_has_the_stack_of_the_same_client_with_sni() -> None:
    values = pd.Series([v for pair in PAIRS for v in pair], dtype="string")
    parts = ja4_parts(values)
    stacks = parts["stack"].tolist()
    for k in range(len(PAIRS)):
        assert stacks[2 * k] == stacks[2 * k + 1]
    assert len(set(stacks)) == len(PAIRS)  # different stacks stay apart
    assert parts.loc[0, "stack"] == "t13x3111h2_e8f1e7e78f70_b26ce05bbdd6"
    assert parts.loc[0, "ab"] == "t13x3111h2_e8f1e7e78f70"
    assert parts.loc[0, "a"] == "t13d3112h2"
    assert parts.loc[0, "c"] == "b26ce05bbdd6"


def test_values_that_are_not_ja4_keep_themselves_and_have_no_parts() -> None:
    parts = ja4_parts(pd.Series(["not-a-ja4", None, "T13D3112H2_E8F1E7E78F70_B26CE05BBDD6"], dtype="string"))
    assert parts.loc[0, "stack"] == "not-a-ja4"
    assert parts.loc[[0, 1], "ab"].isna().all()
    assert parts.loc[1, "stack"] is pd.NA
    assert parts.loc[2, "ab"] == "t13x3111h2_e8f1e7e78f70"  # case does not matter


def test_categorical_input_and_empty_input() -> None:
    cat = pd.Series([PAIRS[0][0], PAIRS[0][1], PAIRS[0][0]], dtype="category")
    assert ja4_parts(cat)["stack"].nunique() == 1
    empty = ja4_parts(pd.Series([], dtype="string"))
    assert len(empty) == 0
    assert list(empty.columns) == ["a", "b", "c", "stack_a", "ab", "stack"]


@given(proto=st.sampled_from("tqd"), version=st.sampled_from(["10", "11", "12", "13"]),
       ciphers=st.integers(0, 99), exts=st.integers(0, 97), alpn=st.sampled_from(["h2", "h1", "00", "h3"]))
def test_the_sni_extension_is_the_only_difference(proto: str, version: str, ciphers: int, exts: int,
                                                  alpn: str) -> None:
    """A ``d`` hello with n+1 extensions and an ``i`` hello with n have one stack ``a``; the ``d`` hello with
    n extensions does not."""
    with_sni = f"{proto}{version}d{ciphers:02d}{exts + 1:02d}{alpn}"
    without = f"{proto}{version}i{ciphers:02d}{exts:02d}{alpn}"
    other = f"{proto}{version}d{ciphers:02d}{exts:02d}{alpn}"
    got = stack_a(pd.Series([with_sni, without, other], dtype="string")).tolist()
    assert got[0] == got[1] != got[2]
    assert got[1] == f"{proto}{version}x{ciphers:02d}{exts:02d}{alpn}"


def test_learn_ja4_stacks_counts_per_client_origin_ab_and_c() -> None:
    ja4 = pd.Series([PAIRS[4][0], PAIRS[4][1], PAIRS[4][0], "t13d1517h2_8daaf6152771_000000000001", None, "junk"],
                    dtype="string")
    origin = pd.Series(["computed", "computed", "envoy", "envoy", "envoy", None], dtype="string")
    cid = pd.Series(["a", "a", "a", "a", "a", "a"], dtype="string")
    ts = pd.Series(pd.to_datetime([f"2026-01-01T00:00:0{i}Z" for i in range(6)], utc=True))
    got = learn_ja4_stacks(ja4, origin, cid, ts).sort_values(["origin", "ja4_c"]).reset_index(drop=True)
    assert got[["origin", "ja4_c", "count"]].values.tolist() == [
        ["computed", "cb7bf5808d99", 2], ["envoy", "000000000001", 1], ["envoy", "cb7bf5808d99", 1]]
    assert set(got["ja4_ab"]) == {"t13x1516h2_8daaf6152771"}
    assert got.loc[0, "first_seen"] == ts[0]
    assert got.loc[0, "last_seen"] == ts[1]


def test_a_capped_extension_count_is_not_corrected() -> None:
    """JA4 caps counts at 99: a ``d`` hello at 99 may have had more, so its count is kept."""
    assert stack_a(pd.Series(["t13d1599h2"], dtype="string")).tolist() == ["t13x1599h2"]


def test_remembered_parts_are_the_computed_ones() -> None:
    odd = ["not-a-ja4", None, " T13D3112H2_E8F1E7E78F70_B26CE05BBDD6 "]
    values = pd.Series([v for pair in PAIRS for v in pair] + odd, dtype="string")
    ja4_parts_module._MEMO.clear()
    cold = ja4_parts(values)
    assert len(ja4_parts_module._MEMO) == values.nunique()
    pd.testing.assert_frame_equal(ja4_parts(values), cold)
    for i in range(len(values)):  # one value alone (a one-row request) gets its row of the batch
        pd.testing.assert_frame_equal(ja4_parts(values.iloc[[i]]), cold.iloc[[i]].reset_index(drop=True))


def test_a_large_call_is_not_remembered_and_agrees_with_small_ones() -> None:
    many = [f"t13d{i % 90 + 10:02d}16h2_8daaf6152771_{i:012x}" for i in range(ja4_parts_module.MEMO_BATCH + 1)]
    big = pd.Series([*many, "not-a-ja4", None], dtype="string")
    ja4_parts_module._MEMO.clear()
    whole = ja4_parts(big)
    assert not ja4_parts_module._MEMO
    pieces = pd.concat([ja4_parts(big.iloc[k:k + 1000]) for k in range(0, len(big), 1000)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, pieces)
    assert whole.loc[0, "stack"] == "t13x1015h2_8daaf6152771_000000000000"


def test_some_columns_are_those_of_all_columns() -> None:
    """Scoring asks for two of the six columns (issue 18 #15): the same values, in the order asked."""
    values = pd.Series(["t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", None, "not-a-ja4",
                        "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"], dtype="string")
    whole = ja4_parts(values)
    for cols in (("ab", "c"), ("stack",), ("c", "a")):
        pd.testing.assert_frame_equal(ja4_parts(values, cols), whole[list(cols)])
    with pytest.raises(ValueError, match="'d'"):
        ja4_parts(values, ("ab", "d"))
