"""Keys, certificates and the openssl pipeline for the pin-set tests (real parts: cryptography, openssl)."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st

DATA = Path(__file__).parent / "data" / "pins"


def make_cert(cn: str, *, rsa_key: bool = False) -> tuple[x509.Certificate, bytes]:
    """A fresh self-signed certificate and its PEM (EC P-256, or RSA 2048)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else ec.generate_private_key(
            ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, cert.public_bytes(Encoding.PEM)


def key_pem(cert_cn: str) -> tuple[bytes, bytes]:
    """A certificate PEM and its private key PEM (for a server that must really start)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert_cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM), key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def openssl_pin(pem: bytes) -> str:
    """The SPKI pin by the documented pipeline: x509 -pubkey | pkey -pubin -outform der | dgst | base64."""
    cmd = ("openssl x509 -noout -pubkey | openssl pkey -pubin -outform der | "
           "openssl dgst -sha256 -binary | base64")
    return subprocess.run(["sh", "-c", cmd], input=pem, capture_output=True, check=True).stdout.decode().strip()


def openssl_cert_hash(pem: bytes) -> str:
    """SHA-256 of the DER certificate with openssl, as Envoy's ``verify_certificate_hash`` wants it (hex)."""
    cmd = "openssl x509 -outform der | openssl dgst -sha256 -hex"
    out = subprocess.run(["sh", "-c", cmd], input=pem, capture_output=True, check=True).stdout.decode()
    return out.strip().split()[-1].lower()


Rule = tuple[str, bool, dt.date | None, list[tuple[str, str, bool]]]


def rule_strategy() -> st.SearchStrategy[Rule]:
    """Hypothesis: a rule (domain, include_subdomains, expiry, [(pin, kind, backup)]) with 1-4 pins."""
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
    domain = st.lists(label, min_size=1, max_size=3).map(lambda xs: ".".join([*xs, "test"]))
    pin = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
    entry = st.tuples(pin, st.sampled_from(["leaf", "ca", "any"]), st.booleans())
    expiry = st.none() | st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1))
    return st.tuples(domain, st.booleans(), expiry, st.lists(entry, min_size=1, max_size=4))
