"""Pure parsing of TLS (and DTLS) handshake messages: ClientHello, ServerHello, Certificate.

Every parser here obeys one contract, borrowed from mitmproxy's ``parse_client_hello``:

* it returns a parsed value,
* or ``None`` when the bytes end before the structure does ("need more bytes"),
  for the functions that read from a growing stream (:func:`scan_records`),
* or raises :class:`TLSParseError` (a ``ValueError``) for malformed input.

Any other exception escaping from here is a bug; the hypothesis tests feed arbitrary bytes to prove it.
Nothing here does I/O, so the pcap reader, the tshark engine and the log readers share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "HANDSHAKE_CERTIFICATE",
    "HANDSHAKE_CLIENT_HELLO",
    "HANDSHAKE_SERVER_HELLO",
    "HRR_RANDOM",
    "CertInfo",
    "ClientHello",
    "HandshakeMessage",
    "RecordScan",
    "ServerHello",
    "TLSParseError",
    "is_grease",
    "parse_certificate",
    "parse_client_hello",
    "parse_server_hello",
    "scan_records",
]

HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
HANDSHAKE_HELLO_VERIFY_REQUEST = 3
HANDSHAKE_CERTIFICATE = 11

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23

EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B

#: ServerHello.random of a TLS 1.3 HelloRetryRequest (RFC 8446, 4.1.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

#: Largest record payload a peer may send (2^14 plus the compression/encryption allowance).
MAX_RECORD_LENGTH = 2**14 + 2048
#: Largest handshake message we accept; certificate chains above this are not real.
MAX_HANDSHAKE_LENGTH = 2**20


class TLSParseError(ValueError):
    """The bytes are not the TLS structure they claim to be."""


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x0A0A, 0x1A1A, ... 0xFAFA (both bytes equal, low nibble 0xA)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


class _Reader:
    """Bounds-checked cursor: every short read is a :class:`TLSParseError` naming the field."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise TLSParseError(f"{what}: need {n} bytes, {self.end - self.pos} left")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u24(self, what: str) -> int:
        return int.from_bytes(self.take(3, what), "big")

    def sub(self, n: int, what: str) -> _Reader:
        start = self.pos
        self.take(n, what)
        return _Reader(self.buf, start, start + n)

    def u16_list(self, n_bytes: int, what: str) -> tuple[int, ...]:
        if n_bytes % 2:
            raise TLSParseError(f"{what}: odd length {n_bytes}")
        raw = self.take(n_bytes, what)
        return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, n_bytes, 2))


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The fields of a ClientHello that fingerprints and detection use.

    Lists keep wire order and GREASE values: each fingerprint decides what to drop, and the
    original order is itself evidence (JA4_o, Chrome's extension shuffling).
    """

    legacy_version: int
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    supported_versions: tuple[int, ...] = ()
    compression: tuple[int, ...] = ()
    session_id_length: int = 0
    dtls: bool = False


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The ServerHello fields JA3S and the connections table need."""

    legacy_version: int
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None = None
    alpn: bytes | None = None
    is_hello_retry_request: bool = False

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions wins over the legacy field (TLS 1.3)."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate of a chain. ``subject``/``issuer`` are None when the DER does not parse."""

    sha256: str
    subject: str | None
    issuer: str | None
    der_length: int


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """A complete handshake message (type and body, header stripped) as it came off the record layer."""

    msg_type: int
    body: bytes
    record_version: int


@dataclass(slots=True)
class RecordScan:
    """Result of :func:`scan_records` over the start of one direction of a stream.

    ``stop`` says why scanning ended: ``"need_more"`` (bytes ran out mid-record or mid-message),
    ``"encrypted"`` (application data or post-ChangeCipherSpec records follow), ``"alert"``,
    ``"not_tls"`` (the bytes at ``consumed`` are not a TLS record) or ``"limit"``.
    """

    messages: list[HandshakeMessage] = field(default_factory=list)
    consumed: int = 0
    stop: str = "need_more"
    saw_change_cipher_spec: bool = False


def _looks_like_record_header(buf: bytes, pos: int) -> bool:
    ctype, major, minor = buf[pos], buf[pos + 1], buf[pos + 2]
    return 20 <= ctype <= 24 and major == 3 and minor <= 4


def scan_records(
    stream: bytes,
    *,
    max_messages: int = 8,
    after_ccs: bool = False,
) -> RecordScan:
    """Split the plaintext start of a TLS byte stream into handshake messages.

    Handshake messages may span records and records may hold several messages; both are joined
    here. Scanning stops at the first sign of encryption: application data, or any handshake
    record after ChangeCipherSpec unless ``after_ccs`` is set (TLS 1.3 middlebox-compatibility
    CCS before a second ClientHello, where the record is still in clear).
    """
    scan = RecordScan()
    pending = bytearray()
    pending_version = 0
    pos = 0
    n = len(stream)
    saw_ccs = False
    while True:
        if len(scan.messages) >= max_messages:
            scan.stop = "limit"
            break
        if pos + 5 > n:
            scan.stop = "need_more"
            break
        if not _looks_like_record_header(stream, pos):
            scan.stop = "not_tls"
            break
        ctype = stream[pos]
        version = (stream[pos + 1] << 8) | stream[pos + 2]
        length = (stream[pos + 3] << 8) | stream[pos + 4]
        if length > MAX_RECORD_LENGTH:
            scan.stop = "not_tls"
            break
        if pos + 5 + length > n:
            scan.stop = "need_more"
            break
        fragment = stream[pos + 5 : pos + 5 + length]
        if ctype == CONTENT_CHANGE_CIPHER_SPEC:
            saw_ccs = True
            scan.saw_change_cipher_spec = True
            pos += 5 + length
            scan.consumed = pos
            continue
        if ctype == CONTENT_ALERT:
            scan.stop = "alert"
            scan.consumed = pos
            break
        if ctype != CONTENT_HANDSHAKE or (saw_ccs and not after_ccs):
            scan.stop = "encrypted"
            break
        if not pending:
            pending_version = version
        pending += fragment
        pos += 5 + length
        # Emit every complete message now buffered; a partial one waits for the next record.
        while len(pending) >= 4:
            msg_len = int.from_bytes(pending[1:4], "big")
            if msg_len > MAX_HANDSHAKE_LENGTH:
                scan.stop = "not_tls"
                return scan
            if len(pending) < 4 + msg_len:
                break
            scan.messages.append(
                HandshakeMessage(pending[0], bytes(pending[4 : 4 + msg_len]), pending_version)
            )
            del pending[: 4 + msg_len]
            pending_version = version
        if not pending:
            scan.consumed = pos
    return scan


def _parse_extensions(r: _Reader) -> list[tuple[int, _Reader]]:
    """Extension block: absent (no bytes left) is legal and means no extensions.

    A block whose framing breaks part-way keeps the extensions before the break, as Wireshark
    does (tshark's JA3 of such a hello is computed from them), instead of losing the hello.
    """
    if r.remaining() < 2:
        return []
    total = r.u16("extensions length")
    block = r.sub(min(total, r.remaining()), "extensions")
    out: list[tuple[int, _Reader]] = []
    while block.remaining() >= 4:
        ext_type = block.u16("extension type")
        ext_len = block.u16("extension length")
        if ext_len > block.remaining():
            out.append((ext_type, _Reader(b"")))
            break
        out.append((ext_type, block.sub(ext_len, f"extension 0x{ext_type:04x}")))
    return out


def _parse_sni(r: _Reader) -> str | None:
    names = r.sub(r.u16("server_name list length"), "server_name list")
    while names.remaining() > 0:
        name_type = names.u8("server_name type")
        name = names.take(names.u16("server_name length"), "server_name")
        if name_type == 0:
            return name.decode("ascii", "backslashreplace")
    return None


def _parse_alpn(r: _Reader) -> tuple[bytes, ...]:
    protos = r.sub(r.u16("ALPN list length"), "ALPN list")
    out: list[bytes] = []
    while protos.remaining() > 0:
        out.append(protos.take(protos.u8("ALPN protocol length"), "ALPN protocol"))
    return tuple(out)


def parse_client_hello(body: bytes, *, dtls: bool = False) -> ClientHello:
    """Parse a ClientHello message body (the bytes after the 4-byte handshake header).

    The outer structure (version, session id, ciphers, compression, extension framing) must be
    well formed. A malformed *inner* extension (say a short supported_groups list) leaves that
    one field empty but keeps the extension type, as Wireshark does, because the fingerprint
    of a broken hello is still evidence.
    """
    r = _Reader(body)
    legacy_version = r.u16("client_version")
    r.take(32, "random")
    session_id_length = r.u8("session_id length")
    if session_id_length > 32:
        raise TLSParseError(f"session_id length {session_id_length} > 32")
    r.take(session_id_length, "session_id")
    if dtls:
        r.take(r.u8("cookie length"), "cookie")
    cs_len = r.u16("cipher_suites length")
    ciphers = r.u16_list(cs_len, "cipher_suites")
    compression = tuple(r.take(r.u8("compression_methods length"), "compression_methods"))
    extensions = _parse_extensions(r)

    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    for ext_type, data in extensions:
        try:
            if ext_type == EXT_SERVER_NAME:
                sni = _parse_sni(data)
            elif ext_type == EXT_ALPN:
                alpn = _parse_alpn(data)
            elif ext_type == EXT_SUPPORTED_GROUPS:
                groups = data.u16_list(data.u16("supported_groups length"), "supported_groups")
            elif ext_type == EXT_EC_POINT_FORMATS:
                point_formats = tuple(data.take(data.u8("ec_point_formats length"), "ec_point_formats"))
            elif ext_type == EXT_SIGNATURE_ALGORITHMS:
                sig_algs = data.u16_list(data.u16("signature_algorithms length"), "signature_algorithms")
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                versions = data.u16_list(data.u8("supported_versions length"), "supported_versions")
        except TLSParseError:
            continue
    return ClientHello(
        legacy_version=legacy_version,
        ciphers=ciphers,
        extensions=tuple(t for t, _ in extensions),
        sni=sni,
        alpn=alpn,
        groups=groups,
        point_formats=point_formats,
        sig_algs=sig_algs,
        supported_versions=versions,
        compression=compression,
        session_id_length=session_id_length,
        dtls=dtls,
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello body; a TLS 1.3 HelloRetryRequest is a ServerHello with a fixed random."""
    r = _Reader(body)
    legacy_version = r.u16("server_version")
    random = r.take(32, "random")
    # TLS 1.3 drafts (0x7Fxx) put the version here and dropped session id and compression.
    draft13 = (legacy_version >> 8) == 0x7F
    if not draft13:
        sid_len = r.u8("session_id length")
        if sid_len > 32:
            raise TLSParseError(f"session_id length {sid_len} > 32")
        r.take(sid_len, "session_id")
    cipher = r.u16("cipher_suite")
    if not draft13:
        r.u8("compression_method")
    extensions = _parse_extensions(r)
    selected: int | None = None
    alpn: bytes | None = None
    for ext_type, data in extensions:
        try:
            if ext_type == EXT_SUPPORTED_VERSIONS and data.remaining() == 2:
                selected = data.u16("selected_version")
            elif ext_type == EXT_ALPN:
                protos = _parse_alpn(data)
                alpn = protos[0] if protos else None
        except TLSParseError:
            continue
    return ServerHello(
        legacy_version=legacy_version,
        cipher=cipher,
        extensions=tuple(t for t, _ in extensions),
        selected_version=selected,
        alpn=alpn,
        is_hello_retry_request=random == HRR_RANDOM,
    )


@lru_cache(maxsize=8192)
def _cert_info(der: bytes) -> CertInfo:
    """Certificates repeat across connections, so each distinct DER is parsed once."""
    from cryptography import x509

    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
        subject: str | None = cert.subject.rfc4514_string()
        issuer: str | None = cert.issuer.rfc4514_string()
    except (ValueError, TypeError):
        subject = issuer = None
    return CertInfo(sha256=digest, subject=subject, issuer=issuer, der_length=len(der))


def parse_certificate(body: bytes) -> tuple[CertInfo, ...]:
    """Parse a TLS <= 1.2 Certificate message body into the chain, leaf first.

    A certificate whose DER does not parse keeps its SHA-256 with subject/issuer None; a broken
    list framing is a :class:`TLSParseError`.
    """
    r = _Reader(body)
    chain = r.sub(r.u24("certificate_list length"), "certificate_list")
    out: list[CertInfo] = []
    while chain.remaining() > 0:
        der = chain.take(chain.u24("certificate length"), "certificate")
        out.append(_cert_info(bytes(der)))
    return tuple(out)
