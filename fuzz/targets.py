"""What is fuzzed: one target per parser of untrusted bytes, each with the errors it may raise.

A target takes one input (bytes) and drives it through the same entry point the CLI or the REST
API uses. An exception of a type in ``expected`` is the documented answer to bad input (a clear
one-line error for the user); any other exception, a hang past the time limit, or a signal is a
finding. Readers get a real file (the CLI reads paths), written under ``$TMPDIR`` per run.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENVOY_TEXT_FORMAT", "TARGETS", "Target", "is_expected", "load_targets"]


@dataclass(frozen=True, slots=True)
class Target:
    """A named parser entry point and the exception types that are its documented answers."""

    name: str
    run: Callable[[bytes], object]
    #: names of the exception classes that count as a clear error, not a finding
    expected: tuple[str, ...]
    #: what the input is, for the README and ``--list``
    about: str
    #: run in a child with the C capture core built with ASan and UBSan (:mod:`fuzz.sanitized`)
    sanitized: bool = False


def is_expected(target: Target, exc: BaseException) -> bool:
    """Whether ``exc`` is one of the target's documented answers (a subclass counts)."""
    return any(cls.__name__ in target.expected for cls in type(exc).__mro__)


@functools.cache
def _scratch_dir() -> Path:
    """Where inputs are written as files: inside the runner's work directory (``$TLSDETECT_FUZZ_SCRATCH``: a
    libFuzzer child exits without running ``atexit``), else a directory removed when this process exits."""
    given = os.environ.get("TLSDETECT_FUZZ_SCRATCH")
    if given:
        return Path(tempfile.mkdtemp(prefix="scratch-", dir=given))
    path = tempfile.mkdtemp(prefix=f"tlsdetect-fuzz-{os.getpid()}-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


def _scratch(name: str, data: bytes) -> Path:
    """The input as a file named ``name`` in this process's own scratch directory (reused)."""
    path = _scratch_dir() / name
    path.write_bytes(data)
    return path


def _read(name: str, kind: str) -> Callable[[bytes], object]:
    """The CLI's read path (sniff skipped: ``--input-format kind``): reader, then enrichment."""

    def run(data: bytes) -> object:
        from tlsdetect.readers.inputs import Inputs

        return Inputs([str(_scratch(name, data))], input_format=kind).read_all()

    return run


#: An Envoy text format with every field the text reader maps (``stream --text-format`` takes one).
ENVOY_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %CONNECTION_ID% %REQUESTED_SERVER_NAME% "
    '%DOWNSTREAM_TLS_VERSION% %TLS_JA3_FINGERPRINT% %TLS_JA4_FINGERPRINT% "%DOWNSTREAM_PEER_ISSUER%" '
    '"%DOWNSTREAM_PEER_SUBJECT%" "%REQ(USER-AGENT)%"\n'
)


def _envoy_text(data: bytes) -> object:
    """The stream's path for text logs: the reader with a format, then the one enrichment stage."""
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy import read_envoy

    return enrich(read_envoy([_scratch("access.log", data)], text_format=ENVOY_TEXT_FORMAT))


def _tls(data: bytes) -> object:
    """A TCP payload as the engine sees it: records split into messages, each parsed by its type."""
    from tlsdetect import fingerprint
    from tlsdetect.wire import tls

    scan = tls.scan_records(data, after_ccs=True)
    out: list[object] = []
    for msg in scan.messages:
        try:
            if msg.msg_type == 1:
                hello = tls.parse_client_hello(msg.body)
                first_alpn = hello.alpn[0] if hello.alpn else None
                out.append(fingerprint.ja4("t", hello.legacy_version, hello.ciphers, hello.extensions, first_alpn,
                                           hello.sig_algs, hello.supported_versions))
                out.append(fingerprint.ja3_string(hello.legacy_version, hello.ciphers, hello.extensions,
                                                  hello.groups, hello.point_formats))
            elif msg.msg_type == 2:
                out.append(tls.parse_server_hello(msg.body))
            elif msg.msg_type == 11:
                out.append(tls.parse_certificate(msg.body))
        except tls.TLSParseError:
            continue  # the engine's answer too: this message is not what it claims, the next one may be
    return out


def _udp(data: bytes) -> object:
    """A UDP payload through the native engine's UDP path, once as a QUIC Initial (header walk, key
    derivation, header protection, AEAD, frames, CRYPTO reassembly, hello) and once as DTLS records:
    rows and named skips; nothing may raise."""
    import numpy as np

    from tlsdetect.readers.base import ReadStats
    from tlsdetect.readers.pcap.datagrams import DTLS, QUIC, Candidates, Datagrams

    stats = ReadStats()
    reader = Datagrams(stats)
    buf = np.frombuffer(data, dtype=np.uint8)
    one = np.ones(1, dtype=np.uint64)
    for i, kind in enumerate((QUIC, DTLS)):
        ints = np.array([kind, 0, len(data), i, 443 + i, 5000], dtype=np.int64)
        reader.window(buf, Candidates(ints[0:1], ints[1:2], ints[2:3], ints[3:4], one, one * 2, one, one * 3,
                                      ints[4:5], ints[5:6]))
    return [*reader.rows(final=True), *stats.skipped.items()]


