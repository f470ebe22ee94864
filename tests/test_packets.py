"""Link-layer, IP and TCP/UDP decoding (:mod:`tlsdetect.readers.pcap.packets`) against packets built with
scapy, and end to end: a real ClientHello wrapped in every supported link type must fingerprint as
the reference corpus says.

scapy is GPL: it is used here, in tests, to build the ground truth, never by ``tlsdetect``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
scapy = pytest.importorskip("scapy.all")

from scapy.all import (  # noqa: E402
    IP,
    TCP,
    UDP,
    CookedLinux,
    Dot1AD,
    Dot1Q,
    Ether,
    IPOption,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Loopback,
    Packet,
    PcapWriter,
    Raw,
    fragment,
    fragment6,
    rdpcap,
)

from tlsdetect.readers.pcap.capture import CaptureReader  # noqa: E402
from tlsdetect.readers.pcap.engine import read_pcap  # noqa: E402
from tlsdetect.readers.pcap.packets import Decoded, decode  # noqa: E402

from .conftest import REFERENCE, expected_ja3, expected_ja4, needs_reference  # noqa: E402
from .craft import pcap_header, pcap_record  # noqa: E402

try:  # scapy >= 2.5
    from scapy.all import CookedLinuxV2
except ImportError:  # pragma: no cover - depends on the installed scapy
    CookedLinuxV2 = None

try:
    from scapy.all import LoopbackOpenBSD
except ImportError:  # pragma: no cover
    LoopbackOpenBSD = None

# -- link types -------------------------------------------------------------------------------------


def eth(**kw: object) -> Packet:
    """Ethernet with both addresses given: scapy would otherwise ARP for the destination."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


