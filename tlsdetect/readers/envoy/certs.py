"""The leaf certificates Envoy logs (``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%``, URL-encoded PEM).

They give ``*_issuer_akid`` (which key signed the leaf), ``*_spki_sha256`` (the leaf's SPKI pin)
and, where the line lacks them, the ``*_subject``, ``*_issuer`` and ``*_cert_sha256``
of the same side; the client's leaf also gives
``peer_serial``, ``peer_not_before``/``peer_not_after`` (as ISO 8601 text, parsed with the logged
``%DOWNSTREAM_PEER_CERT_V_START%``/``_V_END%``) and ``peer_uri_san`` (the SPIFFE ID) where the line
lacks them: the bound-identity signals need them. Each distinct PEM is parsed once
(and cached across blocks). A PEM that does not parse leaves those cells missing and the row kept:
it is counted in ``stats.reasons["bad certificate"]`` with one warning per block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect.readers.envoy.chunk import Chunk
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.wire.tls import CertInfo, parse_der_certificate

__all__ = ["PemDetails", "certificates", "pem_certificate", "pem_details"]


#: (side, raw PEM column, operator) of the logged leaf certificates.
_PEM_SIDES = (("peer", "peer_cert_pem", "DOWNSTREAM_PEER_CERT"), ("server", "server_cert_pem", "UPSTREAM_PEER_CERT"))


@lru_cache(maxsize=4096)
def pem_certificate(text: str) -> CertInfo | None:
    """One logged leaf certificate (URL-encoded PEM, or plain PEM); None when it is not one."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = x509.load_pem_x509_certificate(unquote(text).strip().encode("utf-8", "surrogateescape"))
        info = parse_der_certificate(cert.public_bytes(Encoding.DER))
    except (ValueError, TypeError, UnicodeError, x509.InvalidVersion):
        return None
    return info if info.subject is not None else None


@dataclass(frozen=True, slots=True)
class PemDetails:
    """What a client leaf tells beyond :class:`CertInfo`: serial (lowercase hex of its bytes, as Envoy's
    ``%DOWNSTREAM_PEER_SERIAL%``), validity (ISO 8601, UTC, as ``%DOWNSTREAM_PEER_CERT_V_END%``) and URI SANs
    (comma-joined, as ``%DOWNSTREAM_PEER_URI_SAN%``; None without)."""

    serial: str
    not_before: str
    not_after: str
    uri_san: str | None


@lru_cache(maxsize=4096)
def pem_details(text: str) -> PemDetails | None:
    """Serial, validity and URI SANs of one logged leaf certificate; None when it is not one."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(unquote(text).strip().encode("utf-8", "surrogateescape"))
        serial = cert.serial_number
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        try:
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
    except (ValueError, TypeError, UnicodeError, x509.InvalidVersion):
        return None
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big", signed=False) if serial >= 0 else b""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return PemDetails(raw.hex(), start.strftime(iso), end.strftime(iso), ",".join(uris) or None)


def certificates(
    cols: Mapping[str, pa.Array], frame: Mapping[str, pa.Array], bad: np.ndarray[Any, np.dtype[np.bool_]],
    chunk: Chunk, file: Path, dead: DeadLetter,
) -> dict[str, pa.Array]:
    """``*_issuer_akid`` (and missing subject, issuer, SHA-256) from the logged PEM leaves.

    Vectorised over distinct PEM texts: each is parsed once (and cached across blocks), its
    fields broadcast with Arrow's take. Rows already dead-lettered (``bad``) are not counted.
    """
    n = chunk.rows
    out: dict[str, pa.Array] = {}
    for side, raw, op in _PEM_SIDES:
        pem = cols.get(raw)
        if pem is None or pem.null_count == n:
            out[f"{side}_issuer_akid"] = pa.nulls(n, pa.string())
            out[f"{side}_spki_sha256"] = pa.nulls(n, pa.string())
            continue
        encoded = pc.dictionary_encode(pem)
        infos = [pem_certificate(t) for t in encoded.dictionary.to_pylist()]
        codes = pc.fill_null(encoded.indices, len(infos))  # null PEM -> the trailing None entry
        infos.append(None)

        def per_row(values: list[str | None], codes: pa.Array = codes) -> pa.Array:
            return pa.array(values, type=pa.string()).take(codes)

        out[f"{side}_issuer_akid"] = per_row([i.akid if i else None for i in infos])
        out[f"{side}_spki_sha256"] = per_row([i.spki if i else None for i in infos])
        for col, attr in (("subject", "subject"), ("issuer", "issuer"), ("cert_sha256", "sha256")):
            logged = frame[f"{side}_{col}"]
            out[f"{side}_{col}"] = pc.coalesce(logged, per_row([getattr(i, attr) if i else None for i in infos]))
        if side == "peer":
            details = [pem_details(t) for t in encoded.dictionary.to_pylist()] + [None]
            for col, attr in (("peer_serial", "serial"), ("peer_not_before", "not_before"),
                              ("peer_not_after", "not_after"), ("peer_uri_san", "uri_san")):
                logged = frame.get(col, pa.nulls(n, pa.string()))
                out[col] = pc.coalesce(logged, per_row([getattr(d, attr) if d else None for d in details]))
        unreadable = np.array([i is None for i in infos], dtype=bool)
        unreadable[-1] = False
        rows = np.flatnonzero(unreadable[codes.to_numpy(zero_copy_only=False)] & ~bad)
        if len(rows):
            dead.stats.reasons["bad certificate"] += len(rows)
            dead.stats.warnings.append(
                f"{file}: {len(rows)} line(s) whose %{op}% is not a PEM certificate (first at line "
                f"{chunk.line_no(int(rows[0]))}); their {side}_issuer_akid is left missing"
            )
    return out
