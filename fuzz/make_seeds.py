"""Writes the committed seed inputs under ``fuzz/seeds/<target>/`` (run again when a format grows).

Seeds are small valid inputs the mutations start from: log lines built by the test suite's own
record builders (so they track what the readers accept), ClientHellos from this machine's OpenSSL,
and a REST body. Captures are not copied: the runner reads ``pcaps/`` (and ``../shared`` when it is
there) as seeds in place.

    .venv/bin/python -m fuzz.make_seeds
"""

from __future__ import annotations

import contextlib
import importlib
import json
import ssl
from pathlib import Path

SEEDS = Path(__file__).parent / "seeds"


def _hello(**options: object) -> bytes:
    """The first flight an OpenSSL client sends (TLS records holding its ClientHello)."""
    ctx = ssl.create_default_context()
    for name, value in options.items():
        setattr(ctx, name, value)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname="seed.example")
    with contextlib.suppress(ssl.SSLWantReadError):  # no server: the hello is all there is
        conn.do_handshake()
    return outgoing.read()


def _quic_initial() -> bytes:
    """A client's first Initial datagram carrying this machine's OpenSSL ClientHello (padded to 1200)."""
    from tlsdetect.wire.quic_initial import protect_initial

    hello = _hello()[5:]  # the handshake message, out of its TLS record
    return protect_initial(1, bytes.fromhex("8394c8f03e515708"), b"\x01\x02", 0, [(0, hello)], pad_to=1150)


def _dtls_hello() -> bytes:
    """The same ClientHello as one DTLS 1.2 record (an empty cookie added after the session id)."""
    body = _hello()[9:]
    sid_end = 2 + 32 + 1 + body[34]
    body = b"\xfe\xfd" + body[2:sid_end] + b"\x00" + body[sid_end:]
    frag = bytes([1]) + len(body).to_bytes(3, "big") + bytes(2) + bytes(3) + len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + bytes(8) + len(frag).to_bytes(2, "big") + frag


def seeds() -> dict[str, dict[str, bytes]]:
    # The suite's record builders, loaded by name (the tests are not under mypy; the seeds only need their output).
    test_envoy, test_suricata, test_zeek, test_flight = (importlib.import_module(f"tests.{m}") for m in (
        "test_envoy", "test_suricata", "test_zeek", "test_tls13_flight"))
    from .targets import ENVOY_TEXT_FORMAT

    zeek_rows = [test_zeek._row(i) for i in range(3)]
    envoy_text = ('[2026-11-26T17:08:00.484Z] "GET /a HTTP/2" 200 [::1]:5000 [::1]:10443 4 mtls.test TLSv1.3 '
                  '0cce74b0d9b7f8528fb2181588d23793 t13d591000_a33745022dd6_1f22a2ca17c4 "CN=CA,O=Example" '
                  '"CN=node, O=Example Corp" "curl/8.5.0 (x86_64)"\n'
                  '[2026-11-26T17:08:01.000Z] "- - -" 0 10.0.0.5:6000 10.0.0.1:10443 5 - TLSv1.2 - - "-" "-" "-"\n')
    assert "%REQ(USER-AGENT)%" in ENVOY_TEXT_FORMAT
    api_row = {"client_ip": "10.1.2.3", "client_port": 40000, "server_ip": "10.0.0.1", "server_port": 443,
               "sni": "a.test", "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4", "ts": "2026-11-26T17:08:00Z"}
    return {
        "envoy-json": {"records.jsonl": "".join(test_envoy.record(connection_id=i, requested_server_name=f"s{i}.test")
                                                 + "\n" for i in range(3)).encode()},
        "envoy-text": {"lines.log": envoy_text.encode()},
        "zeek-json": {"ssl.jsonl": "".join(json.dumps(r) + "\n" for r in zeek_rows).encode()},
        "zeek-tsv": {"ssl.log": test_zeek.ssl_tsv([[test_zeek._tsv_value(v) for v in r.values()]
                                                   for r in zeek_rows]).encode()},
        "suricata": {"eve.json": "".join(json.dumps(test_suricata.tls_event(flow_id=i)) + "\n"
                                         for i in range(3)).encode()},
        "tls": {"openssl-default.bin": _hello(),
                "openssl-tls12.bin": _hello(maximum_version=ssl.TLSVersion.TLSv1_2)},
        # a flight sealed with the target's secret and suite (the test's builder uses the same)
        "tls13-flight": {"sealed.bin": test_flight.flight(test_flight.handshake(), [300])},
        "udp": {"quic-initial.bin": _quic_initial(), "dtls-hello.bin": _dtls_hello()},
        "api": {"one.json": json.dumps({"connections": [api_row]}).encode(),
                "two.json": json.dumps({"connections": [api_row, {"client_ip": "::1", "hello_retry": True}]}).encode()},
        "pushed": _pushed(),
    }


def _pushed() -> dict[str, bytes]:
    """An ALS message and an OTLP export of two records each, from the walks' tests' builders."""
    als, otlp = (importlib.import_module(f"tests.{m}") for m in ("test_als_wire", "test_otlp_wire"))
    entry = {"secs": 1_765_000_000, "nanos": 1_000_000, "host": "10.0.0.1", "port": 40000, "pipe": False,
             "named": False, "type": 3, "version": 4, "cipher": 0x1302, "sni": "a.test", "ja3": "x" * 32,
             "subject": "CN=node", "sans": [(True, "spiffe://a/b")], "method": 1, "agent": "curl", "status": 200}
    attrs = [("start_time", "2026-11-26T17:08:00.484Z"), ("downstream_remote_address", "10.0.0.1:40000"),
             ("ja4", "t13d591000_a33745022dd6_1f22a2ca17c4")]
    return {"als.bin": als._message([entry, {**entry, "cipher": None, "pipe": True}], True),
            "otlp.bin": otlp._export([attrs, attrs[:2]], [0, 1_765_000_000_000_000_000])}


def main() -> None:
    for target, files in seeds().items():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
            print(f"{folder / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
