"""QUIC Initial packets: long header, Initial keys, header protection, AEAD, frames (pure logic).

A QUIC client's ClientHello travels in CRYPTO frames of Initial packets, protected with keys
anyone can derive from the Destination Connection ID of the client's first Initial (RFC 9001
section 5.2): so a passive sensor reads the hello by redoing the derivation. The server's Initial
(its ServerHello) uses keys from the same connection ID with the ``server in`` label.

Versions: 1 (RFC 9000/9001), 2 (RFC 9369: its own salt, ``quicv2`` labels and packet type bits)
and drafts 29-32 (the last drafts browsers shipped). Anything that does not decrypt or parse is a
:class:`QuicSkipError` with a short ``reason``: the reader counts it by name, never raises.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:  # the libcrypto kernel (_quic_crypto.c): optional, like the capture core
    from tlsdetect.wire import _quic_crypto
except ImportError:  # not compiled: the `cryptography` path below runs
    _quic_crypto = None  # type: ignore[assignment]

__all__ = [
    "VERSIONS",
    "InitialPacket",
    "Keys",
    "QuicSkipError",
    "crypto_frames",
    "initial_keys",
    "initial_packets",
    "open_initial",
    "open_packet",
    "protect_initial",
]

#: The most bytes of a connection ID (RFC 9000 section 17.2: 20 for version 1).
MAX_CID = 20
#: Frame types allowed in an Initial packet (RFC 9000 section 12.4, table 3).
PADDING, PING, ACK, ACK_ECN, CRYPTO, CONNECTION_CLOSE = 0x00, 0x01, 0x02, 0x03, 0x06, 0x1C


class QuicSkipError(ValueError):
    """An Initial that is not read; ``reason`` names why (the reader counts it under ``quic_<reason>``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Version:
    salt: bytes
    prefix: bytes  # HKDF label prefix of key, iv, hp
    initial_type: int  # the long-header type bits of an Initial


_V1 = _Version(bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), b"quic ", 0)
_V2 = _Version(bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), b"quicv2 ", 1)
_DRAFT29 = _Version(bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899"), b"quic ", 0)

#: Versions whose Initials are read: 1, 2, drafts 29-32.
VERSIONS: dict[int, _Version] = {0x00000001: _V1, 0x6B3343CF: _V2, **{0xFF000000 + d: _DRAFT29 for d in range(29, 33)}}


@dataclass(frozen=True, slots=True)
class Keys:
    """One direction's Initial protection: AEAD key, IV and header-protection key (AES-128)."""

    key: bytes
    iv: bytes
    hp: bytes


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 section 7.1) with SHA-256, empty context; one block suffices."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.digest(secret, info + b"\x01", "sha256")[:length]  # one-shot: no HMAC object


@functools.lru_cache(maxsize=4096)
def initial_keys(version: int, dcid: bytes, *, server: bool) -> Keys:
    """The Initial keys of one direction from the client's Destination Connection ID."""
    v = VERSIONS[version]
    initial = hmac.digest(v.salt, dcid, "sha256")  # HKDF-Extract
    secret = _expand_label(initial, b"server in" if server else b"client in", 32)
    return Keys(
        _expand_label(secret, v.prefix + b"key", 16),
        _expand_label(secret, v.prefix + b"iv", 12),
        _expand_label(secret, v.prefix + b"hp", 16),
    )


@functools.lru_cache(maxsize=4096)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)


@functools.lru_cache(maxsize=4096)
def _ecb(hp: bytes) -> Any:
    return Cipher(algorithms.AES(hp), modes.ECB()).encryptor()  # stateless per block: reused


