"""The observed set for --observed: PEM certificates (SPKI and cert hash, as openssl computes) or pin lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pins_support import make_cert, openssl_cert_hash, openssl_pin
from tlsdetect.pins.observed import read_observed
from tlsdetect.pins.rows import PolicyError


def test_pem_bundle_gives_spki_and_cert_hash(tmp_path: Path) -> None:
    pems = [make_cert("a.example")[1], make_cert("b.example", rsa_key=True)[1]]
    (tmp_path / "chain.pem").write_bytes(b"".join(pems))
    assert read_observed([str(tmp_path / "chain.pem")]) == {openssl_pin(p) for p in pems} | {
        openssl_cert_hash(p) for p in pems}


def test_pin_list(tmp_path: Path) -> None:
    pin = openssl_pin(make_cert("a.example")[1])
    (tmp_path / "pins.txt").write_text(f"# seen today\nsha256/{pin}\n\n{pin}  # again\n")
    assert read_observed([str(tmp_path / "pins.txt")]) == {pin}


@pytest.mark.parametrize(("text", "words"), [
    ("not-a-pin\n", "pins.txt:1: pin 'not-a-pin' is not valid base64"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad PEM certificate"),
])
def test_bad_observed_files(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "pins.txt").write_text(text)
    with pytest.raises(PolicyError, match=words):
        read_observed([str(tmp_path / "pins.txt")])
    with pytest.raises(PolicyError, match="cannot read"):
        read_observed([str(tmp_path / "missing")])
