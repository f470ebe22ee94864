"""QUIC Initial packet protection (RFC 9001 section 5, RFC 9369 for v2), both ways, for tools.

Why a separate copy from the package's native engine: the benchmark generator and the capture
checks must make and open *real* protected Initials without trusting the code they measure, so this
is an independent, deliberately plain implementation (one packet at a time, Python level) that the
engine can be checked against. Only Initial packets: keys come from the client's first Destination
Connection ID, which is in clear.
"""
from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

V1 = 0x00000001
V2 = 0x6B3343CF
SALTS = {
    V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
#: Long-header packet type bits of an Initial: 0 in v1, 1 in v2 (RFC 9369 section 3.2).
INITIAL_TYPE = {V1: 0, V2: 1}
RETRY_TYPE = {V1: 3, V2: 0}
_LABEL_PREFIX = {V1: "quic", V2: "quicv2"}


class QuicPacketError(ValueError):
    """A datagram that is not a well-formed, decryptable QUIC Initial; the message says why."""


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, sha256).digest()


def expand_label(secret: bytes, label: str, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context (all that QUIC Initials use)."""
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), sha256).digest()
        out += block
        i += 1
    return out[:length]


@dataclass(frozen=True)
class Keys:
    """AEAD key, IV and header-protection key of one direction."""

    key: bytes
    iv: bytes
    hp: bytes


def initial_keys(dcid: bytes, version: int = V1, *, server: bool = False) -> Keys:
    """The Initial keys of one direction, from the client's first Destination Connection ID."""
    if version not in SALTS:
        raise QuicPacketError(f"no Initial salt for version 0x{version:08x}")
    secret = expand_label(_extract(SALTS[version], dcid), "server in" if server else "client in", 32)
    p = _LABEL_PREFIX[version]
    return Keys(expand_label(secret, f"{p} key", 16), expand_label(secret, f"{p} iv", 12),
                expand_label(secret, f"{p} hp", 16))


def varint(value: int) -> bytes:
    """QUIC variable-length integer, shortest form."""
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return struct.pack("!H", value | 0x4000)
    if value < 0x40000000:
        return struct.pack("!I", value | 0x80000000)
    return struct.pack("!Q", value | 0xC000000000000000)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); raises QuicPacketError past the end."""
    if pos >= len(buf):
        raise QuicPacketError("varint past the end")
    n = 1 << (buf[pos] >> 6)
    if pos + n > len(buf):
        raise QuicPacketError("varint past the end")
    value = buf[pos] & 0x3F
    for b in buf[pos + 1:pos + n]:
        value = (value << 8) | b
    return value, pos + n


def _mask(hp: bytes, sample: bytes) -> bytes:
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def _nonce(iv: bytes, pn: int) -> bytes:
    return bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big"), strict=True))


def crypto_frame(offset: int, data: bytes) -> bytes:
    """One CRYPTO frame (type 0x06)."""
    return b"\x06" + varint(offset) + varint(len(data)) + data


def protect_initial(payload: bytes, *, dcid: bytes, scid: bytes, keys: Keys, pn: int,
                    version: int = V1, token: bytes = b"", pad_to: int = 0) -> bytes:
    """One protected Initial packet; PADDING frames bring the packet to ``pad_to`` bytes."""
    pn_len = 4 if pn > 0xFFFF else 2
    head = (bytes([0xC0 | (INITIAL_TYPE[version] << 4) | (pn_len - 1)]) + struct.pack("!I", version)
            + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + varint(len(token)) + token)
    # The Length field is sized for the final payload; 2 bytes cover every Initial (< 16 KiB).
    fixed = len(head) + 2 + pn_len + 16
    body = payload + b"\x00" * max(0, pad_to - fixed - len(payload), 4 - pn_len - len(payload))
    length = pn_len + len(body) + 16
    header = head + struct.pack("!H", 0x4000 | length) + pn.to_bytes(pn_len, "big")
    sealed = AESGCM(keys.key).encrypt(_nonce(keys.iv, pn), body, header)
    pn_off = len(header) - pn_len
    mask = _mask(keys.hp, sealed[4 - pn_len:20 - pn_len])
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        out[pn_off + i] ^= mask[1 + i]
    return bytes(out)


@dataclass(frozen=True)
class Initial:
    """One opened Initial packet: who it is for and its plaintext frames."""

    version: int
    dcid: bytes
    scid: bytes
    token: bytes
    pn: int
    payload: bytes


def long_packets(datagram: bytes) -> Iterator[tuple[int, int, int]]:
    """(start, end, packet type) of each coalesced long-header packet in a datagram."""
    pos = 0
    while pos + 7 <= len(datagram) and datagram[pos] & 0x80:
        version = struct.unpack_from("!I", datagram, pos + 1)[0]
        p = pos + 5
        for _ in range(2):  # DCID, SCID
            if p >= len(datagram):
                return
            p += 1 + datagram[p]
        ptype = (datagram[pos] >> 4) & 0x03
        if ptype == RETRY_TYPE.get(version, -1):  # no Length field: the rest of the datagram
            yield pos, len(datagram), ptype
            return
        if ptype == INITIAL_TYPE.get(version, -1):
            tlen, p = read_varint(datagram, p)
            p += tlen
        length, p = read_varint(datagram, p)
        end = p + length
        if end > len(datagram):
            return
        yield pos, end, ptype
        pos = end


def open_initial(packet: bytes, *, client_dcid: bytes | None = None, server: bool = False) -> Initial:
    """Remove header protection and decrypt one Initial (``client_dcid`` defaults to its own DCID)."""
    if len(packet) < 7 or not packet[0] & 0x80:
        raise QuicPacketError("not a long-header packet")
    version = struct.unpack_from("!I", packet, 1)[0]
    if version not in SALTS or (packet[0] >> 4) & 0x03 != INITIAL_TYPE[version]:
        raise QuicPacketError("not an Initial of QUIC v1 or v2")
    p = 5
    dcid = packet[p + 1:p + 1 + packet[p]]
    p += 1 + packet[p]
    if p >= len(packet):
        raise QuicPacketError("truncated connection ids")
    scid = packet[p + 1:p + 1 + packet[p]]
    p += 1 + packet[p]
    tlen, p = read_varint(packet, p)
    token = packet[p:p + tlen]
    p += tlen
    length, pn_off = read_varint(packet, p)
    if pn_off + length > len(packet) or length < 20:
        raise QuicPacketError("Length past the end of the datagram")
    keys = initial_keys(client_dcid if client_dcid is not None else dcid, version, server=server)
    mask = _mask(keys.hp, packet[pn_off + 4:pn_off + 20])
    first = packet[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(b ^ m for b, m in zip(packet[pn_off:pn_off + pn_len], mask[1:1 + pn_len], strict=True))
    header = bytes([first]) + packet[1:pn_off] + pn_bytes
    pn = int.from_bytes(pn_bytes, "big")
    try:
        payload = AESGCM(keys.key).decrypt(_nonce(keys.iv, pn), packet[pn_off + pn_len:pn_off + length], header)
    except Exception as exc:  # cryptography's InvalidTag: wrong keys or damaged bytes
        raise QuicPacketError("AEAD tag does not verify") from exc
    return Initial(version, dcid, scid, token, pn, payload)


def crypto_frames(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of each CRYPTO frame; skips PADDING, PING, ACK; stops at any other frame."""
    pos = 0
    while pos < len(payload):
        ftype = payload[pos]
        if ftype in (0x00, 0x01):
            pos += 1
        elif ftype in (0x02, 0x03):
            pos += 1
            _, pos = read_varint(payload, pos)  # largest acknowledged
            _, pos = read_varint(payload, pos)  # delay
            ranges, pos = read_varint(payload, pos)
            _, pos = read_varint(payload, pos)  # first range
            for _ in range(2 * ranges):
                _, pos = read_varint(payload, pos)
            if ftype == 0x03:
                for _ in range(3):
                    _, pos = read_varint(payload, pos)
        elif ftype == 0x06:
            off, pos = read_varint(payload, pos + 1)
            n, pos = read_varint(payload, pos)
            yield off, payload[pos:pos + n]
            pos += n
        else:
            return


def handshake_message(chunks: dict[int, bytes]) -> bytes | None:
    """The first complete handshake message of a reassembled CRYPTO stream, or None if incomplete."""
    stream = bytearray()
    for off in sorted(chunks):
        if off > len(stream):
            break
        stream[off:off + len(chunks[off])] = chunks[off]
    if len(stream) < 4:
        return None
    need = 4 + int.from_bytes(stream[1:4], "big")
    return bytes(stream[:need]) if len(stream) >= need else None


def random_cid(n: int = 8) -> bytes:
    """A fresh connection id."""
    return os.urandom(n)
