#!/usr/bin/env python3
"""Peer for the pcap benchmark: a straightforward dpkt-based JA3 extractor.

This is the kind of script people write with dpkt (salesforce's ja3.py works the same
way): read the capture packet by packet, decode Ethernet/IP/TCP with dpkt, and try to
parse each TCP payload on its own as TLS records with ``dpkt.ssl``. For every ClientHello
found it prints one JA3 md5 (salesforce spec, GREASE values removed from ciphers,
extensions and elliptic curves).

Known limitation, kept on purpose because it is the peer being measured: there is **no
TCP reassembly**. A ClientHello split over several TCP segments (large post-quantum
hellos, middleboxes that fragment) is silently missed, so this peer reports fewer hellos
than tshark on files that contain split hellos.

Usage: ``python dpkt_ja3.py FILE [FILE ...] [--strings]``
"""
from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from collections.abc import Iterator

import dpkt

# RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ..., 0xfafa.
GREASE = frozenset((b << 8) | b for b in range(0x0A, 0x100, 0x10))
TLS_HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11

DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LOOP, DLT_LINUX_SLL = 0, 1, 101, 108, 113
DLT_RAW_ALIASES = (12, 14, DLT_RAW)


def _u16_list(data: bytes) -> list[int]:
    """Decode a vector of big-endian uint16 (length prefix already stripped)."""
    return list(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))


def _vector(data: bytes, len_bytes: int) -> bytes:
    """Return the payload of a TLS vector with a ``len_bytes`` length prefix."""
    n = int.from_bytes(data[:len_bytes], "big")
    return data[len_bytes : len_bytes + n]


def ja3_string(hello: dpkt.ssl.TLSClientHello) -> str:
    """Build the JA3 string ``version,ciphers,extensions,curves,point_formats``."""
    ciphers = [c.code for c in hello.ciphersuites if c.code not in GREASE]
    extensions = getattr(hello, "extensions", [])
    ext_types = [t for t, _ in extensions if t not in GREASE]
    curves: list[int] = []
    point_formats: list[int] = []
    for ext_type, ext_data in extensions:
        if ext_type == EXT_SUPPORTED_GROUPS:
            curves = [g for g in _u16_list(_vector(ext_data, 2)) if g not in GREASE]
        elif ext_type == EXT_EC_POINT_FORMATS:
            point_formats = list(_vector(ext_data, 1))
    fields = [
        str(hello.version),
        "-".join(map(str, ciphers)),
        "-".join(map(str, ext_types)),
        "-".join(map(str, curves)),
        "-".join(map(str, point_formats)),
    ]
    return ",".join(fields)


def client_hellos_in_payload(payload: bytes) -> Iterator[dpkt.ssl.TLSClientHello]:
    """Yield the ClientHellos that parse from one TCP payload alone (no reassembly)."""
    if len(payload) < 6 or payload[0] != TLS_HANDSHAKE:
        return
    try:
        records, _ = dpkt.ssl.tls_multi_factory(payload)
    except (dpkt.ssl.SSL3Exception, dpkt.NeedData, dpkt.UnpackError):
        return
    for record in records:
        if record.type != TLS_HANDSHAKE or not record.data or record.data[0] != CLIENT_HELLO:
            continue
        try:
            handshake = dpkt.ssl.TLSHandshake(record.data)
        except (dpkt.ssl.SSL3Exception, dpkt.NeedData, dpkt.UnpackError, struct.error):
            continue
        if isinstance(handshake.data, dpkt.ssl.TLSClientHello):
            yield handshake.data


def ja3_of_client_hello_record(record: bytes) -> str | None:
    """JA3 string of a complete ClientHello TLS record (used by make_big_pcap.py)."""
    for hello in client_hellos_in_payload(record):
        return ja3_string(hello)
    return None


def decode_ip(datalink: int, frame: bytes) -> dpkt.Packet | None:
    """Return the IPv4/IPv6 packet inside a link-layer frame, or None."""
    try:
        if datalink == DLT_EN10MB:
            inner = dpkt.ethernet.Ethernet(frame).data
        elif datalink == DLT_LINUX_SLL:
            inner = dpkt.sll.SLL(frame).data
        elif datalink in (DLT_NULL, DLT_LOOP):
            inner = dpkt.loopback.Loopback(frame).data
        elif datalink in DLT_RAW_ALIASES and frame:
            inner = dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
        else:
            return None
    except (dpkt.UnpackError, dpkt.NeedData, struct.error, IndexError):
        return None
    return inner if isinstance(inner, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


def iter_ja3(path: str) -> Iterator[str]:
    """Yield the JA3 string of every single-segment ClientHello in a pcap/pcapng file."""
    with open(path, "rb") as fh:
        reader = dpkt.pcap.UniversalReader(fh)
        datalink = reader.datalink()
        for _ts, frame in reader:
            ip = decode_ip(datalink, frame)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            for hello in client_hellos_in_payload(bytes(ip.data.data)):
                yield ja3_string(hello)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--strings", action="store_true", help="print 'md5 ja3_string'")
    args = parser.parse_args(argv)
    out = sys.stdout
    for path in args.files:
        for ja3 in iter_ja3(path):
            digest = hashlib.md5(ja3.encode()).hexdigest()
            out.write(f"{digest} {ja3}\n" if args.strings else f"{digest}\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
