"""A ClientHello's QUIC transport parameters (extension 0x39) as the ``quic_transport_params`` column spells them.

A QUIC stack's transport parameters are as much its own as its TLS extensions: which ids it sends, and the
values it picks for its flow-control windows, UDP payload size and connection-id limit (Chromium, aioquic,
quiche, ngtcp2 each keep their defaults). An interception product that terminates QUIC sends its own. So the
column keeps each id in wire order (lowercase hex, comma-separated) and, for the ids whose value is a
stack's setting (:data:`VALUED`), ``id=value`` with the value in decimal; ``version_information`` (0x11)
gives its versions as 8 hex digits joined by ``/`` (chosen version first). What a stack draws at random per
connection is left out: GREASE ids (``31 * N + 27``) are written ``grease``, GREASE versions ``grease``, and
the connection ids and tokens (0x0, 0x2, 0xf, 0x10) are ids without values. Example (aioquic 1.7):
``1=60000,4=1048576,5=1048576,6=1048576,7=1048576,8=128,9=128,a=3,b=25,e=8,f,11=00000001/00000001/...``.

Pure logic: bytes in, text out; a hello that does not parse gives ``None`` (the column is then missing).
"""

from __future__ import annotations

import struct

__all__ = ["VALUED", "transport_parameters"]

#: Transport parameter ids whose value is a stack's own setting, written ``id=value`` (RFC 9000 section 18.2:
#: max_idle_timeout, max_udp_payload_size, the initial flow-control windows and stream limits, ack_delay_exponent,
#: max_ack_delay, active_connection_id_limit; RFC 9221 max_datagram_frame_size).
VALUED = frozenset({0x1, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA, 0xB, 0xE, 0x20})
#: version_information (RFC 9368): a list of 4-byte versions.
VERSION_INFORMATION = 0x11
_EXTENSION = 0x39
#: The value bits of a 1-, 2-, 4- and 8-byte varint (its first two bits give its size).
_VALUE_MASK = {1: 0x3F, 2: (1 << 14) - 1, 4: (1 << 30) - 1, 8: (1 << 62) - 1}
_EXT_HEAD = struct.Struct(">HH")


class _ParseError(ValueError):
    """The hello or its extension does not parse."""


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A QUIC variable-length integer at ``pos`` (RFC 9000 section 16): (value, position after it)."""
    if pos >= end:
        raise _ParseError("truncated varint")
    size = 1 << (buf[pos] >> 6)
    if pos + size > end:
        raise _ParseError("truncated varint")
    value = buf[pos] & 0x3F
    for b in buf[pos + 1 : pos + size]:
        value = (value << 8) | b
    return value, pos + size


def _is_grease_version(v: int) -> bool:
    """RFC 9000 section 15: versions ``0x?a?a?a?a`` are reserved to exercise negotiation."""
    return v & 0x0F0F0F0F == 0x0A0A0A0A


def _value(pid: int, data: bytes) -> str | None:
    """The written value of one parameter, or None when its value is not written (or does not parse)."""
    if pid in VALUED:
        try:
            value, at = _varint(data, 0, len(data))
        except _ParseError:
            return None
        return str(value) if at == len(data) else None
    if pid == VERSION_INFORMATION and data and len(data) % 4 == 0:
        versions = [int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data), 4)]
        return "/".join("grease" if _is_grease_version(v) else f"{v:08x}" for v in versions)
    return None


def _parameters(ext: bytes) -> str:
    """The column text of the extension's body.

    Runs once per QUIC connection the Python path reads, so the id and length varints are read inline
    (most are one byte: no call per field); :func:`_varint` reads the values."""
    out: list[str] = []
    at, stop = 0, len(ext)
    while at < stop:
        b = ext[at]  # the id
        if b < 0x40:
            pid, at = b, at + 1
        else:
            k = 1 << (b >> 6)
            if at + k > stop:
                raise _ParseError("truncated varint")
            pid, at = int.from_bytes(ext[at : at + k], "big") & _VALUE_MASK[k], at + k
        if at >= stop:
            raise _ParseError("truncated varint")
        b = ext[at]  # the value's length
        if b < 0x40:
            size, at = b, at + 1
        else:
            k = 1 << (b >> 6)
            if at + k > stop:
                raise _ParseError("truncated varint")
            size, at = int.from_bytes(ext[at : at + k], "big") & _VALUE_MASK[k], at + k
        if at + size > stop:
            raise _ParseError("parameter past the extension")
        if pid % 31 == 27:
            out.append("grease")
        else:
            value = _value(pid, ext[at : at + size]) if pid in VALUED or pid == VERSION_INFORMATION else None
            out.append(f"{pid:x}" if value is None else f"{pid:x}={value}")
        at += size
    return ",".join(out)


def _extension(hello_body: bytes) -> bytes | None:
    """The body of extension 0x39 of a ClientHello body (after the 4-byte handshake header), if any."""
    pos = 2 + 32
    pos += 1 + hello_body[pos]  # session id
    pos += 2 + int.from_bytes(hello_body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + hello_body[pos]  # compression methods
    end = min(pos + 2 + int.from_bytes(hello_body[pos : pos + 2], "big"), len(hello_body))
    pos += 2
    while pos + 4 <= end:
        ext, size = _EXT_HEAD.unpack_from(hello_body, pos)
        pos += 4
        if ext == _EXTENSION:
            if pos + size > len(hello_body):
                raise _ParseError("extension past the hello")
            return hello_body[pos : pos + size]
        pos += size
    return None


def transport_parameters(hello_body: bytes) -> str | None:
    """The ``quic_transport_params`` text of a ClientHello body; None without the extension or when it does
    not parse (a hello cut short, a parameter running past the extension)."""
    try:
        ext = _extension(hello_body)
        return None if ext is None else _parameters(ext)
    except (IndexError, _ParseError):
        return None
