"""The handshake parser's contract: a value, "need more", or TLSParseError — nothing else."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.wire.tls import (
    HRR_RANDOM,
    TLSParseError,
    is_grease,
    parse_certificate,
    parse_client_hello,
    parse_der_certificate,
    parse_server_hello,
    scan_records,
)


def _ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(data)) + data


def client_hello_body(
    *,
    version: int = 0x0303,
    ciphers: tuple[int, ...] = (0x1301, 0xC02F),
    extensions: bytes | None = None,
    session_id: bytes = b"",
) -> bytes:
    body = struct.pack(">H", version) + bytes(32) + bytes([len(session_id)]) + session_id
    body += struct.pack(">H", 2 * len(ciphers)) + b"".join(struct.pack(">H", c) for c in ciphers)
    body += b"\x01\x00"
    if extensions is not None:
        body += struct.pack(">H", len(extensions)) + extensions
    return body


def record(body: bytes, msg_type: int = 1, content: int = 22) -> bytes:
    msg = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    return bytes([content, 3, 1]) + struct.pack(">H", len(msg)) + msg


SNI = _ext(0, struct.pack(">HBH", 14, 0, 11) + b"example.com")
ALPN = _ext(16, struct.pack(">H", 12) + b"\x02h2\x08http/1.1")
GROUPS = _ext(10, struct.pack(">HHHH", 6, 0x0A0A, 0x001D, 0x0017))
POINTS = _ext(11, b"\x01\x00")
SIGS = _ext(13, struct.pack(">HHH", 4, 0x0403, 0x0804))
VERSIONS = _ext(43, b"\x04\x03\x04\x03\x03")


def test_client_hello_fields() -> None:
    hello = parse_client_hello(client_hello_body(extensions=SNI + ALPN + GROUPS + POINTS + SIGS + VERSIONS))
    assert hello.legacy_version == 0x0303
    assert hello.ciphers == (0x1301, 0xC02F)
    assert hello.extensions == (0, 16, 10, 11, 13, 43)
    assert hello.sni == "example.com"
    assert hello.alpn == (b"h2", b"http/1.1")
    assert hello.groups == (0x0A0A, 0x001D, 0x0017)
    assert hello.point_formats == (0,)
    assert hello.sig_algs == (0x0403, 0x0804)
    assert hello.supported_versions == (0x0304, 0x0303)


def test_client_hello_without_extensions() -> None:
    hello = parse_client_hello(client_hello_body(extensions=None))
    assert hello.extensions == ()
    assert hello.sni is None


def test_malformed_inner_extension_keeps_the_type() -> None:
    broken_groups = _ext(10, b"\x00\x08\x00\x1d")  # claims 8 bytes, has 2
    hello = parse_client_hello(client_hello_body(extensions=SNI + broken_groups))
    assert hello.extensions == (0, 10)
    assert hello.groups == ()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x03\x03",
        client_hello_body()[:40],
        client_hello_body(session_id=bytes(33)),
        client_hello_body()[:-3],
    ],
)
def test_malformed_client_hello_raises_parse_error(body: bytes) -> None:
    with pytest.raises(TLSParseError):
        parse_client_hello(body)


def test_server_hello_and_hrr() -> None:
    ext = _ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d")
    body = b"\x03\x03" + HRR_RANDOM + b"\x00" + b"\x13\x01" + b"\x00" + struct.pack(">H", len(ext)) + ext
    sh = parse_server_hello(body)
    assert sh.is_hello_retry_request
    assert sh.version == 0x0304
    assert sh.extensions == (43, 51)
    assert sh.cipher == 0x1301


def test_scan_records_joins_fragments_and_reports_need_more() -> None:
    msg_body = client_hello_body(extensions=SNI)
    whole = record(msg_body)
    # The same message split over two records, then cut short.
    msg = whole[5:]
    split = bytes([22, 3, 1]) + struct.pack(">H", 10) + msg[:10]
    split += bytes([22, 3, 1]) + struct.pack(">H", len(msg) - 10) + msg[10:]
    scan = scan_records(split)
    assert [m.msg_type for m in scan.messages] == [1]
    assert scan.messages[0].body == msg_body
    partial = scan_records(split[:-1])
    assert partial.messages == []
    assert partial.stop == "need_more"
    assert scan_records(b"GET / HTTP/1.1\r\n").stop == "not_tls"
    assert scan_records(whole + bytes([23, 3, 3, 0, 1, 0])).stop == "encrypted"



def test_scan_records_says_which_messages_lie_inside_what_it_consumed() -> None:
    # One record: a whole message and the first bytes of a second that continues in the next record.
    first = bytes([14, 0, 0, 0])
    second = bytes([13, 0, 0, 3, 1, 2, 3])
    head = bytes([22, 3, 3, 0, 6]) + first + second[:2]
    tail = bytes([22, 3, 3, 0, 5]) + second[2:]
    ccs = bytes([20, 3, 3, 0, 1, 1])
    cut = scan_records(head)
    assert [m.msg_type for m in cut.messages] == [14]
    assert (cut.consumed, cut.settled, cut.before_ccs) == (0, 0, None)  # a resumed scan finds the first again
    # A ChangeCipherSpec between the two halves does not move ``consumed`` past the cut message.
    split = scan_records(head + ccs + tail, after_ccs=True)
    assert [m.msg_type for m in split.messages] == [14, 13]
    assert (split.consumed, split.settled, split.before_ccs) == (len(head + ccs + tail), 2, 1)
    assert scan_records(head + ccs).consumed == 0

def test_grease_values() -> None:
    greases = [g for g in range(0x10000) if is_grease(g)]
    assert greases == [0x0A0A + 0x1010 * i for i in range(16)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_parsers_only_raise_parse_errors(data: bytes) -> None:
    for parse in (parse_client_hello, parse_server_hello, parse_certificate):
        with contextlib.suppress(TLSParseError):
            parse(data)
    with contextlib.suppress(TLSParseError):
        parse_client_hello(data, dtls=True)
    scan = scan_records(data)
    assert 0 <= scan.consumed <= len(data)
    assert scan.stop in {"need_more", "encrypted", "alert", "not_tls", "limit"}


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(min_value=0, max_value=2000), st.integers(0, 255))
def test_mutated_real_hello_never_crashes(ext: bytes, pos: int, value: int) -> None:
    """Byte flips in an otherwise well-formed hello: parse or TLSParseError, never anything else."""
    body = bytearray(client_hello_body(extensions=SNI + ALPN + GROUPS + SIGS + VERSIONS + _ext(0x4469, ext)))
    body[pos % len(body)] = value
    try:
        hello = parse_client_hello(bytes(body))
    except TLSParseError:
        return
    assert all(0 <= c <= 0xFFFF for c in hello.ciphers)
    assert all(0 <= e <= 0xFFFF for e in hello.extensions)


# ------------------------------------------------------------------------------ certificate identity

CA_SKI = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
LEAF_SKI = bytes.fromhex("fedcba9876543210fedcba9876543210fedcba98")


def make_cert(
    subject: str = "leaf.test",
    issuer: str = "Test Issuing CA",
    *,
    ski: bytes | None = LEAF_SKI,
    akid: bytes | None = CA_SKI,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A certificate with exactly the SKI/AKI given (None: no such extension), signed by ``key``."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(1000)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
    )
    if ski is not None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
    if akid is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(akid, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


def certificate_body(*certs: x509.Certificate) -> bytes:
    """A TLS <= 1.2 Certificate message body holding ``certs`` in order."""
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return len(chain).to_bytes(3, "big") + chain


def test_cert_info_carries_ski_and_akid() -> None:
    from tlsdetect.readers.pcap.tls_stream import chain_json

    ca = make_cert("Test Issuing CA", "Test Root", ski=CA_SKI, akid=None)
    leaf = make_cert()
    infos = parse_certificate(certificate_body(leaf, ca))
    assert (infos[0].ski, infos[0].akid) == (LEAF_SKI.hex(), CA_SKI.hex())
    assert (infos[1].ski, infos[1].akid) == (CA_SKI.hex(), None)
    assert infos[0].akid == infos[1].ski  # the leaf names the key of the CA that signed it
    assert infos[0].issuer == "CN=Test Issuing CA"
    chain = json.loads(chain_json(infos))
    assert [set(c) for c in chain] == [{"subject", "issuer", "sha256", "ski", "akid", "spki"}] * 2
    assert chain[0]["akid"] == chain[1]["ski"] == CA_SKI.hex()


def test_look_alike_ca_differs_only_in_akid() -> None:
    """Same issuer DN, another key: the DN matches, the AKI does not."""
    real = parse_der_certificate(make_cert().public_bytes(serialization.Encoding.DER))
    fake = parse_der_certificate(make_cert(akid=bytes(20)).public_bytes(serialization.Encoding.DER))
    assert real.issuer == fake.issuer
    assert real.akid != fake.akid == "00" * 20


def test_cert_without_key_identifiers() -> None:
    info = parse_der_certificate(make_cert(ski=None, akid=None).public_bytes(serialization.Encoding.DER))
    assert info.subject == "CN=leaf.test"
    assert (info.ski, info.akid) == (None, None)
    broken = parse_der_certificate(b"\x30\x03\x02\x01\x00")
    assert (broken.subject, broken.ski, broken.akid) == (None, None, None)


def test_certificate_with_an_unknown_version_is_kept_without_names() -> None:
    """cryptography raises ``InvalidVersion`` (not a ValueError) for an X.509 version other than 1-3:
    found by the engine fuzz test flipping the version byte of a real chain. The certificate keeps its
    SHA-256 and loses only the names; Envoy's logged PEM of it reads as no certificate."""
    import base64
    import hashlib

    from tlsdetect.readers.envoy.certs import pem_certificate

    der = make_cert().public_bytes(serialization.Encoding.DER)
    assert der.count(b"\xa0\x03\x02\x01\x02") == 1  # [0] EXPLICIT INTEGER 2 (v3)
    bad = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x04")
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(bad)
    (info,) = parse_certificate(certificate_body_from_ders(bad))
    assert (info.sha256, info.subject, info.issuer) == (hashlib.sha256(bad).hexdigest(), None, None)
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bad) + b"-----END CERTIFICATE-----\n"
    assert pem_certificate(pem.decode()) is None


def certificate_body_from_ders(*ders: bytes) -> bytes:
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return len(chain).to_bytes(3, "big") + chain
