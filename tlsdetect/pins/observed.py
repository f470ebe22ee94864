"""The SPKIs seen, for the backup-pin check of ``pins lint --observed``.

``pins check`` reads the SPKIs of captures and logs (the ``spki`` of each chain certificate); ``lint`` takes
an observed set from files a tester has at hand: PEM certificates (each one's SPKI pin and certificate hash)
or a text list of pins, one per line (``sha256/`` optional, ``#`` comments).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tlsdetect.pins.rows import PolicyError, pin_problem, strip_sha256
from tlsdetect.wire.spki import spki_sha256


def spki_pin(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the DER SubjectPublicKeyInfo: the pin every format here uses, computed as the
    connections table's ``spki`` is (:func:`tlsdetect.wire.spki.spki_sha256`: from the certificate's bytes)."""
    pin = spki_sha256(cert.public_bytes(Encoding.DER))
    if pin is None:  # a certificate cryptography loaded always has a SubjectPublicKeyInfo to cut out
        raise ValueError("certificate without a readable SubjectPublicKeyInfo")
    return pin


def cert_hash(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the whole DER certificate: Envoy's ``verify_certificate_hash``."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def read_observed(paths: list[str]) -> set[str]:
    """SPKI pins and certificate hashes of PEM files, or pins listed one per line."""
    seen: set[str] = set()
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PolicyError(path, None, f"cannot read: {exc.strerror or exc}") from None
        if b"-----BEGIN CERTIFICATE-----" in data:
            try:
                certs = x509.load_pem_x509_certificates(data)
                seen |= {spki_pin(c) for c in certs} | {cert_hash(c) for c in certs}
            except ValueError as exc:
                raise PolicyError(path, None, f"bad PEM certificate: {str(exc)[:120]}") from None
            continue
        for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            text = strip_sha256(raw.split("#", 1)[0])
            if not text:
                continue
            problem = pin_problem(text, "any")
            if problem:
                raise PolicyError(path, n, problem)
            seen.add(text)
    return seen