def _mask(hp: bytes, sample: bytes) -> bytes:
    return bytes(_ecb(hp).update(sample)[:5])


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A QUIC variable-length integer at ``pos``: (value, position after it)."""
    if pos >= end:
        raise QuicSkipError("truncated")
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1  # most values: one byte
    size = 1 << (first >> 6)
    if pos + size > end:
        raise QuicSkipError("truncated")
    value = first & 0x3F
    for b in buf[pos + 1 : pos + size]:
        value = (value << 8) | b
    return value, pos + size


def _encode_varint(value: int) -> bytes:
    for size, tag in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * size - 2):
            out = bytearray(value.to_bytes(size, "big"))
            out[0] |= tag
            return bytes(out)
    raise ValueError("varint too large")


@dataclass(frozen=True, slots=True)
class InitialPacket:
    """One Initial packet inside a datagram, header protection still on."""

    version: int
    dcid: bytes
    scid: bytes
    start: int  # first byte of the packet in the datagram
    pn_offset: int  # first byte of the (protected) packet number
    end: int  # one past the packet's last byte


def initial_packets(datagram: bytes) -> Iterator[InitialPacket | QuicSkipError]:
    """The Initial packets of one datagram, coalesced ones included, in order.

    Other long-header packets (0-RTT, Handshake) are stepped over by their length; a Retry, a
    Version Negotiation or a short-header packet ends the datagram (they have no length field). A
    malformed packet yields a :class:`QuicSkipError` and ends the walk.
    """
    pos, n = 0, len(datagram)
    while pos < n:
        first = datagram[pos]
        if first & 0x80 == 0:
            return  # a short header runs to the datagram's end
        if pos + 7 > n:
            yield QuicSkipError("truncated")
            return
        version = int.from_bytes(datagram[pos + 1 : pos + 5], "big")
        v = VERSIONS.get(version)
        if v is None:
            if pos == 0:
                yield QuicSkipError("version_unknown" if version else "version_negotiation")
            return
        if first & 0x40 == 0:
            yield QuicSkipError("fixed_bit_clear")
            return
        at = pos + 5
        dlen = datagram[at]
        if dlen > MAX_CID or at + 1 + dlen >= n:
            yield QuicSkipError("bad_connection_id")
            return
        dcid = datagram[at + 1 : at + 1 + dlen]
        at += 1 + dlen
        slen = datagram[at]
        if slen > MAX_CID or at + 1 + slen > n:
            yield QuicSkipError("bad_connection_id")
            return
        scid = datagram[at + 1 : at + 1 + slen]
        at += 1 + slen
        kind = (first >> 4) & 0x03
        retry = (v.initial_type + 3) & 0x03
        if kind == retry:
            return
        try:
            if kind == v.initial_type:
                token_len, at = _varint(datagram, at, n)
                at += token_len
            length, at = _varint(datagram, at, n)
        except QuicSkipError as skip:
            yield skip
            return
        end = at + length
        if end > n or length < 20:  # a 1-4 byte packet number, a 16-byte tag, a sample
            yield QuicSkipError("truncated")
            return
        if kind == v.initial_type:
            yield InitialPacket(version, dcid, scid, pos, at, end)
        pos = end


def open_packet(datagram: bytes, packet: InitialPacket, keys: Keys) -> tuple[int, bytes]:
    """(packet number, plaintext payload) of one Initial: header protection off, AEAD opened.

    Raises :class:`QuicSkipError` ``decrypt_failed`` when the tag does not verify (wrong keys: another
    connection ID, the other direction, or damaged bytes).
    """
    pn_at = packet.pn_offset
    sample = datagram[pn_at + 4 : pn_at + 20]
    if len(sample) < 16 or pn_at + 4 + 16 > packet.end:
        raise QuicSkipError("truncated")
    mask = _mask(keys.hp, sample)
    first = datagram[packet.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(b ^ m for b, m in zip(datagram[pn_at : pn_at + pn_len], mask[1 : 1 + pn_len], strict=True))
    header = bytes([first]) + datagram[packet.start + 1 : pn_at] + pn_bytes
    pn = int.from_bytes(pn_bytes, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    try:
        plain = _aead(keys.key).decrypt(nonce, datagram[pn_at + pn_len : packet.end], header)
    except InvalidTag:
        raise QuicSkipError("decrypt_failed") from None
    return pn, plain


#: Whether :func:`open_initial` runs the C kernel: built, and not switched off by ``TLSDETECT_NO_CCORE``
#: (the capture core's switch: one variable turns every compiled part off).
_OFF = os.environ.get("TLSDETECT_NO_CCORE", "").strip().lower() in {"1", "true", "yes"}
NATIVE = _quic_crypto is not None and not _OFF


def open_initial(
    datagram: bytes, packet: InitialPacket, cid: bytes, *, server: bool, native: bool = NATIVE
) -> tuple[int, bytes]:
    """:func:`open_packet` with the keys of ``cid`` (a client's first DCID) for one direction, derived here.

    ``native``: the whole step in one C call (libcrypto), else :func:`initial_keys` and
    :func:`open_packet`; both raise the same :class:`QuicSkipError` on the same input.
    """
    if not native:
        return open_packet(datagram, packet, initial_keys(packet.version, cid, server=server))
    if packet.pn_offset + 20 > packet.end:
        raise QuicSkipError("truncated")
    v = VERSIONS[packet.version]
    opened = _quic_crypto.open_initial(
        datagram, packet.start, packet.pn_offset, packet.end, v.salt, v.prefix, cid, server
    )
    if opened is None:
        raise QuicSkipError("decrypt_failed")
    return opened


def crypto_frames(plain: bytes) -> list[tuple[int, bytes]]:
    """The CRYPTO frames of an Initial's payload as ``(offset, data)``; PADDING, PING and ACK are
    stepped over, CONNECTION_CLOSE ends the payload. Any other frame type is not allowed in an
    Initial (RFC 9000 section 12.4): :class:`QuicSkipError` ``bad_frame``."""
    out: list[tuple[int, bytes]] = []
    pos, n = 0, len(plain)
    while pos < n:
        kind = plain[pos]
        if kind == PADDING:
            pos = n - len(plain[pos:].lstrip(b"\x00"))
        elif kind == PING:
            pos += 1
        elif kind in (ACK, ACK_ECN):
            pos += 1
            for _ in range(2):  # largest acknowledged, delay
                _, pos = _varint(plain, pos, n)
            ranges, pos = _varint(plain, pos, n)
            _, pos = _varint(plain, pos, n)  # first range
            if ranges > n:
                raise QuicSkipError("bad_frame")
            for _ in range(2 * ranges + (3 if kind == ACK_ECN else 0)):
                _, pos = _varint(plain, pos, n)
        elif kind == CRYPTO:
            offset, pos = _varint(plain, pos + 1, n)
            length, pos = _varint(plain, pos, n)
            if pos + length > n or offset + length > 1 << 24:
                raise QuicSkipError("bad_frame")
            out.append((offset, plain[pos : pos + length]))
            pos += length
        elif kind == CONNECTION_CLOSE:
            break
        else:
            raise QuicSkipError("bad_frame")
    return out


def protect_initial(
    version: int,
    dcid: bytes,
    scid: bytes,
    pn: int,
    frames: list[tuple[int, bytes]],
    *,
    server: bool = False,
    key_cid: bytes | None = None,
    pad_to: int = 0,
) -> bytes:
    """An Initial packet carrying ``frames`` as CRYPTO frames, protected as a peer would (tests,
    benchmarks and fuzz seeds build captures with it). ``key_cid`` is the connection ID the keys
    come from (default ``dcid``: a client's first Initial); ``pad_to`` pads the payload."""
    v = VERSIONS[version]
    keys = initial_keys(version, key_cid if key_cid is not None else dcid, server=server)
    payload = b"".join(bytes([CRYPTO]) + _encode_varint(o) + _encode_varint(len(d)) + d for o, d in frames)
    payload += bytes(max(0, pad_to - len(payload), 4 - len(payload)))
    pn_bytes = pn.to_bytes(4, "big")
    first = 0xC0 | (v.initial_type << 4) | 0x03
    head = bytes([first]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    head += b"\x00" + _encode_varint(len(pn_bytes) + len(payload) + 16) + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = _aead(keys.key).encrypt(nonce, payload, head)
    pn_at = len(head) - 4
    mask = _mask(keys.hp, sealed[:16])  # the sample starts 4 bytes after the packet number's first byte
    out = bytearray(head + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(4):
        out[pn_at + i] ^= mask[1 + i]
    return bytes(out)
