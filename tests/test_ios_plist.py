"""iOS Info.plist: NSPinnedDomains with both identity kinds, XML and binary, and TrustKit inside."""

from __future__ import annotations

import plistlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pins_support import DATA, make_cert, openssl_pin
from tlsdetect.pins.ios_plist import read
from tlsdetect.pins.rows import PolicyError

P1 = "7HIpactkIAq2Y49orFOOQKurWxmmSFZhBCoQYcRhJ3Y="
P2 = "fwza0LRMXouZHRC8Ei+4PyuldPDcf3UKgO/04cDM1oE="
P3 = "r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="
GOLDEN = [
    ("example.com", True, P3, "ca", 19),
    ("example.com", True, P1, "leaf", 26),
    ("example.com", True, P2, "leaf", 30),
    ("login.example.net", False, P1, "leaf", 40),
]


def _key(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["line"]) for r in rows]


def test_xml_seed_golden() -> None:
    got = read("Info.plist", (DATA / "ios_seed.plist").read_bytes())
    assert _key(got.rows) == GOLDEN
    assert {(r["expiry"], r["backup"], r["format"]) for r in got.rows} == {(None, None, "ios")}


def test_binary_plist_gives_the_same_pins_without_lines() -> None:
    binary = plistlib.dumps(plistlib.loads((DATA / "ios_seed.plist").read_bytes()), fmt=plistlib.FMT_BINARY)
    got = read("Info.plist", binary)
    assert _key(got.rows) == [(*g[:4], None) for g in GOLDEN]


def test_domain_without_identities_is_a_rule_without_pins() -> None:
    data = plistlib.dumps({"NSAppTransportSecurity": {"NSPinnedDomains": {"a.com": {"NSIncludesSubdomains": True}}}})
    line = next(n for n, text in enumerate(data.decode().splitlines(), 1) if "<key>a.com</key>" in text)
    assert _key(read("p", data).rows) == [("a.com", True, None, None, line)]


def test_trustkit_in_info_plist() -> None:
    pem_pins = [openssl_pin(make_cert(f"k{i}.example")[1]) for i in range(2)]
    data = plistlib.dumps({"TSKConfiguration": {"TSKPinnedDomains": {"a.com": {
        "TSKPublicKeyHashes": pem_pins, "TSKExpirationDate": "2027-02-01"}}}}, fmt=plistlib.FMT_BINARY)
    rows = read("p", data).rows
    assert [r["pin"] for r in rows] == pem_pins
    assert {r["format"] for r in rows} == {"trustkit"}


@pytest.mark.parametrize(("top", "words"), [
    ({"CFBundleIdentifier": "x"}, "no NSAppTransportSecurity"),
    ({"NSAppTransportSecurity": {"NSPinnedDomains": ["a.com"]}}, "must be a dictionary"),
    ({"NSAppTransportSecurity": {"NSPinnedDomains": {"a.com": {"NSIncludesSubdomains": "yes"}}}}, "boolean"),
    ({"NSAppTransportSecurity": {"NSPinnedDomains": {"a.com": {"NSPinnedCAIdentities": [{"SPKI": "x"}]}}}},
     "no SPKI-SHA256-BASE64"),
    ({"NSAppTransportSecurity": {"NSPinnedDomains": {"a.com": {"NSPinnedLeafIdentities": "x"}}}}, "an array"),
])
def test_structure_errors(top: dict[str, object], words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        read("p", plistlib.dumps(top))


@pytest.mark.parametrize("data", [
    b"bplist00\x00\x01\x02",
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaa">]><plist><dict><key>&a;</key></dict></plist>',
    b"<plist><array><string>x</string></array></plist>",
    b"<plist><dict><key>a</key>",
])
def test_hostile_or_broken_plists_are_one_line(data: bytes) -> None:
    with pytest.raises(PolicyError) as err:
        read("p", data)
    assert "\n" not in str(err.value)


BINARY_SEED = plistlib.dumps(plistlib.loads((DATA / "ios_seed.plist").read_bytes()), fmt=plistlib.FMT_BINARY)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(BINARY_SEED) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_binary_plists_never_crash(flips: list[tuple[int, int]]) -> None:
    """plistlib's binary parser meets corrupt offsets and sizes: a PolicyError or pins, never a trace."""
    raw = bytearray(BINARY_SEED)
    for at, value in flips:
        raw[at] = value
    message = None
    try:
        rows = read("p", bytes(raw)).rows
    except PolicyError as exc:
        message, rows = str(exc), []
    assert message is None or "\n" not in message
    assert all(r["line"] is None for r in rows)
