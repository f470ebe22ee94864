"""Issuer policies (tlsdetect.pins.issuer_policy): the file format, its errors, and who breaks a rule."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import PROJECT_PCAPS
from tlsdetect import schema
from tlsdetect.pins.issuer_policy import ISSUER_RULE_COLUMNS, issuer_violations, parse_issuer_policy
from tlsdetect.pins.rows import PolicyError
from tlsdetect.readers.pcap.engine import read_pcap

INTER = "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"


def test_format_rules_share_names_and_dns_compare_canonically() -> None:
    rules = parse_issuer_policy("tlsdetect-issuers 1\n# comment\nname a.test\nname *.b.test\n"
                                "issuer O=Example, CN=Issuer 1   # other order and spacing\n"
                                "name c.test\nca-spki sha256/" + "A" * 43 + "=\n")
    assert rules[["pattern", "what"]].values.tolist() == [["a.test", "issuer"], ["*.b.test", "issuer"],
                                                          ["c.test", "ca-spki"]]
    assert rules["value"].iloc[2] == "A" * 43 + "="
    assert rules["line"].tolist() == [5, 5, 7]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("name a.test\n", 1, "first line"),
    ("tlsdetect-issuers 1\nissuer CN=x\n", 2, "before any 'name'"),
    ("tlsdetect-issuers 1\nname bad host\nissuer CN=x\n", 2, "not a host name"),
    ("tlsdetect-issuers 1\nname a.test\nca-spki nothex\n", 3, "base64 SHA-256"),
    ("tlsdetect-issuers 1\nname a.test\nallow everything\n", 3, "expected"),
    ("", None, "empty"),
])
def test_bad_lines_are_one_line_errors(text: str, line: int | None, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_issuer_policy(text, "p.txt")
    assert err.value.line == line
    assert words in str(err.value)
    assert "\n" not in str(err.value)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_a_policy_error(text: str) -> None:
    message = ""
    try:
        rules = parse_issuer_policy("tlsdetect-issuers 1\n" + text)
    except PolicyError as exc:
        message = str(exc)
    else:
        assert list(rules.columns) == list(ISSUER_RULE_COLUMNS)
    assert "\n" not in message  # an error is one line, whatever the input


def test_intercepted_legs_break_the_rule_by_dn_and_by_key() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "intercepted.pcapng")
    by_dn = parse_issuer_policy(f"tlsdetect-issuers 1\nname *.sample.tlsdetect.test\nissuer {INTER}\n")
    bad = issuer_violations(by_dn, df)
    assert len(bad) == 6
    assert set(schema.as_text(df["server_issuer"]).iloc[bad["row"]]) == {"O=mitmproxy,CN=mitmproxy"}
    clean, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    assert len(issuer_violations(by_dn, clean)) == 0
    inter_pin = json.loads(str(clean["server_chain"].iloc[0]))[1]["spki"]
    by_key = parse_issuer_policy(f"tlsdetect-issuers 1\nname *\nca-spki {inter_pin}\n")
    assert len(issuer_violations(by_key, clean)) == 0
    assert len(issuer_violations(by_key, df)) == 6  # TLS 1.3 legs show no issuer and no chain: not judged


def test_most_specific_name_governs() -> None:
    rules = parse_issuer_policy("tlsdetect-issuers 1\nname *\nissuer CN=Public CA\nname *.corp.test\n"
                                "issuer CN=Corp CA\nname www.corp.test\nissuer CN=Public CA\n")
    df = schema.conform(pd.DataFrame({"sni": ["a.corp.test", "www.corp.test", "x.org", "a.corp.test"],
                                      "server_issuer": ["CN=Corp CA", "CN=Public CA", "CN=Corp CA", None]}))
    bad = issuer_violations(rules, df)
    assert bad[["row", "pattern"]].values.tolist() == [[2, "*"]]
