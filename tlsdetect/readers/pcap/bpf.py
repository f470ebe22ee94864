"""The live capture's BPF: keep only the packets the engine fingerprints from, drop the rest in the kernel.

A live sensor sees mostly data packets; the engine reads handshakes. The filter keeps, statelessly:

* TCP segments whose payload **starts a TLS record of type handshake (0x16) or alert (0x15)**,
  version byte ``03``: every Client- and ServerHello that begins a segment (on any port, after
  any preamble that ended in an earlier segment), a Certificate or ServerKeyExchange record
  that happens to begin a segment, and the alerts that end a rejected handshake;
* TCP **SYN and SYN-ACK** (a connection's first packet of each direction: cheap, for context);
* every TCP segment **with payload from a client to a TLS server port** (:data:`CLIENT_TO_PORTS`: 443,
  8443, 853, 465, 993, 995, 636, 5061, 6514) **but those starting an application-data record**
  (``17 03``): it holds the second half of a ClientHello split over two segments, which Chrome's and
  Firefox's post-quantum key shares (~1.8 kB, over one 1,460-byte segment) make the common case, not
  an exception (without it a browser's hello gave no client fingerprint at all), and the client's
  direction is the small one (requests, not downloads). The application-data exception keeps the
  cost low: on the live benchmark's replay, 84,132 packets pass against 80,653 without the rule and
  109,039 with it but no exception (a continuation that happens to begin ``17 03``: 1 in 65,536);
* UDP datagrams carrying a **QUIC long header** of version 1, 2 or a draft (``0xff00....``):
  Initial packets, however many a ClientHello spans;
* UDP datagrams starting a **DTLS handshake record** (``16 fe ..``): every fragment is a record.

IPv4 and IPv6 (an IPv6 header directly followed by TCP or UDP: libpcap's ``tcp[]`` is IPv4 only,
so the IPv6 half indexes ``ip6[]``), each also behind one 802.1Q tag.

What it drops, by design (BPF has no per-flow state, so it cannot keep "the next segment"):

* **segments continuing a record** that began in an earlier segment, in the server's direction
  (the rest of a server's flight after its first segment: the certificate chain, unless one of
  its records starts a segment; the encrypted flight sizes of TLS 1.3), and in the client's
  direction on ports not in :data:`CLIENT_TO_PORTS` (the second half of a split ClientHello).
  Such a connection still gives a row from what was kept, flagged ``incomplete``; a ClientHello
  cut in two gives no client fingerprint.
* IPv6 with extension headers before TCP/UDP, IP fragments, more than one VLAN tag, and
  a hello whose first segment holds fewer than two bytes.

Where those losses matter more than the capture volume, pass a filter of your own
(``--capture-filter 'tcp port 443 or udp port 443'`` keeps everything on 443).
:func:`capture_filter` is pure text; tests compile it with ``tcpdump -d`` and measure the
loss on the reference captures (filtered vs unfiltered rows).
"""

from __future__ import annotations

__all__ = ["CLIENT_TO_PORTS", "RECORD_TYPES", "capture_filter"]

#: TLS record types whose start in a segment keeps it: change_cipher_spec, alert, handshake.
RECORD_TYPES = (0x14, 0x15, 0x16)
#: Server ports (HTTPS, alternative HTTPS, DNS over TLS, SMTPS, IMAPS, POP3S, LDAPS, SIP over TLS, syslog over
#: TLS) to which every client segment with payload is kept.
CLIENT_TO_PORTS = (443, 8443, 853, 465, 993, 995, 636, 5061, 6514)
#: QUIC versions kept: v1 (RFC 9000), v2 (RFC 9369); drafts are 0xff0000xx.
_QUIC_V1, _QUIC_V2, _QUIC_DRAFT = 0x00000001, 0x6B3343CF, 0xFF00


def _tls_start(byte: str) -> str:
    """A test that the TCP payload (whose first byte is at ``byte``) starts an alert/handshake record."""
    b0 = byte.format(k=0)
    types = " or ".join(f"{b0} = 0x{t:02x}" for t in RECORD_TYPES)
    return f"(({types}) and {byte.format(k=1)} = 0x03)"


def _udp_hello(byte: str, word: str, half: str) -> str:
    """DTLS handshake record, or a QUIC long header of a known version (``byte``/``word``/``half``
    index the UDP payload: ``{k}`` is the offset in it)."""
    dtls = f"({byte.format(k=0)} = 0x16 and {byte.format(k=1)} = 0xfe)"
    quic = (f"({byte.format(k=0)} & 0x80 != 0 and ({word.format(k=1)} = {_QUIC_V1} or "
            f"{word.format(k=1)} = 0x{_QUIC_V2:08x} or {half.format(k=1)} = 0x{_QUIC_DRAFT:04x}))")
    return f"({dtls} or {quic})"


def _to_ports(port: str) -> str:
    """A test that the destination port (the 16-bit load ``port``) is one of :data:`CLIENT_TO_PORTS`."""
    return "(" + " or ".join(f"{port} = {p}" for p in CLIENT_TO_PORTS) + ")"


def _ipv4() -> str:
    data = "((tcp[12:1] & 0xf0) >> 2)"
    payload = f"(ip[2:2] - ((ip[0:1] & 0x0f) << 2) - {data} > 0)"
    appdata = f"(tcp[{data}:1] = 0x17 and tcp[{data} + 1:1] = 0x03)"
    client = f"({_to_ports('tcp[2:2]')} and {payload} and not {appdata})"
    tcp = f"(tcp and (tcp[tcpflags] & tcp-syn != 0 or {_tls_start('tcp[' + data + ' + {k}:1]')} or {client}))"
    udp = f"(udp and {_udp_hello('udp[8 + {k}:1]', 'udp[8 + {k}:4]', 'udp[8 + {k}:2]')})"
    return f"(ip and ({tcp} or {udp}))"


def _ipv6() -> str:
    data = "40 + ((ip6[52:1] & 0xf0) >> 2)"
    appdata = f"(ip6[{data}:1] = 0x17 and ip6[{data} + 1:1] = 0x03)"
    client = f"({_to_ports('ip6[42:2]')} and ip6[4:2] - ((ip6[52:1] & 0xf0) >> 2) > 0 and not {appdata})"
    tcp = f"(ip6[6:1] = 6 and (ip6[53:1] & 0x02 != 0 or {_tls_start('ip6[' + data + ' + {k}:1]')} or {client}))"
    udp = f"(ip6[6:1] = 17 and {_udp_hello('ip6[48 + {k}:1]', 'ip6[48 + {k}:4]', 'ip6[48 + {k}:2]')})"
    return f"(ip6 and ({tcp} or {udp}))"


def capture_filter(*, vlan: bool = True) -> str:
    """The BPF expression (libpcap syntax) for ``dumpcap -f`` / ``tcpdump``: see the module's text.

    ``vlan``: also match behind one 802.1Q tag (a second copy of the test after ``vlan``; libpcap
    shifts the offsets of what follows ``vlan``, so the untagged half must come first).
    """
    plain = f"({_ipv4()} or {_ipv6()})"
    return f"{plain} or (vlan and {plain})" if vlan else plain
