"""SPKI pins (tlsdetect.wire.spki) equal the real openssl pipeline, on made and on captured certificates."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import PROJECT_PCAPS
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tshark import read_pcap_tshark
from tlsdetect.wire.spki import spki_der, spki_sha256
from tlsdetect.wire.tls import parse_der_certificate

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


def openssl_pin(der: bytes) -> str:
    """``openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64``."""
    pem = subprocess.run(["openssl", "x509", "-inform", "der", "-pubkey", "-noout"], input=der,
                         capture_output=True, check=True).stdout
    key = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pem, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=key, capture_output=True,
                            check=True).stdout
    return subprocess.run(["base64"], input=digest, capture_output=True, check=True).stdout.decode().strip()


def make_cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pin.test")])
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30)))
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algo).public_bytes(serialization.Encoding.DER)


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
KEYS: dict[str, Callable[[], PrivateKey]] = {
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


@needs_openssl
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_pin_equals_openssl_pipeline(kind: str) -> None:
    key = KEYS[kind]()
    der = make_cert(key)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki_der(der) == spki
    assert spki_sha256(der) == openssl_pin(der)
    assert parse_der_certificate(der).spki == spki_sha256(der)


def captured_ders(pcap: Path) -> list[bytes]:
    """Every certificate tshark dissects in a capture, as DER (Wireshark's reading, not ours)."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tls.handshake.certificate", "-T", "fields",
                          "-e", "tls.handshake.certificate"], capture_output=True, check=True, text=True).stdout
    return [bytes.fromhex(h.replace(":", "")) for line in out.split() for h in line.split(",") if h]


@needs_openssl
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("engine", ["fast", "reassembling", "tshark"])
@pytest.mark.parametrize("name", ["intercepted.pcapng", "tls12_stacks.pcap"])
def test_captured_chains_carry_openssl_pins(name: str, engine: str) -> None:
    """Every certificate of a real capture (mitmproxy's forgeries, the sample CA chain) has the pin openssl
    computes from the bytes tshark extracts, in the chain JSON and (leaf) the column; the mTLS client's
    leaf in ``peer_spki_sha256`` (its chain beyond the leaf is not a column)."""
    pcap = PROJECT_PCAPS / name
    expected = {openssl_pin(der) for der in captured_ders(pcap)}
    assert len(expected) >= 1
    df = (read_pcap_tshark(pcap) if engine == "tshark" else read_pcap(pcap, fast_lane=engine == "fast"))[0]
    chains = [json.loads(c) for c in df["server_chain"].dropna().astype(str)]
    seen = {cert["spki"] for chain in chains for cert in chain}
    peers = set(df["peer_spki_sha256"].dropna().astype(str))  # the mTLS client's leaf (tshark shows it too)
    assert seen <= expected
    assert peers <= expected
    assert len(expected - seen - peers) <= len(peers)  # at most the client's intermediates, not stored
    leaf = df["server_chain"].notna()
    assert (df.loc[leaf, "server_spki_sha256"].astype(str).tolist()
            == [chain[0]["spki"] for chain in chains])


@given(st.binary(max_size=400))
def test_any_bytes_give_a_pin_or_none(data: bytes) -> None:
    pin = spki_sha256(data)
    assert pin is None or len(pin) == 44


def test_cut_certificates_give_none() -> None:
    der = make_cert(ec.generate_private_key(ec.SECP256R1()))
    assert spki_sha256(der) is not None
    for cut in range(0, len(der) - 1, 7):
        got = spki_der(der[:cut])
        assert got is None or got == spki_der(der)  # a cut after the SPKI may still find it
    assert spki_der(b"\x31" + der[1:]) is None  # not a SEQUENCE
