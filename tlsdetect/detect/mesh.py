"""The mesh's CAs: ``--mesh-ca`` values (a PEM file, a DN, ``learn`` or ``none``) parsed into :class:`MeshCA`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from tlsdetect.detect.issuers import dn_key

__all__ = ["DEPRECATED_AUTO", "LEARN", "MeshCA", "MeshSpec", "parse_mesh_ca", "parse_mesh_cas"]


@dataclass(frozen=True)
class MeshCA:
    """One CA the mesh trusts: its DN and, when known, its key identifier and certificate hash."""

    issuer: str
    ski: str | None = None
    sha256: str | None = None


#: ``Baseline(mesh_ca=...)``: the given CAs (``[]`` or ``None``: no mesh CA) or ``"learn"`` (the dominant
#: private issuer of the fitted traffic, flagged as learned wherever it is used).
MeshSpec: TypeAlias = list[MeshCA] | Literal["learn"] | None
LEARN: Literal["learn"] = "learn"
#: ``--mesh-ca auto``: what ``learn`` was called when it was the default; still accepted, with a warning.
DEPRECATED_AUTO = "auto"


def parse_mesh_ca(spec: str) -> list[MeshCA] | Literal["learn"]:
    """One ``--mesh-ca`` value: ``none`` (``[]``), ``learn`` (or its old name ``auto``), a PEM file or a DN.

    Any mistake is a ``ValueError`` whose text is one line for the user (an empty value, a directory,
    an unreadable file, a file without a certificate, text that is neither a file nor a DN).
    """
    if not spec.strip():
        raise ValueError("empty value: give a PEM file, a DN ('CN=...,O=...'), 'learn' or 'none'")
    if spec.lower() in (LEARN, DEPRECATED_AUTO):
        return LEARN
    if spec.lower() == "none":
        return []
    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"{spec}: a directory, not a PEM certificate file")
    if path.exists():
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            raise ValueError(f"{spec}: cannot read it ({exc.strerror or exc})") from None
        except (ValueError, x509.InvalidVersion) as exc:
            raise ValueError(f"{spec}: not a PEM certificate file ({exc})") from None
        out = []
        for cert in certs:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
            except x509.ExtensionNotFound:
                ski = None
            out.append(MeshCA(cert.subject.rfc4514_string(), ski, cert.fingerprint(hashes.SHA256()).hex()))
        return out
    if "=" not in spec:
        raise ValueError(f"{spec!r} is neither a file, a DN (CN=...,O=...), 'learn' nor 'none'")
    if dn_key(spec) is None:
        raise ValueError(f"{spec!r}: not a distinguished name")
    return [MeshCA(spec)]


def parse_mesh_cas(specs: Sequence[str]) -> list[MeshCA] | Literal["learn"]:
    """Every ``--mesh-ca`` given (repeatable): no value at all is no mesh CA (``[]``).

    ``learn`` and ``none`` stand alone: learning beside given CAs would silently trust whatever
    else dominates the traffic, and ``none`` beside a CA contradicts it.
    """
    parsed = [parse_mesh_ca(s) for s in specs]
    if LEARN in parsed:
        if len(parsed) > 1:
            raise ValueError("'learn' cannot be combined with other mesh CAs")
        return LEARN
    if len(parsed) > 1 and any(p == [] for p in parsed):
        raise ValueError("'none' cannot be combined with a mesh CA")
    return [m for p in parsed if not isinstance(p, str) for m in p]
