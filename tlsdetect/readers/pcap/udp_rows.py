"""The row of a QUIC or DTLS connection: the TCP row's rules plus what differs over UDP (pure logic).

Both engines render their UDP connections here (the native engine's :mod:`.datagrams` and the
tshark engine), so the two agree by construction on everything past the hellos.
"""

from __future__ import annotations

from tlsdetect.fingerprint import client_fingerprints
from tlsdetect.readers.pcap.tls_stream import Connection
from tlsdetect.wire.tls import ClientHello
from tlsdetect.wire.versions import version_name

__all__ = ["correct_dtls", "dtls_offered", "udp_row"]

#: DTLS versions count down: a larger rank is a newer protocol.
_DTLS_RANK = {0xFEFF: 1, 0xFEFD: 2, 0xFEFC: 3}
_LETTER = {"quic": "q", "dtls": "d"}


def dtls_offered(hello: ClientHello) -> int:
    """Highest DTLS version a ClientHello offers (DTLS numbers count down, so ``max`` is wrong)."""
    offered = [v for v in hello.supported_versions if v in _DTLS_RANK]
    return max(offered, key=_DTLS_RANK.__getitem__) if offered else hello.legacy_version


def correct_dtls(row: dict[str, object], conn: Connection) -> None:
    """Where :meth:`Connection.row`'s TLS-over-TCP reasoning does not hold for DTLS.

    * A second ClientHello is normal in DTLS <= 1.2 (the answer to a HelloVerifyRequest cookie),
      so it is not evidence of a HelloRetryRequest: only the first ServerHello says so.
    * Without a ServerHello the version is the highest offered, and DTLS numbers count down.
    """
    servers = [v.server_hellos[0] for v in conn.views.values() if v.server_hellos]
    clients = [v.client_hellos[0] for v in conn.views.values() if v.client_hellos]
    row["hello_retry"] = servers[0].is_hello_retry_request if servers else None
    if not servers and clients:
        row["tls_version"] = version_name(dtls_offered(clients[0]))


def udp_row(conn: Connection, transport: str) -> dict[str, object]:
    """The connections-table row of a ``quic`` or ``dtls`` connection, its second ClientHello
    (HelloRetryRequest, or DTLS's HelloVerifyRequest cookie) fingerprinted with the transport's letter."""
    row = conn.row(records=False)
    row["transport"] = transport
    retry = row.pop("retry_hello", None)
    if isinstance(retry, ClientHello):
        fps = client_fingerprints(_LETTER[transport], retry)
        row["ja3_retry"], row["ja4_retry"] = fps.ja3, fps.ja4
    if transport == "dtls":
        correct_dtls(row, conn)
    return row