#: name -> (pcap linktype, function wrapping an IPv4/IPv6 packet in that link layer)
LINKS: dict[str, tuple[int, Callable[[Packet], Packet | bytes]]] = {
    "ethernet": (1, lambda ip: eth() / ip),
    "vlan": (1, lambda ip: eth() / Dot1Q(vlan=42, prio=3) / ip),
    "qinq": (1, lambda ip: eth() / Dot1AD(vlan=100) / Dot1Q(vlan=42) / ip),
    "qinq-9100": (1, lambda ip: eth(type=0x9100) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / ip),
    "sll": (113, lambda ip: CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x01\0\0") / ip),
    "raw": (101, lambda ip: ip),
    "null": (0, lambda ip: Loopback(type=2 if ip.version == 4 else 30) / ip),
    "loop": (108, lambda ip: b"\0\0\0" + bytes([2 if ip.version == 4 else 24]) + bytes(ip)),
}


def _ppp_proto(ip: Packet) -> bytes:
    return b"\x00\x21" if ip.version == 4 else b"\x00\x57"


def _pppoe(ip: Packet) -> Packet:
    """PPPoE session header (version/type 0x11, code 0, session 1, length), then PPP."""
    length = 2 + len(bytes(ip))
    return Raw(b"\x11\x00\x00\x01" + length.to_bytes(2, "big") + _ppp_proto(ip)) / ip


LINKS.update({  # the prefix as a Raw layer before the IP packet, so the tests still find the IP layer
    "ppp": (9, lambda ip: Raw(b"\xff\x03" + _ppp_proto(ip)) / ip),
    "ppp-unframed": (9, lambda ip: Raw(_ppp_proto(ip)) / ip),
    "ppp-compressed": (9, lambda ip: Raw(_ppp_proto(ip)[1:]) / ip),  # RFC 1661 protocol-field compression
    "ppp-hdlc": (50, lambda ip: Raw(b"\xff\x03" + _ppp_proto(ip)) / ip),
    "pppoe": (51, _pppoe),
    "ethernet-pppoe": (1, lambda ip: eth(type=0x8864) / _pppoe(ip)),
    "cisco-hdlc": (104, lambda ip: Raw(b"\x0f\x00" + (b"\x08\x00" if ip.version == 4 else b"\x86\xdd")) / ip),
})
if CookedLinuxV2 is not None:
    LINKS["sll2"] = (276, lambda ip: CookedLinuxV2(ifindex=3, lladdrtype=1, lladdrlen=6) / ip)
if LoopbackOpenBSD is not None:
    LINKS["loop"] = (108, lambda ip: LoopbackOpenBSD(type=2 if ip.version == 4 else 24) / ip)

V4_SRC, V4_DST = "10.1.2.3", "192.0.2.77"
V6_SRC, V6_DST = "2001:db8::1:2:3", "2001:db8:ffff::abcd"


def ip_layers() -> dict[str, Callable[[], Packet]]:
    return {
        "ipv4": lambda: IP(src=V4_SRC, dst=V4_DST, id=77),
        "ipv4-options": lambda: IP(
            src=V4_SRC, dst=V4_DST, options=[IPOption(b"\x01\x01\x01\x01"), IPOption(b"\x94\x04\0\0")]
        ),
        "ipv6": lambda: IPv6(src=V6_SRC, dst=V6_DST),
        "ipv6-ext": lambda: IPv6(src=V6_SRC, dst=V6_DST)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::99", "2001:db8::98"])
        / IPv6ExtHdrDestOpt(),
    }


def transports() -> dict[str, Callable[[], Packet]]:
    return {
        "tcp": lambda: TCP(sport=50123, dport=443, seq=0xFEDCBA98, flags="PA"),
        "tcp-options": lambda: TCP(
            sport=1,
            dport=65535,
            seq=7,
            flags="S",
            options=[("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b"")],
        ),
        "udp": lambda: UDP(sport=5353, dport=443),
    }


def write_pcap(path: Path, linktype: int, frames: list[Packet | bytes]) -> Path:
    writer = PcapWriter(str(path), linktype=linktype, sync=True)
    for f in frames:
        writer.write(f if isinstance(f, Packet) else Raw(f))
    writer.close()
    return path


def decode_file(path: Path) -> tuple[list[Decoded], list[np.ndarray]]:
    decs, bufs = [], []
    for batch in CaptureReader(path):
        decs.append(decode(batch))
        bufs.append(batch)
    return decs, bufs


def split_addr(addr: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(addr)
    value = int(ip) | (0xFFFF << 32) if ip.version == 4 else int(ip)
    return value >> 64, value & (2**64 - 1)


def decoded_rows(path: Path) -> list[dict[str, object]]:
    rows = []
    for batch in CaptureReader(path):
        d = decode(batch)
        for i in range(len(batch)):
            payload = b""
            if d.valid[i]:
                payload = batch.buf[d.payload[i] : d.payload[i] + d.payload_len[i]].tobytes()
            rows.append(
                {
                    "valid": bool(d.valid[i]),
                    "ip_version": int(d.ip_version[i]),
                    "proto": int(d.proto[i]),
                    "src": (int(d.src_hi[i]), int(d.src_lo[i])),
                    "dst": (int(d.dst_hi[i]), int(d.dst_lo[i])),
                    "sport": int(d.sport[i]),
                    "dport": int(d.dport[i]),
                    "seq": int(d.seq[i]),
                    "flags": int(d.flags[i]),
                    "payload_at": int(d.payload[i] - batch.data[i]),
                    "payload": payload,
                    "fragments": d.fragments,
                }
            )
    return rows


@pytest.mark.parametrize("transport", list(transports()))
@pytest.mark.parametrize("network", list(ip_layers()))
@pytest.mark.parametrize("link", list(LINKS))
def test_headers_equal_what_scapy_put_there(tmp_path: Path, link: str, network: str, transport: str) -> None:
    linktype, wrap = LINKS[link]
    loads = [b"", b"\x16\x03\x01", bytes(range(256)) * 3]
    frames = []
    for load in loads:
        ip = ip_layers()[network]() / transports()[transport]() / Raw(load)
        frames.append(wrap(ip))
    path = write_pcap(tmp_path / "x.pcap", linktype, frames)
    rows = decoded_rows(path)
    assert len(rows) == len(loads)
    for frame, load, row in zip(frames, loads, rows, strict=True):
        wire = bytes(frame)
        sent = IP(bytes(frame[IP])) if frame.haslayer(IP) else IPv6(bytes(frame[IPv6]))
        l4 = sent[TCP] if transport.startswith("tcp") else sent[UDP]
        assert row["valid"]
        assert row["ip_version"] == sent.version
        assert row["proto"] == (6 if transport.startswith("tcp") else 17)
        assert row["src"] == split_addr(sent.src)
        assert row["dst"] == split_addr(sent.dst)
        assert (row["sport"], row["dport"]) == (l4.sport, l4.dport)
        if transport.startswith("tcp"):
            assert row["seq"] == l4.seq
            assert row["flags"] == int(l4.flags)
        assert row["payload_at"] == len(wire) - len(load)
        assert row["payload"] == load
        assert row["fragments"] == 0


def test_ethernet_trailer_padding_is_not_payload(tmp_path: Path) -> None:
    """A short frame padded to 60 bytes: the IP total length, not the frame, ends the payload."""
    frame = eth() / IP(src=V4_SRC, dst=V4_DST) / TCP() / Raw(b"ab")
    wire = bytes(frame) + b"\0" * (60 - len(bytes(frame)))
    path = write_pcap(tmp_path / "x.pcap", 1, [wire])
    (row,) = decoded_rows(path)
    assert row["valid"]
    assert row["payload"] == b"ab"


@pytest.mark.parametrize("network", ["ipv4", "ipv6"])
def test_total_length_zero_means_trust_the_capture(tmp_path: Path, network: str) -> None:
    """IPv4 total length 0 (TCP segmentation offload seen on the sender) and IPv6 payload length 0
    (jumbogram): the captured length ends the packet, as Wireshark does."""
    load = b"\x16\x03\x01\x00\x05hello" * 10
    ip = IP(src=V4_SRC, dst=V4_DST, len=0) if network == "ipv4" else IPv6(src=V6_SRC, dst=V6_DST, plen=0)
    path = write_pcap(tmp_path / "x.pcap", 1, [eth() / ip / TCP(sport=1, dport=443, seq=5) / Raw(load)])
    (row,) = decoded_rows(path)
    assert row["valid"]
    assert row["payload"] == load


def test_ip_fragments_are_counted_and_skipped(tmp_path: Path) -> None:
    big = bytes(range(256)) * 12
    v4 = fragment(IP(src=V4_SRC, dst=V4_DST, id=9) / TCP(sport=1, dport=443) / Raw(big), fragsize=1000)
    v6 = fragment6(
        IPv6(src=V6_SRC, dst=V6_DST) / IPv6ExtHdrFragment(id=5) / TCP(sport=2, dport=443) / Raw(big), 1200
    )
    whole = IP(src=V4_SRC, dst=V4_DST) / TCP(sport=3, dport=443) / Raw(b"whole")
    assert len(v4) >= 3
    assert len(v6) >= 3
    frames = [eth() / f for f in v4] + [eth() / f for f in v6] + [eth() / whole]
    path = write_pcap(tmp_path / "x.pcap", 1, frames)
    rows = decoded_rows(path)
    assert [r["valid"] for r in rows] == [False] * (len(v4) + len(v6)) + [True]
    assert rows[-1]["payload"] == b"whole"
    (dec,) = [decode(b) for b in CaptureReader(path)]
    assert dec.fragments == len(v4) + len(v6)
    frame, stats = read_pcap(path)
    assert len(frame) == 0
    assert stats.counts["ip_fragments_skipped"] == len(v4) + len(v6)


@pytest.mark.parametrize("network", ["ipv4", "ipv6-ext"])
def test_snaplen_cut_inside_headers_is_invalid_not_an_error(tmp_path: Path, network: str) -> None:
    """Every cut inside the link, IP or TCP header gives an invalid packet; a cut in the payload a
    valid one with the captured part of the payload."""
    tcp = TCP(options=[("MSS", 1460), ("NOP", None)])
    frame = eth() / Dot1Q(vlan=1) / ip_layers()[network]() / tcp / Raw(b"P" * 40)
    wire = bytes(frame)
    header_len = len(wire) - 40
    records = [pcap_record(1, cut, wire[:cut], orig_len=len(wire)) for cut in range(len(wire) + 1)]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_header(snaplen=len(wire)) + b"".join(records))
    rows = decoded_rows(path)
    assert len(rows) == len(wire) + 1
    for cut, row in enumerate(rows):
        if cut < header_len:
            assert not row["valid"], cut
        else:
            assert row["valid"], cut
            assert row["payload"] == b"P" * (cut - header_len)


def test_not_ip_and_unknown_linktypes_are_invalid(tmp_path: Path) -> None:
    arp = eth(type=0x0806) / Raw(b"\0" * 28)
    sctp = eth() / IP(src=V4_SRC, dst=V4_DST, proto=132) / Raw(b"\0" * 28)
    path = write_pcap(tmp_path / "a.pcap", 1, [arp, sctp])
    assert [r["valid"] for r in decoded_rows(path)] == [False, False]
    other = write_pcap(tmp_path / "b.pcap", 147, [bytes(IP() / TCP())])  # LINKTYPE_USER0
    assert [r["valid"] for r in decoded_rows(other)] == [False]


@pytest.mark.parametrize(("linktype", "name"), [(105, "IEEE 802.11"), (127, "IEEE 802.11 radiotap"),
                                                (147, "user-defined DLT_USER0"), (9999, "unknown")])
def test_unsupported_link_types_are_counted_and_named(tmp_path: Path, linktype: int, name: str) -> None:
    """Issue 18 row 8: an 802.11/radiotap/DLT 147 capture said "0 connections" and nothing else."""
    frames = [bytes(IP(src=V4_SRC, dst=V4_DST) / TCP(flags="PA") / Raw(b"\x16\x03\x01\x00\x05\x01xxxx"))] * 3
    path = write_pcap(tmp_path / "w.pcap", linktype, frames)
    for batch in CaptureReader(path):
        assert decode(batch).unsupported == {linktype: 3}
    frame, stats = read_pcap(path)
    assert len(frame) == 0
    key = f"unsupported link type {linktype} ({name})"
    assert stats.skipped[key] == 3
    assert stats.warnings == [f"w.pcap: {key}: 3 packets skipped"]
    supported = write_pcap(tmp_path / "e.pcap", 1, [eth() / IP() / TCP()])
    assert read_pcap(supported)[1].warnings == []


def test_unsupported_link_types_counted_among_supported_ones() -> None:
    """pcapng interfaces of several link types in one window: only the unsupported ones count."""
    from tlsdetect.readers.pcap.capture import PacketBatch

    batch = PacketBatch(buf=np.zeros(400, dtype=np.uint8), data=np.arange(0, 400, 50, dtype=np.int64),
                        caplen=np.full(8, 40, dtype=np.int64), ts_ns=np.zeros(8, dtype=np.int64),
                        linktype=np.array([1, 105, 9, 105, 127, 113, 12, 50], dtype=np.int64))
    assert decode(batch).unsupported == {105: 2, 127: 1}


# -- end to end: real hellos in every link type -----------------------------------------------------


def client_segments(name: str) -> tuple[list[tuple[int, bytes]], tuple[str, int, str, int]]:
    """The client's TCP payloads of a corpus capture (relative seq, bytes), read with scapy."""
    pkts = rdpcap(str(REFERENCE / name))
    segs = []
    first = None
    for p in pkts:
        # Raw, not the TCP payload: Ethernet padding of short frames is a separate Padding layer.
        if p.haslayer(TCP) and p.haslayer(Raw) and p[TCP].dport == 443:
            if first is None:
                first = p[TCP].seq
                tup = (p[IP].src, p[TCP].sport, p[IP].dst, p[TCP].dport)
            segs.append((p[TCP].seq - first, p[Raw].load))
    assert segs, name
    # Only the bytes up to the end of the first TLS record (the ClientHello) matter here.
    hello_len = 5 + int.from_bytes(b"".join(s for _, s in segs)[3:5], "big")
    return [(off, s) for off, s in segs if off < hello_len], tup


HELLOS = ["tls12.pcap", "arkime_tls-split-client-hello.pcap"]


@needs_reference
@pytest.mark.parametrize("name", HELLOS)
@pytest.mark.parametrize("network", ["ipv4", "ipv6-ext"])
@pytest.mark.parametrize("link", list(LINKS))
def test_real_client_hello_in_every_link_type(tmp_path: Path, name: str, network: str, link: str) -> None:
    segs, (csrc, cport, sdst, sport) = client_segments(name)
    expected4 = expected_ja4()[name]["streams"][0]
    expected3 = expected_ja3()[name]["streams"][0]
    assert (expected4["src"], expected4["src_port"]) == (csrc, cport)
    linktype, wrap = LINKS[link]
    if network == "ipv4":
        client, server = csrc, sdst

        def mk_ip(src: str, dst: str) -> Packet:
            return IP(src=src, dst=dst)
    else:
        client, server = "2001:db8::c", "2001:db8::5"

        def mk_ip(src: str, dst: str) -> Packet:
            return IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()

    isn = 0xFFFFFF00  # the hello crosses the 2^32 sequence wrap
    frames = [
        wrap(mk_ip(client, server) / TCP(sport=cport, dport=sport, seq=isn - 1, flags="S")),
        wrap(mk_ip(server, client) / TCP(sport=sport, dport=cport, seq=1000, ack=isn, flags="SA")),
        wrap(mk_ip(client, server) / TCP(sport=cport, dport=sport, seq=isn, ack=1001, flags="A")),
    ]
    for off, data in segs:
        tcp = TCP(sport=cport, dport=sport, seq=(isn + off) % 2**32, ack=1001, flags="PA")
        frames.append(wrap(mk_ip(client, server) / tcp / Raw(data)))
    path = write_pcap(tmp_path / "hello.pcap", linktype, frames)
    frame, stats = read_pcap(path)
    assert stats.warnings == []
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]) == (
        str(ipaddress.ip_address(client)), cport, str(ipaddress.ip_address(server)), sport,
    )
    assert row["ja4"] == expected4["ja4"]
    assert row["ja3"] == expected3["ja3"][0]
    assert row["sni"] == expected3["sni"]
