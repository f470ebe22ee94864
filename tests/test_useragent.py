"""User-Agent -> stack family: real User-Agent strings, unknown ones, and per-distinct-value broadcasting."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.detect.useragent import FAMILIES, family_of_stack, ua_family

#: Real User-Agent strings and the TLS stack each one brings (by reading them, not by running the code).
KNOWN = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36": "chromium",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36 Edg/126.0.0.0": "chromium",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0": "firefox",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "FxiOS/127.0 Mobile/15E148 Safari/605.1.15": "firefox",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15": "safari",
    "curl/8.5.0": "curl",
    "Wget/1.21.4": "wget",
    "python-requests/2.32.3": "python",
    "Python-urllib/3.11": "python",
    "Go-http-client/2.0": "go",
    "okhttp/4.12.0": "java",
    "Java/17.0.2": "java",
    "axios/1.7.2": "node",
    "envoy/1.30.1": "envoy",
}


def test_known_user_agents_map_to_their_stack() -> None:
    got = ua_family(pd.Series(list(KNOWN)))
    assert got.tolist() == list(KNOWN.values())
    assert set(KNOWN.values()) <= set(FAMILIES)


def test_missing_and_unrecognised_are_na_and_the_index_is_kept() -> None:
    s = pd.Series([None, "SomeBot/1.0", "", "curl/8.0"], index=[10, 11, 12, 13])
    got = ua_family(s)
    assert list(got.index) == [10, 11, 12, 13]
    assert got.isna().tolist() == [True, True, True, False]
    assert got.iloc[3] == "curl"
    assert isinstance(got.dtype, pd.CategoricalDtype)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from([*KNOWN, "nothing/1"])), max_size=30))
def test_a_column_gives_each_row_what_that_value_gives_alone(values: list[str | None]) -> None:
    """Computed once per distinct value and broadcast: every row as if classified by itself."""
    got = ua_family(pd.Series(values, dtype=object))
    for v, fam in zip(values, got.tolist(), strict=True):
        assert (None if pd.isna(fam) else fam) == (None if v is None else KNOWN.get(v))


def test_family_of_stack_names() -> None:
    assert family_of_stack("Chrome") == "chromium"
    assert family_of_stack("Mozilla Firefox") == "firefox"
    assert family_of_stack(" nodejs ") == "node"
    assert family_of_stack("gnutls-cli 3.8") == "gnutls"  # by its first word
    assert family_of_stack("curl/8.5.0 (custom build)") == "curl"  # by the User-Agent rules
    assert family_of_stack("Acme Appliance") is None
    assert family_of_stack("") is None
    assert family_of_stack(None) is None
