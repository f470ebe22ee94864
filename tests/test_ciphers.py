"""``wire/ciphers.py``: one cipher-suite table, checked against Wireshark's, dpkt's and OpenSSL's own."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.craft import hypothesis_examples
from tlsdetect.wire.ciphers import IANA_NAMES, OPENSSL_NAMES, cipher_name, cipher_number, cipher_numbers


def test_iana_names_agree_with_dpkt() -> None:
    from dpkt import ssl_ciphersuites

    assert len(IANA_NAMES) > 300
    for code, name in IANA_NAMES.items():
        assert ssl_ciphersuites.BY_CODE[code].name == name


def test_iana_names_agree_with_wireshark() -> None:
    """tshark's value table for ``tls.handshake.ciphersuite`` names every entry the same way."""
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark not installed")
    out = subprocess.run([exe, "-G", "values"], capture_output=True, text=True, check=True).stdout
    wireshark = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] == "tls.handshake.ciphersuite":
            wireshark[int(parts[2])] = parts[3]
    assert len(wireshark) > 300
    assert {c: wireshark.get(c) for c in IANA_NAMES} == dict(IANA_NAMES)


def test_openssl_names_agree_with_openssl() -> None:
    """``openssl ciphers -V`` prints each suite's two code bytes beside its OpenSSL name."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl not installed")
    out = subprocess.run([exe, "ciphers", "-V", "ALL:COMPLEMENTOFALL"], capture_output=True, text=True,
                         check=True).stdout
    listed: dict[str, int] = {}
    for line in out.splitlines():
        pair, _, name = line.split()[:3]
        hi, lo = pair.split(",")
        listed[name] = int(hi, 16) << 8 | int(lo, 16)
    assert len(listed) > 50
    for name, code in listed.items():  # every suite this OpenSSL knows maps to its number
        assert OPENSSL_NAMES.get(name) == code, name
        assert cipher_number(name) == code


def test_every_name_maps_back_to_its_number() -> None:
    for code, name in IANA_NAMES.items():
        assert cipher_number(name) == code
        assert cipher_name(code) == name
    assert len(set(IANA_NAMES.values())) == len(IANA_NAMES)


@pytest.mark.parametrize(("text", "code"), [
    ("TLS_AES_128_GCM_SHA256", 0x1301),  # Zeek, and OpenSSL for TLS 1.3
    ("ECDHE-RSA-AES128-GCM-SHA256", 0xC02F),  # Envoy (BoringSSL)
    ("ecdhe-ecdsa-chacha20-poly1305", 0xCCA9),  # case does not matter
    (" TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 ", 0xC030),
    ("unknown-49199", 0xC02F),  # Zeek's name for a suite it does not know
    ("0x1303", 0x1303), ("4865", 0x1301),
    ("", None), ("-", None), ("NOT-A-CIPHER", None), ("0x10000", None), ("70000", None), ("0x1_301", None),
    ("\u0663", None),  # a non-ASCII digit is not a number here
    (None, None), (4865, None), (True, None),
])
def test_cipher_number(text: object, code: int | None) -> None:
    assert cipher_number(text) == code


def test_cipher_name_of_unnamed_and_invalid() -> None:
    assert cipher_name(0xFEFE) == "0xFEFE"
    for bad in (None, True, -1, 0x10000, "4865", 1.0):
        assert cipher_name(bad) is None


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(st.one_of(st.text(max_size=64), st.binary(max_size=16).map(lambda b: b.decode("latin-1")), st.none(),
                 st.integers()))
def test_garbage_is_missing_never_an_error(value: object) -> None:
    """A cipher name off a log that is garbage gives None (or a 16-bit number), never an exception."""
    got = cipher_number(value)
    assert got is None or 0 <= got <= 0xFFFF
    assert cipher_numbers([value, "TLS_AES_256_GCM_SHA384"]) == [got, 0x1302]
