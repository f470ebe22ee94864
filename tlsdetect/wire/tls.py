"""Pure parsing of TLS (and DTLS) handshake messages: ClientHello, ServerHello, Certificate.

Every parser here obeys one contract, borrowed from mitmproxy's ``parse_client_hello``:

* it returns a parsed value,
* or says "need more bytes" when the bytes end before the structure does: the stream reader
  :func:`scan_records` returns what it has with ``stop == "need_more"`` (a message body handed
  to the message parsers is complete by construction, so for them a short body is malformed),
* or raises :class:`TLSParseError` (a ``ValueError``) for malformed input.

Any other exception escaping from here is a bug; the hypothesis tests feed arbitrary bytes to prove it.
Nothing here does I/O, so the pcap reader, the tshark engine and the log readers share it.

Size: one parser family under one contract (the record scanner, the hello parsers and the Certificate
message share ``_Reader`` and ``TLSParseError``); split, each half would import
the other's internals, and the contract tests feed them all the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from tlsdetect.wire.spki import spki_sha256

if TYPE_CHECKING:
    from cryptography import x509

    from tlsdetect.wire.sct import CtEvidence

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
    "parse_der_certificate",
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

    def read_bytes(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes (the cursor moves past them)."""
        if n < 0 or self.pos + n > self.end:
            raise TLSParseError(f"{what}: need {n} bytes, {self.end - self.pos} left")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.read_bytes(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.read_bytes(2, what), "big")

    def u24(self, what: str) -> int:
        return int.from_bytes(self.read_bytes(3, what), "big")

    def sub(self, n: int, what: str) -> _Reader:
        start = self.pos
        self.read_bytes(n, what)
        return _Reader(self.buf, start, start + n)


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
    #: Random per connection (or a resumption handle): kept out of equality and hashing so equal
    #: hellos stay equal; the connections table only compares it with the ServerHello's.
    session_id: bytes = field(default=b"", compare=False)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The ServerHello fields JA3S and the connections table need."""

    legacy_version: int
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None = None
    alpn: bytes | None = None
    is_hello_retry_request: bool = False
    session_id: bytes = field(default=b"", compare=False)  # see ClientHello.session_id

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions wins over the legacy field (TLS 1.3)."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate of a chain. ``subject``/``issuer`` are None when the DER does not parse.

    ``ski`` (Subject Key Identifier) and ``akid`` (the ``key_identifier`` of the Authority Key
    Identifier: which key signed this certificate) are lowercase hex, None when the certificate
    lacks the extension (or an AKI carries only issuer/serial). Together with the issuer DN they
    tell a look-alike CA (same DN, another key) from the real one.
    """

    sha256: str
    subject: str | None
    issuer: str | None
    der_length: int
    ski: str | None = None
    akid: str | None = None
    #: Base64 SHA-256 of the DER SubjectPublicKeyInfo: the pin (:mod:`tlsdetect.wire.spki`).
    spki: str | None = None


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
    ``settled``: how many of ``messages`` lie wholly inside the first ``consumed`` bytes; the others
    came out of a record whose last message continues past it, and a scan resumed at ``consumed``
    finds them again (an incremental reader must not count them twice).

    ``before_ccs``: how many of ``messages`` came before the first ChangeCipherSpec (None: none seen).
    """

    messages: list[HandshakeMessage] = field(default_factory=list)
    consumed: int = 0
    settled: int = 0
    before_ccs: int | None = None
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
            if not saw_ccs:
                scan.before_ccs = len(scan.messages)
            saw_ccs = True
            scan.saw_change_cipher_spec = True
            pos += 5 + length
            if not pending:  # a message cut by it still waits: resuming here would lose its start
                scan.consumed, scan.settled = pos, len(scan.messages)
            continue
        if ctype == CONTENT_ALERT:
            scan.stop = "alert"
            scan.consumed, scan.settled = pos, len(scan.messages)
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
            scan.consumed, scan.settled = pos, len(scan.messages)
    return scan


_U16 = struct.Struct(">H")


def _u16s(buf: bytes, pos: int, n_bytes: int) -> tuple[int, ...]:
    return struct.unpack_from(f">{n_bytes // 2}H", buf, pos)


def _extensions(body: bytes, pos: int) -> list[tuple[int, int, int]]:
    """(type, data_start, data_len) of each extension from ``pos``; absent block -> [].

    A block whose framing breaks part-way keeps the extensions before the break, as Wireshark
    does (tshark's JA3 of such a hello is computed from them), instead of losing the hello; the
    overrunning extension keeps its type with no data (``data_len`` -1).
    """
    n = len(body)
    if n - pos < 2:
        return []
    end = min(pos + 2 + _U16.unpack_from(body, pos)[0], n)
    pos += 2
    out: list[tuple[int, int, int]] = []
    while end - pos >= 4:
        ext_type, ext_len = struct.unpack_from(">HH", body, pos)
        pos += 4
        if ext_len > end - pos:
            out.append((ext_type, pos, -1))
            break
        out.append((ext_type, pos, ext_len))
        pos += ext_len
    return out


def _u16_vector(body: bytes, start: int, length: int, len_bytes: int) -> tuple[int, ...] | None:
    """A length-prefixed list of uint16 inside one extension; None when it does not fit."""
    if length < len_bytes:
        return None
    n = body[start] if len_bytes == 1 else _U16.unpack_from(body, start)[0]
    if n % 2 or n > length - len_bytes:
        return None
    return _u16s(body, start + len_bytes, n)


def _sni_value(body: bytes, start: int, length: int) -> str | None:
    try:
        return _parse_sni(_Reader(body, start, start + length))
    except TLSParseError:
        return None


def _alpn_value(body: bytes, start: int, length: int) -> tuple[bytes, ...] | None:
    try:
        return _parse_alpn(_Reader(body, start, start + length))
    except TLSParseError:
        return None


def _parse_sni(r: _Reader) -> str | None:
    names = r.sub(r.u16("server_name list length"), "server_name list")
    while names.remaining() > 0:
        name_type = names.u8("server_name type")
        name = names.read_bytes(names.u16("server_name length"), "server_name")
        if name_type == 0:
            return name.decode("ascii", "backslashreplace")
    return None


def _parse_alpn(r: _Reader) -> tuple[bytes, ...]:
    protos = r.sub(r.u16("ALPN list length"), "ALPN list")
    out: list[bytes] = []
    while protos.remaining() > 0:
        out.append(protos.read_bytes(protos.u8("ALPN protocol length"), "ALPN protocol"))
    return tuple(out)


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise TLSParseError(what)


def parse_client_hello(body: bytes, *, dtls: bool = False) -> ClientHello:
    """Parse a ClientHello message body (the bytes after the 4-byte handshake header).

    The outer structure (version, session id, ciphers, compression, extension framing) must be
    well formed. A malformed *inner* extension (say a short supported_groups list) leaves that
    one field empty but keeps the extension type, as Wireshark does, because the fingerprint
    of a broken hello is still evidence. Written with flat offsets rather than a cursor object:
    this runs once per connection that the bulk path cannot take.
    """
    body = bytes(body)
    n = len(body)
    _need(n >= 35, "ClientHello shorter than version + random + session_id length")
    legacy_version = _U16.unpack_from(body, 0)[0]
    session_id_length = body[34]
    _need(session_id_length <= 32, f"session_id length {session_id_length} > 32")
    pos = 35 + session_id_length
    if dtls:
        _need(pos < n, "cookie length missing")
        pos += 1 + body[pos]
    _need(pos + 2 <= n, "cipher_suites length missing")
    cs_len = _U16.unpack_from(body, pos)[0]
    pos += 2
    _need(cs_len % 2 == 0 and pos + cs_len <= n, f"cipher_suites: bad length {cs_len}")
    ciphers = _u16s(body, pos, cs_len)
    pos += cs_len
    _need(pos < n, "compression_methods length missing")
    comp_len = body[pos]
    pos += 1
    _need(pos + comp_len <= n, f"compression_methods: bad length {comp_len}")
    compression = tuple(body[pos : pos + comp_len])
    pos += comp_len

    sni: str | None = None
    alpn: tuple[bytes, ...] = ()
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    extensions = _extensions(body, pos)
    for ext_type, start, length in extensions:
        if length < 0:
            continue
        if ext_type == EXT_SERVER_NAME:
            sni = _sni_value(body, start, length)
        elif ext_type == EXT_ALPN:
            alpn = _alpn_value(body, start, length) or ()
        elif ext_type == EXT_SUPPORTED_GROUPS:
            groups = _u16_vector(body, start, length, 2) or ()
        elif ext_type == EXT_EC_POINT_FORMATS:
            if length >= 1 and body[start] <= length - 1:
                point_formats = tuple(body[start + 1 : start + 1 + body[start]])
            else:
                point_formats = ()
        elif ext_type == EXT_SIGNATURE_ALGORITHMS:
            sig_algs = _u16_vector(body, start, length, 2) or ()
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            versions = _u16_vector(body, start, length, 1) or ()
    return ClientHello(
        legacy_version=legacy_version,
        ciphers=ciphers,
        extensions=tuple(t for t, _, _ in extensions),
        sni=sni,
        alpn=alpn,
        groups=groups,
        point_formats=point_formats,
        sig_algs=sig_algs,
        supported_versions=versions,
        compression=compression,
        session_id_length=session_id_length,
        dtls=dtls,
        session_id=body[35 : 35 + session_id_length],
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """Parse a ServerHello body; a TLS 1.3 HelloRetryRequest is a ServerHello with a fixed random."""
    body = bytes(body)
    n = len(body)
    _need(n >= 34, "ServerHello shorter than version + random")
    legacy_version = _U16.unpack_from(body, 0)[0]
    random = body[2:34]
    pos = 34
    # TLS 1.3 drafts (0x7Fxx) put the version here and dropped session id and compression.
    draft13 = (legacy_version >> 8) == 0x7F
    session_id = b""
    if not draft13:
        _need(pos < n, "session_id length missing")
        sid_len = body[pos]
        _need(sid_len <= 32, f"session_id length {sid_len} > 32")
        session_id = body[pos + 1 : pos + 1 + sid_len]
        pos += 1 + sid_len
    _need(pos + 2 <= n, "cipher_suite missing")
    cipher = _U16.unpack_from(body, pos)[0]
    pos += 2
    if not draft13:
        _need(pos < n, "compression_method missing")
        pos += 1
    selected: int | None = None
    alpn: bytes | None = None
    extensions = _extensions(body, pos)
    for ext_type, start, length in extensions:
        if ext_type == EXT_SUPPORTED_VERSIONS and length == 2:
            selected = _U16.unpack_from(body, start)[0]
        elif ext_type == EXT_ALPN and length >= 0:
            protos = _alpn_value(body, start, length)
            alpn = protos[0] if protos else None
    return ServerHello(
        legacy_version=legacy_version,
        cipher=cipher,
        extensions=tuple(t for t, _, _ in extensions),
        selected_version=selected,
        alpn=alpn,
        is_hello_retry_request=random == HRR_RANDOM,
        session_id=session_id,
    )


@lru_cache(maxsize=8192)
def _parsed(der: bytes) -> tuple[CertInfo, CtEvidence | None]:
    """Certificates repeat across connections, so each distinct DER is parsed once (with its CT evidence)."""
    from cryptography import x509

    from tlsdetect.wire import sct

    digest = hashlib.sha256(der).hexdigest()
    spki = spki_sha256(der)
    try:
        cert = x509.load_der_x509_certificate(der)
        subject: str | None = cert.subject.rfc4514_string()
        issuer: str | None = cert.issuer.rfc4514_string()
    except (ValueError, TypeError, x509.InvalidVersion):  # InvalidVersion: not a ValueError
        return CertInfo(sha256=digest, subject=None, issuer=None, der_length=len(der), spki=spki), None
    ski, akid = _key_ids(cert)
    info = CertInfo(sha256=digest, subject=subject, issuer=issuer, der_length=len(der), ski=ski, akid=akid,
                    spki=spki)
    return info, sct.evidence(cert)


def _cert_info(der: bytes) -> CertInfo:
    """A parsed certificate; every sighting, cached or not, puts its CT evidence in :mod:`tlsdetect.wire.sct`'s
    store, so the store (bounded, least recently seen first) never lacks a certificate the parse cache still
    serves: a long process that parsed it long ago must not read "no SCT evidence" for it."""
    from tlsdetect.wire import sct

    info, evidence = _parsed(der)
    if evidence is not None:
        sct.keep(info.sha256, evidence)  # the leaf's CT evidence, for the stage after reading (detect.ct)
    return info


def _key_ids(cert: x509.Certificate) -> tuple[str | None, str | None]:
    """(SKI, AKI ``key_identifier``) of a certificate as lowercase hex; None when absent or unreadable.

    cryptography parses extensions lazily, so a malformed extension list raises only here: it
    loses these two values, never the certificate.
    """
    from cryptography import x509

    ski = akid = None
    try:
        for ext in cert.extensions:
            value = ext.value
            if isinstance(value, x509.SubjectKeyIdentifier):
                ski = value.digest.hex() or None
            elif isinstance(value, x509.AuthorityKeyIdentifier) and value.key_identifier:
                akid = value.key_identifier.hex()
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None, None
    return ski, akid


def parse_der_certificate(der: bytes) -> CertInfo:
    """One DER certificate (cached per distinct DER); subject/issuer None when it does not parse."""
    return _cert_info(bytes(der))


def parse_certificate(body: bytes) -> tuple[CertInfo, ...]:
    """Parse a TLS <= 1.2 Certificate message body into the chain, leaf first.

    A certificate whose DER does not parse keeps its SHA-256 with subject/issuer None; a broken
    list framing is a :class:`TLSParseError`.
    """
    r = _Reader(body)
    chain = r.sub(r.u24("certificate_list length"), "certificate_list")
    out: list[CertInfo] = []
    while chain.remaining() > 0:
        der = chain.read_bytes(chain.u24("certificate length"), "certificate")
        out.append(_cert_info(bytes(der)))
    return tuple(out)
