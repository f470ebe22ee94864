"""Android network security config: the seed golden, inheritance, overrides, errors, real SPKIs."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.pins_support import DATA, Rule, make_cert, openssl_pin, rule_strategy
from tlsdetect.pins.android_nsc import read
from tlsdetect.pins.observed import spki_pin
from tlsdetect.pins.rows import PolicyError

P1 = "7HIpactkIAq2Y49orFOOQKurWxmmSFZhBCoQYcRhJ3Y="
P2 = "fwza0LRMXouZHRC8Ei+4PyuldPDcf3UKgO/04cDM1oE="
P3 = "r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="


def _rows(text: str) -> list[tuple[object, ...]]:
    got = read("nsc.xml", text.encode())
    return [(r["domain"], r["include_subdomains"], r["pin"], r["expiry"], r["line"]) for r in got.rows]


def test_seed_golden() -> None:
    got = read("seed.xml", (DATA / "android_seed.xml").read_bytes())
    exp = dt.date(2027, 1, 1)
    assert [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["expiry"], r["backup"], r["line"])
            for r in got.rows] == [
        ("example.com", True, P1, "any", exp, None, 12),
        ("example.com", True, P2, "any", exp, None, 14),
        ("api.example.com", False, P1, "any", exp, None, 12),  # inherits the parent's pin-set
        ("api.example.com", False, P2, "any", exp, None, 14),
        ("cdn.example.com", False, P3, "any", None, None, 25),  # its own pin-set: no expiry
        ("static.example.org", False, None, None, None, None, 30),  # no pins at all
    ]
    assert {r["format"] for r in got.rows} == {"android"}
    checks = [(n["check"], n["domain"], n["line"]) for n in got.notes]
    assert checks == [("override_pins", "example.com", 10), ("override_pins", "api.example.com", 20),
                      ("override_pins", "cdn.example.com", 23), ("debug_overrides", "", 32)]


def test_nested_trust_anchors_replace_the_parents() -> None:
    text = f"""<network-security-config>
  <base-config><trust-anchors><certificates src="user" overridePins="true"/></trust-anchors></base-config>
  <domain-config>
    <domain>a.com</domain>
    <pin-set><pin digest="SHA-256">{P1}</pin><pin digest="sha-256">{P2}</pin></pin-set>
    <domain-config>
      <domain>b.a.com</domain>
      <trust-anchors><certificates src="system"/></trust-anchors>
    </domain-config>
  </domain-config>
</network-security-config>"""
    got = read("n.xml", text.encode())
    assert [r["domain"] for r in got.rows] == ["a.com", "a.com", "b.a.com", "b.a.com"]
    assert [n["domain"] for n in got.notes] == ["a.com"]  # base-config's override reaches a.com, not b.a.com


@pytest.mark.parametrize(("body", "line", "words"), [
    ('<domain-config><domain>a.com</domain><pin-set><pin digest="SHA-1">x</pin></pin-set></domain-config>',
     2, "only SHA-256"),
    ('<domain-config><pin-set/></domain-config>', 2, "without a <domain>"),
    ('<base-config><pin-set/></base-config>', 2, "not allowed in <base-config>"),
    ('<domain-config><domain>a.com</domain><pin-set expiration="tomorrow"/></domain-config>', 2, "yyyy-MM-dd"),
    ('<domain-config><domain includeSubdomains="yes">a.com</domain></domain-config>', 2, "true or false"),
    ('<domain-config><domain>a.com</domain><pin-set><pin>x</pin></pin-set></domain-config>', 2, "without a digest"),
    ('<domain-config><domain>a.com</domain><pin-set/><pin-set/></domain-config>', 2, "more than one"),
])
def test_structure_errors(body: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        read("n.xml", f"<network-security-config>\n{body}\n</network-security-config>".encode())
    assert err.value.line == line
    assert words in err.value.message


def test_wrong_root() -> None:
    with pytest.raises(PolicyError, match="not <network-security-config>"):
        read("n.xml", b"<manifest/>")


def test_real_spkis_cross_checked_with_openssl() -> None:
    """Pins made with cryptography equal the openssl pipeline's, and come back unchanged from the file."""
    certs = [make_cert("leaf.example.com"), make_cert("ca.example.com", rsa_key=True)]
    pins = [spki_pin(c) for c, _ in certs]
    assert pins == [openssl_pin(pem) for _, pem in certs]
    text = ("<network-security-config><domain-config><domain>example.com</domain><pin-set expiration='2027-05-01'>"
            + "".join(f'<pin digest="SHA-256">\n  {p}\n</pin>' for p in pins)
            + "</pin-set></domain-config></network-security-config>")
    assert [r[2] for r in _rows(text)] == pins


@given(st.lists(rule_strategy(), min_size=1, max_size=4))
def test_round_trip(rules: list[Rule]) -> None:
    """Each rule written as a domain-config reads back as its pins, expiry and includeSubdomains."""
    parts = ["<network-security-config>"]
    want = []
    for domain, subs, expiry, pins in rules:
        parts.append("<domain-config>")
        parts.append(f'<domain includeSubdomains="{str(subs).lower()}">{domain}</domain>')
        parts.append(f'<pin-set expiration="{expiry.isoformat()}">' if expiry else "<pin-set>")
        for value, _kind, _backup in pins:
            parts.append(f'<pin digest="SHA-256">{value}</pin>')
            want.append((domain, subs, value, expiry, len(parts)))
        parts += ["</pin-set>", "</domain-config>"]
    parts.append("</network-security-config>")
    assert _rows("\n".join(parts)) == want
