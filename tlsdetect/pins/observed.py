"""The SPKIs seen in traffic, for the backup-pin check of ``pins lint --observed``.

Until ``pins check`` brings SPKIs from captures and logs, an observed set is read from files a
tester has at hand: PEM certificates (each one's SPKI pin and certificate hash) or a text list of
pins, one per line (``sha256/`` optional, ``#`` comments).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tlsdetect.pins.rows import PolicyError, pin_problem, strip_sha256


def spki_pin(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the DER SubjectPublicKeyInfo: the pin every format here uses."""
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


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
            except ValueError as exc:
                raise PolicyError(path, None, f"bad PEM certificate: {str(exc)[:120]}") from None
            seen |= {spki_pin(c) for c in certs} | {cert_hash(c) for c in certs}
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
