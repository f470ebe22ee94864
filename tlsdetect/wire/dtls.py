"""DTLS handshake records of one datagram, and the fragment assembly of one direction (pure logic).

DTLS (RFC 6347, RFC 9147) carries handshake messages in records that each fit a datagram, so a
message may be cut into fragments (offset, length) sent in any order, more than once. Whole
messages come out once each: a retransmission of a complete message_seq adds nothing, and a
ClientHello sent again after a HelloVerifyRequest is a new message_seq (the reader keeps both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DTLS_VERSIONS", "DtlsFragment", "DtlsSide", "handshake_fragments"]

#: Record versions of DTLS 1.0 (and the pre-RFC OpenSSL 0x0100), 1.2; DTLS 1.3 hellos use 1.2's.
DTLS_VERSIONS = frozenset({0xFEFF, 0xFEFD, 0xFEFC, 0x0100})
RECORD_HEADER = 13
HANDSHAKE_HEADER = 12
CONTENT_HANDSHAKE = 22
#: Message sequence numbers past this are not hellos (a hello flight is 0-2); fragments past the cap are dropped.
MAX_SEQ = 16
MAX_PARTS = 64
#: The longest handshake message assembled (a hello is far shorter).
MAX_MESSAGE = 1 << 16


@dataclass(frozen=True, slots=True)
class DtlsFragment:
    """One handshake fragment: message type, whole message length, message_seq, fragment offset, bytes."""

    msg_type: int
    length: int
    seq: int
    offset: int
    data: bytes


def handshake_fragments(datagram: bytes) -> tuple[list[DtlsFragment], str | None]:
    """The epoch-0 handshake fragments of a datagram's records, and why the walk stopped early
    (``None`` when every byte was read). Records of other types or epochs are stepped over."""
    out: list[DtlsFragment] = []
    pos, n = 0, len(datagram)
    while pos < n:
        if pos + RECORD_HEADER > n:
            return out, "dtls_truncated"
        ctype = datagram[pos]
        version = int.from_bytes(datagram[pos + 1 : pos + 3], "big")
        epoch = int.from_bytes(datagram[pos + 3 : pos + 5], "big")
        length = int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        body, pos = pos + RECORD_HEADER, pos + RECORD_HEADER + length
        if version not in DTLS_VERSIONS:
            return out, "dtls_not_a_record"
        if pos > n:
            return out, "dtls_truncated"
        if ctype != CONTENT_HANDSHAKE or epoch != 0:
            continue
        at = body
        while at + HANDSHAKE_HEADER <= pos:
            h = datagram[at : at + HANDSHAKE_HEADER]
            total = int.from_bytes(h[1:4], "big")
            offset = int.from_bytes(h[6:9], "big")
            size = int.from_bytes(h[9:12], "big")
            start = at + HANDSHAKE_HEADER
            if start + size > pos or offset + size > total or total > MAX_MESSAGE:
                return out, "dtls_bad_fragment"
            out.append(DtlsFragment(h[0], total, int.from_bytes(h[4:6], "big"), offset, datagram[start : start + size]))
            at = start + size
        if at != pos:
            return out, "dtls_bad_fragment"
    return out, None


@dataclass(slots=True)
class DtlsSide:
    """One direction's fragments by message_seq until each message is whole."""

    done: set[int] = field(default_factory=set)
    parts: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)

    def add(self, frag: DtlsFragment) -> tuple[int, bytes] | None:
        """(type, body) when ``frag`` completes its message, else None (incomplete, repeated, past the caps)."""
        if frag.seq in self.done or frag.seq >= MAX_SEQ:
            return None
        parts = self.parts.setdefault(frag.seq, [])
        if len(parts) >= MAX_PARTS:
            return None
        parts.append((frag.offset, frag.data))
        body = bytearray()
        for offset, data in sorted(parts, key=lambda p: p[0]):
            if offset > len(body):
                return None
            body += data[len(body) - offset :]
        if len(body) < frag.length:
            return None
        self.done.add(frag.seq)
        del self.parts[frag.seq]
        return frag.msg_type, bytes(body[: frag.length])
