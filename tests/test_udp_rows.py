"""The QUIC/DTLS row rules (:mod:`tlsdetect.readers.pcap.udp_rows`), shared by both engines."""

from __future__ import annotations

from tlsdetect.fingerprint import client_fingerprints
from tlsdetect.readers.pcap.tls_stream import Connection, DirectionView, Endpoint
from tlsdetect.readers.pcap.udp_rows import dtls_offered, udp_row
from tlsdetect.wire.tls import ClientHello, ServerHello

A, B = Endpoint(0, 0xFFFF0A000001, 5000), Endpoint(0, 0xFFFF0A000002, 443)


def _hello(sni: str, versions: tuple[int, ...] = ()) -> ClientHello:
    return ClientHello(0xFEFD, (0xC02F,), (0, 43) if versions else (0,), sni=sni, supported_versions=versions)


def test_dtls_versions_count_down() -> None:
    assert dtls_offered(_hello("a", (0xFEFD, 0xFEFC))) == 0xFEFC
    assert dtls_offered(_hello("a")) == 0xFEFD


def test_dtls_second_hello_is_a_cookie_answer_not_a_retry() -> None:
    conn = Connection(A, B, 1)
    conn.views[True] = DirectionView(client_hellos=[_hello("one"), _hello("two")])
    conn.views[False] = DirectionView(server_hellos=[ServerHello(0xFEFD, 0xC02F, ())])
    row = udp_row(conn, "dtls")
    assert row["transport"] == "dtls"
    assert row["hello_retry"] is False
    assert row["ja4_retry"] == client_fingerprints("d", _hello("two")).ja4
    assert row["tls_version"] == "DTLSv1.2"
    assert row["client_port"] == 5000


def test_quic_row_without_server_takes_the_offered_version() -> None:
    conn = Connection(A, B, 1)
    hello = ClientHello(0x0303, (0x1301,), (43,), supported_versions=(0x0304,))
    conn.views[True] = DirectionView(client_hellos=[hello])
    row = udp_row(conn, "quic")
    assert (row["transport"], row["tls_version"], row["incomplete"]) == ("quic", "TLSv1.3", None)
    assert "ja4_retry" not in row
    assert "server_flight" not in row  # no record stream over QUIC: no flight columns
