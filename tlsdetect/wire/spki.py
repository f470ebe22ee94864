"""The SPKI pin of a certificate: base64 of the SHA-256 of its DER SubjectPublicKeyInfo.

This is the value every pinning config carries (Android ``<pin digest="SHA-256">``, iOS
``SPKI-SHA256-BASE64``, OkHttp ``sha256/...``, HPKP ``pin-sha256``), and what
``openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`` prints.

The SubjectPublicKeyInfo is cut out of the certificate's own bytes (the seventh element of the
TBSCertificate, sixth without the explicit version), not re-encoded from a parsed key: a key type
``cryptography`` cannot load (GOST, a new PQC algorithm) still gets its pin, and the bytes hashed
are the bytes a client hashes. Pure, no I/O; malformed DER gives None, never an exception.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["spki_der", "spki_sha256"]


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``pos``; ValueError when cut."""
    if pos + 2 > len(der):
        raise ValueError("element cut")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(der):
            raise ValueError("bad length")
        length = int.from_bytes(der[pos : pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("element cut")
    return tag, pos, pos + length


def spki_der(cert_der: bytes) -> bytes | None:
    """The DER SubjectPublicKeyInfo of one DER certificate; None when the bytes are not one."""
    try:
        tag, start, _ = _tlv(cert_der, 0)  # Certificate SEQUENCE
        if tag != 0x30:
            return None
        tag, pos, tbs_end = _tlv(cert_der, start)  # TBSCertificate SEQUENCE
        if tag != 0x30:
            return None
        tag, _, end = _tlv(cert_der, pos)
        skip = 6 if tag == 0xA0 else 5  # ([0] version,) serial, signature, issuer, validity, subject
        for _ in range(skip):
            _, _, end = _tlv(cert_der, pos)
            pos = end
            if pos >= tbs_end:
                return None
        tag, _, end = _tlv(cert_der, pos)
    except ValueError:
        return None
    return cert_der[pos:end] if tag == 0x30 and end <= tbs_end else None


def spki_sha256(cert_der: bytes) -> str | None:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (the pin); None when not a certificate."""
    spki = spki_der(cert_der)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii") if spki is not None else None
