"""Certificate Transparency: the log IDs of a certificate's embedded signed certificate timestamps (SCTs).

Why: every public CA embeds SCTs (the SCT list extension, OID 1.3.6.1.4.1.11129.2.4.2, RFC 6962 3.3)
because browsers refuse a public leaf without them; an interception CA forging a leaf on the fly for a
public name has no log to ask, so its leaves carry none. The log ID (the SHA-256 of the log's key) says
which logs vouched.

Certificates are parsed where their bytes are (:func:`tlsdetect.wire.tls.parse_der_certificate`, once
per distinct DER), long before a table exists, and the connections table keeps only each leaf's SHA-256.
So the parser records each certificate's SCT log IDs here, by SHA-256 (:func:`keep`), and the stage
after reading (:func:`tlsdetect.detect.ct.add_sct_columns`) looks the leaves up (:func:`lookup`). The
store is bounded (least recently looked up goes first; a lookup refreshes) and thread-safe (tshark files
are read in threads).
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

__all__ = ["SCT_OID", "CtEvidence", "evidence", "keep", "lookup", "sct_log_ids"]

SCT_OID = x509.oid.ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS
#: Certificates remembered at most: 8 times the parser's own cache, so a certificate still in use (looked
#: up every chunk) is never the oldest.
MAX_CERTIFICATES = 65_536



@dataclass(frozen=True, slots=True)
class CtEvidence:
    """What one certificate says for CT: its SCT log IDs (None: unreadable) and when it became valid (CT was
    required of public leaves issued from April 2018 on: an older leaf without SCTs is normal)."""

    log_ids: tuple[str, ...] | None
    not_before: dt.datetime | None


_LOCK = threading.Lock()
_STORE: OrderedDict[str, CtEvidence] = OrderedDict()


def sct_log_ids(cert: x509.Certificate) -> tuple[str, ...] | None:
    """Base64 log IDs of the certificate's embedded SCTs, in order; () without the extension; None when the
    extensions do not parse (unknown, not "none")."""
    try:
        ext = cert.extensions.get_extension_for_oid(SCT_OID)
    except x509.ExtensionNotFound:
        return ()
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None
    value = ext.value
    if not isinstance(value, x509.PrecertificateSignedCertificateTimestamps):
        return None  # present but not understood (cryptography keeps it as an UnrecognizedExtension)
    return tuple(base64.b64encode(sct.log_id).decode("ascii") for sct in value)


def evidence(cert: x509.Certificate) -> CtEvidence:
    """A parsed certificate's SCT log IDs and validity start."""
    try:
        start: dt.datetime | None = cert.not_valid_before_utc
    except ValueError:
        start = None
    return CtEvidence(sct_log_ids(cert), start)


def keep(sha256: str, evidence: CtEvidence) -> None:
    """Put (or refresh) a certificate's CT evidence in the store, evicting the least recently seen."""
    with _LOCK:
        _STORE[sha256] = evidence
        _STORE.move_to_end(sha256)
        while len(_STORE) > MAX_CERTIFICATES:
            _STORE.popitem(last=False)


def lookup(sha256s: Iterable[str]) -> list[CtEvidence | None]:
    """The CT evidence of each certificate (None: never parsed here)."""
    out: list[CtEvidence | None] = []
    with _LOCK:
        for sha in sha256s:
            found = _STORE.get(sha)
            if found is not None:
                _STORE.move_to_end(sha)
            out.append(found)
    return out
