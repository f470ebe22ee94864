"""TrustKit and OkHttp pin sets in JSON or YAML: the seed goldens and the refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.pins_support import DATA
from tlsdetect.pins.rows import PolicyError
from tlsdetect.pins.trustkit import read

P1 = "7HIpactkIAq2Y49orFOOQKurWxmmSFZhBCoQYcRhJ3Y="
P2 = "fwza0LRMXouZHRC8Ei+4PyuldPDcf3UKgO/04cDM1oE="
P3 = "r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="


def _key(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["expiry"], r["line"], r["format"])
            for r in rows]


def test_trustkit_json_seed_golden() -> None:
    got = read("tk.json", (DATA / "trustkit_seed.json").read_bytes())
    exp = dt.date(2027, 1, 1)
    assert _key(got.rows) == [
        ("example.com", True, P1, "any", exp, 10, "trustkit"),
        ("example.com", True, P2, "any", exp, 11, "trustkit"),
        ("beta.example.com", False, None, None, None, 14, "trustkit"),  # TSKExcludeSubdomainFromParentPolicy
    ]
    assert [(n["check"], n["domain"]) for n in got.notes] == [("report_only", "example.com")]


def test_okhttp_yaml_seed_golden() -> None:
    got = read("ok.yaml", (DATA / "okhttp_seed.yaml").read_bytes())
    assert _key(got.rows) == [
        ("example.com", True, P1, "any", None, 5, "okhttp"),
        ("example.com", True, P2, "any", None, 6, "okhttp"),
        ("api.example.net", False, P3, "any", None, 9, "okhttp"),
    ]


def test_trustkit_yaml_without_wrapper_and_tabbed_json() -> None:
    yml = f"TSKPinnedDomains:\n  a.com:\n    TSKPublicKeyHashes: [{P1}, {P2}]\n".encode()
    assert [r["line"] for r in read("t.yaml", yml).rows] == [3, 3]
    tabbed = ('{\n\t"TSKPinnedDomains": {\n\t\t"a.com": {"TSKPublicKeyHashes": ["' + P1 + '"]}}}').encode()
    assert [r["pin"] for r in read("t.json", tabbed).rows] == [P1]


@pytest.mark.parametrize(("text", "words"), [
    ("okhttp:\n  - pattern: a.com\n    pins: [sha1/AAAA]\n", "sha1/ pins are not read"),
    ("okhttp:\n  - pattern: a.com\n    pins: [" + P1 + "]\n", "starts with 'sha256/'"),
    ("okhttp:\n  - pattern: a.com\n", "needs 'pattern'"),
    ("TSKPinnedDomains:\n  a.com:\n    TSKPublicKeyHash: [x]\n", "unknown TrustKit key"),
    ("TSKPinnedDomains:\n  a.com:\n    TSKIncludeSubdomains: 1\n    TSKPublicKeyHashes: []\n", "true or false"),
    ("TSKPinnedDomains:\n  a.com: {}\n", "no TSKPublicKeyHashes"),
    ("TSKPinnedDomains:\n  a.com:\n    TSKPublicKeyHashes: [x]\n  a.com: {}\n", "duplicate key"),
    ("other: 1\n", "neither TSKPinnedDomains nor okhttp"),
    ("- 1\n", "expected a mapping"),
])
def test_refusals(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        read("t.yaml", text.encode())
