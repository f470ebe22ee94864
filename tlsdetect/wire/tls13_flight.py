"""One direction's TLS 1.3 handshake flight, decrypted with its handshake traffic secret: its certificates.

The server's flight after ServerHello is EncryptedExtensions, Certificate, CertificateVerify, Finished
(the client's, in mTLS: Certificate, CertificateVerify, Finished), in records of content type 23 under the
handshake keys (:mod:`.tls13_keys`). :func:`decrypt_flight` walks one direction's reassembled bytes from its
first record, skips the plaintext records before the protected ones (hellos, ChangeCipherSpec), opens the
protected ones in order until Finished, and parses the TLS 1.3 Certificate message (RFC 8446 4.4.2: a
request context, then entries of a certificate and its extensions) into the same :class:`CertInfo` chain the
TLS <= 1.2 path gives. Why it stops at Finished: the next records are under other keys (application
traffic), which tlsdetect is never given.

Every way it can end is a status (:data:`STATUSES`), never an exception: the caller counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlsdetect.wire.tls import CertInfo, TLSParseError, parse_der_certificate
from tlsdetect.wire.tls13_keys import DecryptError, decrypt_record, record_keys

__all__ = ["STATUSES", "Flight", "decrypt_flight", "parse_certificate13"]

HANDSHAKE_CERTIFICATE = 11
HANDSHAKE_FINISHED = 20
#: Protected records read per flight at most (a chain fits in a handful).
MAX_RECORDS = 64
#: Handshake bytes gathered at most (a Certificate message of a long chain fits).
MAX_HANDSHAKE = 256 * 1024

#: How decrypting a flight ended (the ``keylog`` column's values with ``no_key``, see ``schema``).
STATUSES = {
    "decrypted": "the flight opened and its Certificate was read",
    "no_certificate": "the flight opened and carried no Certificate (a resumed session, a client not asked)",
    "decrypt_failed": "a protected record did not open with the logged secret (a wrong key log)",
    "unsupported_cipher": "the negotiated cipher suite is not a TLS 1.3 suite, or the secret does not fit it",
    "flight_cut": "the capture ends (or has a gap) before the flight's Certificate or Finished",
    "malformed_flight": "the flight's decrypted handshake messages or Certificate do not parse",
}


@dataclass(frozen=True, slots=True)
class Flight:
    """What one decrypted flight said: how it ended and its certificates, leaf first."""

    status: str
    certificates: tuple[CertInfo, ...] = ()
    records: int = 0  # protected records opened


def _u(data: bytes, pos: int, n: int, what: str) -> int:
    if pos + n > len(data):
        raise TLSParseError(f"{what}: need {n} bytes, {len(data) - pos} left")
    return int.from_bytes(data[pos : pos + n], "big")


def parse_certificate13(body: bytes) -> tuple[CertInfo, ...]:
    """A TLS 1.3 Certificate message body -> the chain, leaf first (per-entry extensions skipped).

    :class:`TLSParseError` when the framing is broken; a certificate whose DER does not parse keeps its
    SHA-256 with subject/issuer None, as in :func:`tlsdetect.wire.tls.parse_certificate`.
    """
    pos = 1 + _u(body, 0, 1, "certificate_request_context length")
    end = pos + 3 + _u(body, pos, 3, "certificate_list length")
    if end != len(body):
        raise TLSParseError(f"certificate_list ends at {end}, the message at {len(body)}")
    pos += 3
    out: list[CertInfo] = []
    while pos < end:
        n = _u(body, pos, 3, "cert_data length")
        if pos + 3 + n > end:
            raise TLSParseError("cert_data runs past certificate_list")
        out.append(parse_der_certificate(body[pos + 3 : pos + 3 + n]))
        pos += 3 + n
        pos += 2 + _u(body, pos, 2, "extensions length")
        if pos > end:
            raise TLSParseError("extensions run past certificate_list")
    return tuple(out)


def _messages(hs: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Whole handshake messages at the start of ``hs`` and the bytes they took."""
    out, pos = [], 0
    while pos + 4 <= len(hs):
        n = int.from_bytes(hs[pos + 1 : pos + 4], "big")
        if pos + 4 + n > len(hs):
            break
        out.append((hs[pos], hs[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out, pos


def decrypt_flight(data: bytes, secret: bytes, cipher: int) -> Flight:
    """Decrypt the first protected flight of one direction's bytes (starting at a record) with ``secret``."""
    try:
        keys = record_keys(secret, cipher)
    except DecryptError:
        return Flight("unsupported_cipher")
    pos, seq, hs, chain = 0, 0, b"", None
    while pos + 5 <= len(data) and seq < MAX_RECORDS:
        ctype, length = data[pos], int.from_bytes(data[pos + 3 : pos + 5], "big")
        if pos + 5 + length > len(data):
            break
        header, body = data[pos : pos + 5], data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if ctype != 23:
            if seq == 0 and ctype in (20, 22):
                continue  # the hellos and ChangeCipherSpec before the protected records
            return Flight("malformed_flight", records=seq)
        try:
            inner, content = decrypt_record(keys, seq, header, body)
        except DecryptError:
            return Flight("decrypt_failed", records=seq)
        seq += 1
        if inner != 22 or len(hs) + len(content) > MAX_HANDSHAKE:
            return Flight("malformed_flight", records=seq)
        hs += content
        messages, _ = _messages(hs)
        for msg_type, msg in messages:
            if msg_type == HANDSHAKE_CERTIFICATE and chain is None:
                try:
                    chain = parse_certificate13(msg)
                except TLSParseError:
                    return Flight("malformed_flight", records=seq)
            if msg_type == HANDSHAKE_FINISHED:
                return Flight("decrypted" if chain else "no_certificate", chain or (), seq)
        if chain:
            return Flight("decrypted", chain, seq)
    return Flight("flight_cut", records=seq)