def _ccore(data: bytes) -> object:
    """The compiled capture core on the bytes as a capture and as raw memory, held to the numpy core."""
    from fuzz import ccore_target

    return ccore_target.run(data)


def _quic(data: bytes) -> object:
    """The QUIC Initial kernel (``_quic_crypto.c``) on the bytes as hellos, datagrams and sealed plaintexts."""
    from fuzz import quic_target

    return quic_target.run(data)


def _api(data: bytes) -> object:
    """``POST /v1/score``'s body: validated by the app's model, then turned into a connections table."""
    from tlsdetect.serve.models import connections_frame, score_request_model

    batch = score_request_model(1000).model_validate_json(data)
    return connections_frame(batch.model_dump()["connections"])


#: The secret and suite the ``tls13-flight`` target decrypts with (``make_seeds`` seals its seed with them).
FLIGHT_SECRET = bytes(range(32))
FLIGHT_CIPHER = 0x1303


def _tls13_flight(data: bytes) -> object:
    """``--keylog``'s parsers: the bytes as a server's TLS 1.3 flight (opened with a fixed secret) and as a key
    log. Every ending is a status or a counted skip, so no exception is an answer."""
    from tlsdetect.wire.keylog import parse_keylog
    from tlsdetect.wire.tls13_flight import decrypt_flight

    flight = decrypt_flight(data, FLIGHT_SECRET, FLIGHT_CIPHER)
    return [flight, *flight.certificates, parse_keylog(data)]


def _pushed(data: bytes) -> object:
    """A receiver's message bytes, as an OTLP export and as an ALS message: the compiled walk
    (``_pushwire.c``) and protobuf's classes must give the same cells wherever protobuf reads the bytes;
    protobuf's ``DecodeError`` (neither reading took them) is the answer to what is not a message."""
    from google.protobuf.message import DecodeError

    from tlsdetect.readers.envoy.als_wire import message_records
    from tlsdetect.readers.envoy.otlp_wire import export_records

    out: list[object] = []
    refused: DecodeError | None = None
    for read in (export_records, message_records):
        try:
            slow = read(data, fast=False).table()
        except DecodeError:
            slow = None
        try:
            fast = read(data).table()
        except DecodeError as exc:  # the walk fell back and protobuf refused: so must the slow path have
            if slow is not None:
                raise AssertionError(f"{read.__name__}: refused where protobuf reads it") from exc
            refused = exc
            continue
        if slow is not None and not fast.equals(slow):
            raise AssertionError(f"{read.__name__}: the compiled walk and protobuf disagree")
        out.append(fast)
    if not out and refused is not None:
        raise refused
    return out


_READ_ERRORS = ("InputError",)

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("pcap", _read("capture.pcapng", "pcap"), _READ_ERRORS, "a pcap or pcapng file, native engine"),
    Target("envoy-json", _read("access.log", "envoy"), _READ_ERRORS, "an Envoy JSON access log"),
    Target("envoy-text", _envoy_text, ("LogFormatError",), "an Envoy text access log"),
    Target("zeek-json", _read("ssl.log", "zeek"), _READ_ERRORS, "a Zeek ssl.log in JSON"),
    Target("zeek-tsv", _read("ssl.log", "zeek"), _READ_ERRORS, "a Zeek ssl.log in TSV"),
    Target("suricata", _read("eve.json", "suricata"), _READ_ERRORS, "a Suricata EVE JSON log"),
    Target("tls", _tls, ("TLSParseError",), "a TCP payload of TLS records (ClientHello, ServerHello, Certificate)"),
    Target("tls13-flight", _tls13_flight, (), "a server's TLS 1.3 flight to decrypt (--keylog), also a key log"),
    Target("udp", _udp, (), "a UDP payload: QUIC Initials (decrypted with the client's keys) and DTLS records"),
    Target("api", _api, ("ValidationError",), "a POST /v1/score JSON body"),
    Target("pushed", _pushed, ("DecodeError",), "an OTLP export / ALS message: the compiled walk held to protobuf",
           sanitized=True),
    Target("ccore", _ccore, ("CaptureError",), "a capture or raw bytes through the C capture core (ASan, UBSan),"
           " every array equal to the numpy core's", sanitized=True),
    Target("quic", _quic, (), "a hello, datagrams and Initial plaintexts through the QUIC kernel (ASan, UBSan),"
           " every answer equal to the Python path's", sanitized=True),
)}


def load_targets() -> dict[str, Target]:
    """:data:`TARGETS`, plus those of the module ``$TLSDETECT_FUZZ_TARGETS`` names (the harness's own
    tests use it to check that a raising and a crashing target are both caught)."""
    extra = os.environ.get("TLSDETECT_FUZZ_TARGETS")
    if not extra:
        return TARGETS
    module = importlib.import_module(extra)
    return {**TARGETS, **module.TARGETS}
