"""SCT log IDs of certificates: built with the extension by the test, and cross-checked with ``openssl x509
-text`` on the real leaves of the reference corpus (extracted by tshark)."""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import REFERENCE, needs_shared
from tlsdetect.wire import sct
from tlsdetect.wire.tls import parse_der_certificate

KEY = ec.generate_private_key(ec.SECP256R1())
LOG_A, LOG_B = bytes(range(32)), bytes(range(100, 132))


def sct_entry(log_id: bytes, when: int = 1_700_000_000_000) -> bytes:
    """One v1 SCT (RFC 6962 3.2) as it sits in the list: version, log id, timestamp, no extensions, a signature."""
    body = b"\x00" + log_id + when.to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03" + (4).to_bytes(2, "big") + b"sig!"
    return len(body).to_bytes(2, "big") + body


def sct_extension(*log_ids: bytes) -> x509.UnrecognizedExtension:
    """The SCT list extension: an OCTET STRING holding the TLS-encoded list (RFC 6962 3.3)."""
    entries = b"".join(sct_entry(i) for i in log_ids)
    listed = len(entries).to_bytes(2, "big") + entries
    return x509.UnrecognizedExtension(sct.SCT_OID, b"\x04" + _der_length(len(listed)) + listed)


def _der_length(n: int) -> bytes:
    return bytes([n]) if n < 128 else b"\x81" + bytes([n]) if n < 256 else b"\x82" + n.to_bytes(2, "big")


def make_leaf(name: str, *log_ids: bytes, raw_extension: x509.UnrecognizedExtension | None = None,
              not_before: dt.datetime | None = None, issuer: str = "Test CA", issuer_o: str | None = None) -> bytes:
    start = not_before or dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer),
                                 *([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_o)] if issuer_o else [])]))
         .public_key(KEY.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + dt.timedelta(days=90)))
    if log_ids:
        b = b.add_extension(sct_extension(*log_ids), critical=False)
    if raw_extension is not None:
        b = b.add_extension(raw_extension, critical=False)
    return b.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_log_ids_in_order_and_none() -> None:
    with_scts = x509.load_der_x509_certificate(make_leaf("a.example.com", LOG_A, LOG_B))
    assert sct.sct_log_ids(with_scts) == (base64.b64encode(LOG_A).decode(), base64.b64encode(LOG_B).decode())
    assert sct.sct_log_ids(x509.load_der_x509_certificate(make_leaf("b.example.com"))) == ()


def test_a_broken_list_is_unknown_not_none() -> None:
    broken = x509.UnrecognizedExtension(sct.SCT_OID, b"\x04\x03\x00\x09\x00")  # list claims 9 bytes, has 1
    cert = x509.load_der_x509_certificate(make_leaf("c.example.com", raw_extension=broken))
    assert sct.sct_log_ids(cert) is None


def test_the_parser_remembers_each_certificate() -> None:
    der = make_leaf("d.example.com", LOG_B, not_before=dt.datetime(2024, 5, 6, tzinfo=dt.UTC))
    info = parse_der_certificate(der)
    (found,) = sct.lookup([info.sha256])
    assert found is not None
    assert found.log_ids == (base64.b64encode(LOG_B).decode(),)
    assert found.not_before == dt.datetime(2024, 5, 6, tzinfo=dt.UTC)
    assert sct.lookup(["0" * 64]) == [None]


def test_a_cached_parse_puts_the_evidence_back() -> None:
    """The store may evict a certificate the parse cache still serves (a long process: CI's suite made
    test_spark_equals_local read null SCT columns); seeing the certificate again puts its evidence back."""
    der = make_leaf("e.example.com", LOG_B, not_before=dt.datetime(2024, 5, 6, tzinfo=dt.UTC))
    info = parse_der_certificate(der)
    with sct._LOCK:
        sct._STORE.pop(info.sha256)  # as eviction does
    assert sct.lookup([info.sha256]) == [None]
    again = parse_der_certificate(der)  # a parse-cache hit
    assert again is info
    (found,) = sct.lookup([info.sha256])
    assert found is not None
    assert found.log_ids == (base64.b64encode(LOG_B).decode(),)


def test_the_store_is_bounded_and_shared_by_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sct, "MAX_CERTIFICATES", 8)
    cert = x509.load_der_x509_certificate(make_leaf("e.example.com", LOG_A))

    def fill(prefix: str) -> None:
        for i in range(50):
            sct.keep(f"{prefix}{i:060d}", sct.evidence(cert))

    threads = [threading.Thread(target=fill, args=(p,)) for p in ("aaaa", "bbbb", "cccc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sct._STORE) == 8
    sct.keep("f" * 64, sct.evidence(cert))
    assert sct.lookup(["f" * 64])[0] is not None


def _openssl_log_ids(der: bytes) -> list[str]:
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der, capture_output=True,
                          check=True).stdout.decode()
    out = []
    for m in re.finditer(r"Log ID\s*:\s*((?:[0-9A-F]{2}:?\s*)+)", text):
        out.append(base64.b64encode(bytes.fromhex(re.sub(r"[:\s]", "", m.group(1)))).decode())
    return out


@pytest.mark.slow
@needs_shared("pcaps/reference")
@pytest.mark.parametrize("name", ["browsers-x509.pcapng", "latest.pcapng", "tls-handshake.pcapng"])
def test_log_ids_equal_openssl_on_real_leaves(name: str) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    path = REFERENCE / name
    fields = subprocess.run(["tshark", "-r", str(path), "-Y", "tls.handshake.type == 11", "-T", "fields",
                             "-e", "tls.handshake.certificate"], capture_output=True, check=True).stdout.decode()
    leaves = {bytes.fromhex(line.split(",")[0].replace(":", "")) for line in fields.splitlines() if line.strip()}
    with_scts = 0
    for der in leaves:
        ours = sct.sct_log_ids(x509.load_der_x509_certificate(der))
        assert ours is not None
        assert list(ours) == _openssl_log_ids(der)
        with_scts += bool(ours)
    assert with_scts >= 1
