"""Decrypting one TLS 1.3 flight: the chain of a flight sealed the way a server seals it, however its
messages are cut into records; every other ending is a named status, for any bytes."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_tls13_keys import seal
from tlsdetect.wire.tls import TLSParseError, parse_der_certificate
from tlsdetect.wire.tls13_flight import STATUSES, decrypt_flight, parse_certificate13
from tlsdetect.wire.tls13_keys import record_keys

SECRET = bytes(range(32))
CIPHER = 0x1303  # ChaCha20-Poly1305 (the suite round trips of every suite are test_tls13_keys')


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey) -> bytes:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(signer, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


CA_KEY, LEAF_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
CHAIN = (_cert("leaf.test", LEAF_KEY, "Test CA", CA_KEY), _cert("Test CA", CA_KEY, "Test CA", CA_KEY))


def _msg(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def certificate_body(ders: tuple[bytes, ...]) -> bytes:
    entries = b"".join(len(d).to_bytes(3, "big") + d + b"\x00\x00" for d in ders)
    return b"\x00" + len(entries).to_bytes(3, "big") + entries


def handshake(ders: tuple[bytes, ...] | None = CHAIN) -> bytes:
    """EncryptedExtensions, Certificate (unless None), CertificateVerify, Finished."""
    cert = b"" if ders is None else _msg(11, certificate_body(ders)) + _msg(15, b"\x04\x03\x00\x02ab")
    return _msg(8, b"\x00\x00") + cert + _msg(20, bytes(32))


def flight(hs: bytes, cuts: list[int] | None = None, secret: bytes = SECRET, inner: int = 22) -> bytes:
    """A server's bytes from its ServerHello record: plaintext hello, ChangeCipherSpec, then ``hs`` sealed
    in records cut at ``cuts``."""
    keys = record_keys(secret, CIPHER)
    points = sorted({0, *(c for c in (cuts or []) if 0 < c < len(hs)), len(hs)})
    records = [seal(keys, i, inner, hs[a:b]) for i, (a, b) in enumerate(itertools.pairwise(points))]
    hello = _msg(2, bytes(38))
    return bytes([22, 3, 3]) + len(hello).to_bytes(2, "big") + hello + bytes([20, 3, 3, 0, 1, 1]) + b"".join(records)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, 2000), max_size=6))
def test_the_chain_however_the_records_are_cut(cuts: list[int]) -> None:
    out = decrypt_flight(flight(handshake(), cuts), SECRET, CIPHER)
    assert out.status == "decrypted"
    assert out.certificates == tuple(parse_der_certificate(d) for d in CHAIN)
    assert out.certificates[0].subject == "CN=leaf.test"


def test_every_other_ending_has_its_name() -> None:
    good = flight(handshake())
    assert decrypt_flight(flight(handshake(None)), SECRET, CIPHER).status == "no_certificate"
    assert decrypt_flight(good, bytes(32), CIPHER).status == "decrypt_failed"
    assert decrypt_flight(good, SECRET, 0x1302).status == "unsupported_cipher"  # a 32-byte secret for SHA-384
    assert decrypt_flight(good, SECRET, 0xC02F).status == "unsupported_cipher"
    assert decrypt_flight(good[:200], SECRET, CIPHER).status == "flight_cut"
    assert decrypt_flight(b"", SECRET, CIPHER).status == "flight_cut"
    assert decrypt_flight(flight(handshake(), inner=23), SECRET, CIPHER).status == "malformed_flight"
    broken = _msg(8, b"\x00\x00") + _msg(11, b"\x00\x00\x00\x09" + bytes(9)) + _msg(20, bytes(32))
    assert decrypt_flight(flight(broken), SECRET, CIPHER).status == "malformed_flight"
    alert_first = bytes([21, 3, 3, 0, 2, 2, 40]) + good
    assert decrypt_flight(alert_first, SECRET, CIPHER).status == "malformed_flight"
    assert set(STATUSES) >= {"decrypted", "no_certificate", "decrypt_failed", "unsupported_cipher", "flight_cut",
                             "malformed_flight"}


def test_certificate13_framing() -> None:
    assert parse_certificate13(certificate_body(CHAIN)) == tuple(parse_der_certificate(d) for d in CHAIN)
    assert parse_certificate13(b"\x00\x00\x00\x00") == ()
    junk = parse_certificate13(certificate_body((b"not a certificate",)))
    assert junk[0].subject is None and junk[0].der_length == len(b"not a certificate")  # noqa: PT018
    for bad in (b"", b"\x05", certificate_body(CHAIN)[:-1], certificate_body(CHAIN) + b"\x00"):
        with pytest.raises(TLSParseError):
            parse_certificate13(bad)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_any_bytes_give_a_status(data: bytes) -> None:
    assert decrypt_flight(data, SECRET, CIPHER).status in STATUSES


@settings(max_examples=100, deadline=None)
@given(at=st.integers(0, 10_000), value=st.integers(0, 255))
def test_a_damaged_flight_gives_a_status(at: int, value: int) -> None:
    good = bytearray(flight(handshake(), [300]))
    good[at % len(good)] = value
    out = decrypt_flight(bytes(good), SECRET, CIPHER)
    assert out.status in STATUSES
    assert out.status != "decrypted" or out.certificates == tuple(parse_der_certificate(d) for d in CHAIN)
