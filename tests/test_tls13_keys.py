"""RFC 8446 key schedule and record protection: RFC 8448's vectors, a round trip per suite, and any bytes
given as a record end in :class:`DecryptError`, never another exception."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect.wire.tls13_keys import SUITES, DecryptError, RecordKeys, decrypt_record, hkdf_expand_label, record_keys

#: RFC 8448 section 3 (Simple 1-RTT Handshake): the server handshake traffic secret and its write key and IV.
RFC8448_SECRET = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
RFC8448_KEY = bytes.fromhex("3fce516009c21727d0f2e4e86ee403bc")
RFC8448_IV = bytes.fromhex("5d313eb2671276ee13000b30")


def seal(keys: RecordKeys, seq: int, inner_type: int, content: bytes, padding: int = 0) -> bytes:
    """One protected record as a TLS 1.3 sender writes it (the tests' encrypting side)."""
    inner = content + bytes([inner_type]) + bytes(padding)
    header = bytes([23, 3, 3]) + (len(inner) + keys.suite.tag_length).to_bytes(2, "big")
    nonce = bytes(a ^ b for a, b in zip(keys.iv, seq.to_bytes(12, "big"), strict=True))
    aead = {"gcm": lambda: AESGCM(keys.key), "chacha": lambda: ChaCha20Poly1305(keys.key),
            "ccm": lambda: AESCCM(keys.key, tag_length=keys.suite.tag_length)}[keys.suite.aead]()
    return header + aead.encrypt(nonce, inner, header)


def test_rfc8448_server_handshake_key_and_iv() -> None:
    keys = record_keys(RFC8448_SECRET, 0x1301)
    assert (keys.key, keys.iv) == (RFC8448_KEY, RFC8448_IV)
    assert hkdf_expand_label(RFC8448_SECRET, b"key", b"", 16) == RFC8448_KEY


@pytest.mark.parametrize("cipher", sorted(SUITES))
def test_a_sealed_record_opens_with_its_sequence_number_only(cipher: int) -> None:
    secret = bytes(range(48 if SUITES[cipher].hash_name == "sha384" else 32))
    keys = record_keys(secret, cipher)
    record = seal(keys, 3, 22, b"\x08\x00\x00\x02\x00\x00", padding=5)
    assert decrypt_record(keys, 3, record[:5], record[5:]) == (22, b"\x08\x00\x00\x02\x00\x00")
    with pytest.raises(DecryptError, match="does not open"):
        decrypt_record(keys, 2, record[:5], record[5:])
    other = record_keys(bytes(len(secret)), cipher)
    with pytest.raises(DecryptError):
        decrypt_record(other, 3, record[:5], record[5:])


def test_suites_and_secrets_that_do_not_fit() -> None:
    with pytest.raises(DecryptError, match=r"not a TLS 1\.3 suite"):
        record_keys(bytes(32), 0xC02F)
    with pytest.raises(DecryptError, match="does not fit"):
        record_keys(bytes(32), 0x1302)  # AES-256-GCM-SHA384 needs a 48-byte secret
    keys = record_keys(bytes(32), 0x1301)
    with pytest.raises(DecryptError, match="content type 23"):
        decrypt_record(keys, 0, bytes([22, 3, 3, 0, 20]), bytes(20))
    record = seal(keys, 0, 0, b"", padding=3)  # inner plaintext of zeros only
    with pytest.raises(DecryptError, match="all padding"):
        decrypt_record(keys, 0, record[:5], record[5:])


@given(body=st.binary(max_size=400), seq=st.integers(0, 2**64 - 1), cipher=st.sampled_from(sorted(SUITES)))
def test_any_bytes_are_a_decrypt_error(body: bytes, seq: int, cipher: int) -> None:
    keys = record_keys(bytes(48 if SUITES[cipher].hash_name == "sha384" else 32), cipher)
    header = bytes([23, 3, 3]) + len(body).to_bytes(2, "big")
    with pytest.raises(DecryptError):
        decrypt_record(keys, seq, header, body)
