"""The TLS 1.3 record protection of one handshake flight: traffic secret -> key and IV -> plaintext records.

RFC 8446: HKDF-Expand-Label (7.1) derives the write key and IV from a traffic secret (7.3); each record's
nonce is the IV XOR its sequence number (5.3), its additional data the 5-byte record header (5.2); the
AEAD is the cipher suite's (AES-128/256-GCM, ChaCha20-Poly1305, AES-128-CCM and CCM_8). The inner
plaintext ends in its real content type followed by zero padding. All through ``cryptography``.

Pure functions over bytes; a record that does not open (wrong key, damaged bytes) is a
:class:`DecryptError`, which the caller counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["SUITES", "DecryptError", "RecordKeys", "Suite", "decrypt_record", "hkdf_expand_label", "record_keys"]


@dataclass(frozen=True, slots=True)
class Suite:
    """A TLS 1.3 cipher suite: its AEAD, key length, tag length and hash."""

    name: str
    aead: str  # gcm / chacha / ccm
    key_length: int
    tag_length: int
    hash_name: str  # sha256 / sha384


SUITES: dict[int, Suite] = {
    0x1301: Suite("TLS_AES_128_GCM_SHA256", "gcm", 16, 16, "sha256"),
    0x1302: Suite("TLS_AES_256_GCM_SHA384", "gcm", 32, 16, "sha384"),
    0x1303: Suite("TLS_CHACHA20_POLY1305_SHA256", "chacha", 32, 16, "sha256"),
    0x1304: Suite("TLS_AES_128_CCM_SHA256", "ccm", 16, 16, "sha256"),
    0x1305: Suite("TLS_AES_128_CCM_8_SHA256", "ccm", 16, 8, "sha256"),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_DIGEST_SIZE = {"sha256": 32, "sha384": 48}
IV_LENGTH = 12
#: RFC 8446 5.2: an encrypted record's body is at most 2^14 + 256 bytes.
MAX_CIPHERTEXT = (1 << 14) + 256


class DecryptError(ValueError):
    """A record that does not decrypt: the key is wrong, or the bytes are damaged or not a record."""


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """RFC 8446 7.1: HKDF-Expand(secret, HkdfLabel{length, "tls13 " + label, context}, length)."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


@dataclass(frozen=True, slots=True)
class RecordKeys:
    """One direction's write key and IV (RFC 8446 7.3) and the suite they are for."""

    suite: Suite
    key: bytes
    iv: bytes


def record_keys(secret: bytes, cipher: int) -> RecordKeys:
    """Key and IV from a traffic secret for ``cipher``; :class:`DecryptError` for a suite that is not TLS 1.3's
    or a secret whose length is not the suite's hash length."""
    suite = SUITES.get(cipher)
    if suite is None:
        raise DecryptError(f"cipher suite 0x{cipher:04x} is not a TLS 1.3 suite")
    if len(secret) != _DIGEST_SIZE[suite.hash_name]:
        raise DecryptError(f"a {len(secret)}-byte secret does not fit {suite.name}")
    key = hkdf_expand_label(secret, b"key", b"", suite.key_length, suite.hash_name)
    iv = hkdf_expand_label(secret, b"iv", b"", IV_LENGTH, suite.hash_name)
    return RecordKeys(suite, key, iv)


def _aead(keys: RecordKeys) -> AESGCM | ChaCha20Poly1305 | AESCCM:
    if keys.suite.aead == "gcm":
        return AESGCM(keys.key)
    if keys.suite.aead == "chacha":
        return ChaCha20Poly1305(keys.key)
    return AESCCM(keys.key, tag_length=keys.suite.tag_length)


def decrypt_record(keys: RecordKeys, seq: int, header: bytes, body: bytes) -> tuple[int, bytes]:
    """Open one protected record: (inner content type, content without padding).

    ``header`` is the record's 5 bytes as sent (the additional data), ``body`` its ciphertext and tag,
    ``seq`` its sequence number in this direction under these keys (0 for the first).
    """
    if len(header) != 5 or header[0] != 23:
        raise DecryptError("not a protected record (content type 23)")
    if not keys.suite.tag_length < len(body) <= MAX_CIPHERTEXT:
        raise DecryptError(f"a protected record of {len(body)} bytes")
    nonce = bytes(a ^ b for a, b in zip(keys.iv, seq.to_bytes(IV_LENGTH, "big"), strict=True))
    try:
        inner = _aead(keys).decrypt(nonce, body, header)
    except InvalidTag:
        raise DecryptError("the record does not open with this key") from None
    content = inner.rstrip(b"\x00")
    if not content:
        raise DecryptError("the record's plaintext is all padding (no content type)")
    return content[-1], content[:-1]
