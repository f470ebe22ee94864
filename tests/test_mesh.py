"""The mesh CAs: --mesh-ca values (PEM file, DN, learn, none) and every mistake as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsdetect.detect.mesh import MeshCA, parse_mesh_ca, parse_mesh_cas


def test_parse_mesh_ca(tmp_path: Path) -> None:
    assert parse_mesh_ca("learn") == "learn"
    assert parse_mesh_ca("auto") == "learn"  # the old name (the CLI warns that it is deprecated)
    assert parse_mesh_ca("none") == []
    assert parse_mesh_ca("CN=Mesh CA,O=corp") == [MeshCA("CN=Mesh CA,O=corp")]
    with pytest.raises(ValueError, match="neither"):
        parse_mesh_ca("meshca")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="not a PEM"):
        parse_mesh_ca(str(bad))


def test_mesh_ca_from_a_pem_carries_its_key_id(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mesh CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corp")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(ski, critical=False).sign(key, hashes.SHA256()))
    path = tmp_path / "mesh.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (mesh,) = parse_mesh_ca(str(path)) or []
    assert mesh.ski == ski.digest.hex()
    assert mesh.issuer == cert.subject.rfc4514_string()
    assert mesh.sha256 == cert.fingerprint(hashes.SHA256()).hex()


def test_parse_mesh_ca_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    """Issue 14 item 3: ``--mesh-ca ""`` read the current directory (IsADirectoryError)."""
    for bad, message in (("", "empty value"), ("  ", "empty value"), (str(tmp_path), "a directory, not a PEM")):
        with pytest.raises(ValueError, match=message):
            parse_mesh_ca(bad)
    assert parse_mesh_cas([]) == []
    assert parse_mesh_cas(["CN=A,O=x", "CN=B,O=x"]) == [MeshCA("CN=A,O=x"), MeshCA("CN=B,O=x")]
    with pytest.raises(ValueError, match="'learn' cannot be combined"):
        parse_mesh_cas(["learn", "CN=A,O=x"])
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        parse_mesh_cas(["none", "CN=A,O=x"])
