"""tlsdetect's own pin format: the seed file read to the row, and each malformed line named."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.pins_support import DATA, Rule, rule_strategy
from tlsdetect.pins.pinfile import read
from tlsdetect.pins.rows import PolicyError

A = "r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="
B = "7HIpactkIAq2Y49orFOOQKurWxmmSFZhBCoQYcRhJ3Y="
C = "fwza0LRMXouZHRC8Ei+4PyuldPDcf3UKgO/04cDM1oE="


def test_seed_file_golden() -> None:
    path = str(DATA / "seed.pins")
    rows = read(path, (DATA / "seed.pins").read_bytes()).rows
    exp = dt.date(2027, 1, 1)
    got = [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["expiry"], r["backup"], r["line"])
           for r in rows]
    assert got == [
        ("example.com", True, A, "ca", exp, False, 4),
        ("example.com", True, B, "leaf", exp, False, 5),
        ("example.com", True, C, "leaf", exp, True, 6),
        ("static.example.com", False, None, None, None, None, 7),
    ]
    assert {r["format"] for r in rows} == {"tlsdetect"}
    assert {r["source"] for r in rows} == {path}


@pytest.mark.parametrize(("text", "line", "words"), [
    ("domain a.com\n", 1, "first line must be"),
    ("tlsdetect-pins 1\npin ca " + A + "\n", 2, "before any 'domain'"),
    ("tlsdetect-pins 1\ndomain a.com\npin root " + A + "\n", 3, "expected 'pin leaf|ca|any"),
    ("tlsdetect-pins 1\ndomain a.com\npin ca " + A + " spare\n", 3, "expected 'pin"),
    ("tlsdetect-pins 1\ndomain a.com expires 2027-13-01\n", 2, "not a yyyy-MM-dd date"),
    ("tlsdetect-pins 1\ndomain a.com subdomains subdomains\n", 2, "unexpected 'subdomains'"),
    ("tlsdetect-pins 1\ndomain\n", 2, "needs a name"),
    ("tlsdetect-pins 1\ndomain bad..name\n", 2, "not a valid host name"),
    ("tlsdetect-pins 1\nhost a.com\n", 2, "unknown keyword 'host'"),
    ("# only a comment\n", None, "empty"),
])
def test_bad_lines_are_named(text: str, line: int | None, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        read("p.pins", text.encode())
    assert err.value.line == line
    assert words in err.value.message
    assert "\n" not in str(err.value)


def test_not_utf8_names_the_line() -> None:
    with pytest.raises(PolicyError, match=r"p:2: not UTF-8"):
        read("p", b"tlsdetect-pins 1\n\xff\n")


@given(st.lists(rule_strategy(), min_size=1, max_size=5))
def test_round_trip(rules: list[Rule]) -> None:
    """Whatever rules are written in the format come back row for row, lines included."""
    lines = ["tlsdetect-pins 1"]
    want = []
    for domain, subs, expiry, pins in rules:
        lines.append(f"domain {domain.upper()}" + (" subdomains" if subs else "")
                     + (f" expires {expiry.isoformat()}" if expiry else ""))
        for value, kind, backup in pins:
            lines.append(f"  pin {kind} {'sha256/' if backup else ''}{value}" + (" backup" if backup else ""))
            want.append((domain, subs, value, kind, expiry, backup, len(lines)))
    got = read("r.pins", "\n".join(lines).encode()).rows
    assert [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["expiry"], r["backup"], r["line"])
            for r in got] == want
