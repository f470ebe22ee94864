"""Logged leaf certificates (URL-encoded PEM): issuing key, subject, issuer and SHA-256; garbage counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tlsdetect.readers.logs import DeadLetter
from tlsdetect.schema import validate
from tlsdetect.wire.tls import parse_der_certificate

from .test_envoy import read_envoy, record, write


def _pem(cert: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[attr-defined, no-any-return]


def test_peer_certificate_pem_gives_the_issuing_key(tmp_path: Path) -> None:
    """``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%``: URL-encoded PEM -> ``*_issuer_akid``."""
    import hashlib
    from urllib.parse import quote

    from cryptography.hazmat.primitives import serialization

    from tests.test_tls import CA_SKI, make_cert

    client = make_cert("client.test", "Mesh CA")
    upstream = make_cert("backend.test", "Mesh CA", akid=bytes(range(20)))
    lines = [
        # nothing but the PEM: subject, issuer and SHA-256 come from it
        record(connection_id=1, downstream_peer_cert=quote(_pem(client), safe=""),
               upstream_peer_cert=quote(_pem(upstream), safe="")),
        # what the line says wins; the AKI is still read (Envoy's own partial URL-encoding)
        record(connection_id=2, downstream_peer_subject="CN=as logged",
               downstream_peer_cert=_pem(client).replace("\n", "%0A").replace(" ", "%20")),
        record(connection_id=3),
    ]  # fmt: skip
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    validate(df)
    a, b, c = (df.iloc[i] for i in range(3))
    assert a["peer_issuer_akid"] == b["peer_issuer_akid"] == CA_SKI.hex()
    assert a["server_issuer_akid"] == bytes(range(20)).hex()
    assert a["server_spki_sha256"] == parse_der_certificate(upstream.public_bytes(serialization.Encoding.DER)).spki
    assert a["peer_spki_sha256"] == parse_der_certificate(client.public_bytes(serialization.Encoding.DER)).spki
    assert pd.isna(c["server_spki_sha256"])
    assert (a["peer_subject"], a["peer_issuer"]) == ("CN=client.test", "CN=Mesh CA")
    assert a["peer_cert_sha256"] == hashlib.sha256(client.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert a["peer_issuer_key"] == a["server_issuer_key"]  # same DN ...
    assert a["peer_issuer_akid"] != a["server_issuer_akid"]  # ... another key: a look-alike CA
    assert (a["server_subject"], a["server_issuer"]) == ("CN=backend.test", "CN=Mesh CA")
    assert b["peer_subject"] == "CN=as logged"
    assert c[["peer_issuer_akid", "server_issuer_akid", "peer_subject"]].isna().all()
    assert str(df["peer_issuer_akid"].dtype) == str(df["server_issuer_akid"].dtype) == "category"
    assert (dead.stats.bad_lines, dead.stats.warnings) == (0, [])

    collapsed = read_envoy([write(tmp_path, lines[:1] + lines[:1])], collapse=True)
    assert collapsed["peer_issuer_akid"].tolist() == [CA_SKI.hex()]

    fmt = "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_PEER_CERT% %TLS_JA4_FINGERPRINT%"
    text = read_envoy([write(tmp_path, [f"1.2.3.4:5 {quote(_pem(client), safe='')} t13d_a_b"], "t.log")],
                      text_format=fmt)  # fmt: skip
    assert (text.iloc[0]["peer_issuer_akid"], text.iloc[0]["ja4"]) == (CA_SKI.hex(), "t13d_a_b")


def test_garbage_peer_certificate_is_a_counted_skip(tmp_path: Path) -> None:
    from urllib.parse import quote

    from tests.test_tls import make_cert

    garbage = "-----BEGIN%20CERTIFICATE-----%0AAAAAbm90IGEgY2VydA%3D%3D%0A-----END%20CERTIFICATE-----%0A"
    lines = [
        record(connection_id=1, downstream_peer_cert=garbage, downstream_peer_issuer="CN=as logged"),
        record(connection_id=2, downstream_peer_cert="%E2%82%AC%ZZ not pem at all"),
        record(connection_id=3, downstream_peer_cert=quote(_pem(make_cert()), safe="")),
        record(connection_id=4, downstream_peer_cert=garbage, downstream_remote_address="bad"),  # dead-lettered
    ]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    validate(df)
    assert df["conn_id"].tolist() == ["1", "2", "3"]
    assert df["peer_issuer_akid"].isna().tolist() == [True, True, False]
    assert df.iloc[0]["peer_issuer"] == "CN=as logged"
    assert (dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (4, 3, 1)
    assert dead.stats.reasons["bad certificate"] == 2
    (warning,) = dead.stats.warnings
    assert "2 line(s)" in warning
    assert "%DOWNSTREAM_PEER_CERT%" in warning
    assert "first at line 1)" in warning


def test_serial_validity_and_spiffe_id_from_operators_or_pem(tmp_path: Path) -> None:
    """``%DOWNSTREAM_PEER_SERIAL%``/``_CERT_V_START%``/``_CERT_V_END%`` as Envoy prints them, else from the PEM."""
    import datetime as dt
    from urllib.parse import quote

    import pandas as pd
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orders")])
    start = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x0A0B).not_valid_before(start).not_valid_after(start + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://t/ns/a/sa/orders")]),
                           critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    lines = [
        record(connection_id=1, downstream_peer_cert=quote(_pem(cert), safe="")),
        record(connection_id=2, downstream_peer_subject="CN=orders", downstream_peer_serial="0A:0B",
               downstream_peer_cert_v_start="2026-01-02T03:04:05.000Z", downstream_peer_cert_v_end="1767323045"),
        record(connection_id=3, downstream_peer_subject="CN=orders", downstream_peer_cert_v_end="not a time"),
    ]  # fmt: skip
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    validate(df)
    a, b, c = (df.iloc[i] for i in range(3))
    assert a["peer_serial"] == b["peer_serial"] == "0a0b"  # bytes as hex, leading zero kept; colons dropped
    assert a["peer_not_before"] == b["peer_not_before"] == pd.Timestamp(start)
    assert a["peer_not_after"] == pd.Timestamp(start + dt.timedelta(days=30))
    assert b["peer_not_after"] == pd.Timestamp(1767323045, unit="s", tz="UTC")  # epoch seconds (%s) too
    assert a["client_id"] == "spiffe://t/ns/a/sa/orders"  # the PEM's URI SAN names the workload
    assert pd.isna(c["peer_not_after"])  # kept, its validity unknown, and counted
    assert c["conn_id"] == "3"
    assert dead.stats.reasons["bad certificate validity"] == 1
    assert dead.stats.bad_lines == 0
