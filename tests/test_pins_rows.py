"""Shared pin-set reader pieces (:mod:`tlsdetect.pins.rows`): domain and pin normalising, the one-line error,
the table's dtypes."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.pins.rows import (
    POLICY_COLUMNS,
    Collected,
    PolicyError,
    frame,
    hex_hash,
    normalise_domain,
    parse_date,
    pin_problem,
    strip_sha256,
)


def test_domain_lowercase_no_dot_and_a_label() -> None:
    assert normalise_domain(" Example.COM. ", "p", 1) == "example.com"
    assert normalise_domain("bücher.example", "p", 1) == "xn--bcher-kva.example"


@pytest.mark.parametrize("bad", ["", ".", "a..b", "a b.com", "x" * 64 + ".com", "a/b", "*.a.com"])
def test_domain_rejected_with_the_line(bad: str) -> None:
    with pytest.raises(PolicyError) as err:
        normalise_domain(bad, "f.xml", 7)
    assert str(err.value).startswith("f.xml:7: ")
    assert "\n" not in str(err.value)


def test_pin_problems() -> None:
    good = base64.b64encode(bytes(32)).decode()
    assert pin_problem(good, "any") is None
    assert pin_problem(None, None) is None
    assert "not valid base64" in str(pin_problem("!!!!", "leaf"))
    assert "20 bytes" in str(pin_problem(base64.b64encode(bytes(20)).decode(), "ca"))
    assert pin_problem("ab" * 32, "cert") is None
    assert "64 hex" in str(pin_problem("zz" * 32, "cert"))


@given(st.text(max_size=80), st.sampled_from(["leaf", "ca", "any", "cert"]))
def test_pin_problem_never_raises(text: str, kind: str) -> None:
    assert pin_problem(text, kind) is None or isinstance(pin_problem(text, kind), str)


def test_okhttp_and_envoy_forms() -> None:
    assert strip_sha256(" sha256/AAAA= ") == "AAAA="
    assert strip_sha256("SHA256/AAAA=") == "AAAA="
    assert hex_hash("DF:6F:0A") == "df6f0a"


def test_dates() -> None:
    assert parse_date("2027-01-31", "p", 1) == dt.date(2027, 1, 31)
    assert parse_date(dt.datetime(2027, 1, 31, 5), "p", 1) == dt.date(2027, 1, 31)
    with pytest.raises(PolicyError, match="p:3: expiration '31/01/2027'"):
        parse_date("31/01/2027", "p", 3)


def test_frame_keeps_columns_and_none() -> None:
    c = Collected()
    c.pin("a.com", False, None, None, None, None, "p", 3, "tlsdetect")
    df = frame(c.rows)
    assert tuple(df.columns) == POLICY_COLUMNS
    assert df.loc[0, "pin"] is None
    assert df["line"].dtype == "Int64"
    empty = frame([])
    assert tuple(empty.columns) == POLICY_COLUMNS
    assert empty.empty


def test_error_without_line() -> None:
    assert str(PolicyError("f", None, "bad")) == "f: bad"
