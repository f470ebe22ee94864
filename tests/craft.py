"""Test-only helpers: write pcap/pcapng bytes by hand, read them back with an independent reference
walker, and drive :class:`~tlsdetect.readers.pcap.capture.CaptureReader` so that every packet's absolute
file offset is known.

Nothing here is imported by ``tlsdetect`` itself. The writers use only :mod:`struct` so tests can
build exactly the (valid or hostile) bytes they need; scapy (GPL) stays in the test files that
need it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlsdetect.readers.pcap.capture import CaptureReader, PacketBatch

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

BT_SHB = 0x0A0D0D0A
BT_IDB = 1
BT_PB = 2
BT_SPB = 3
BT_NRB = 4
BT_ISB = 5
BT_EPB = 6
BT_DSB = 0x0000000A
BT_CUSTOM = 0x00000BAD
BT_CUSTOM_NOCOPY = 0x40000BAD

LT_ETHERNET = 1
LT_RAW = 101


def hypothesis_examples(default: int) -> int:
    """``max_examples`` for the property tests; raise it with TLSDETECT_HYPOTHESIS_EXAMPLES for a deep run."""
    return int(os.environ.get("TLSDETECT_HYPOTHESIS_EXAMPLES", default))


# -- classic pcap ------------------------------------------------------------------------------


def pcap_header(
    *,
    little: bool = True,
    nano: bool = False,
    linktype: int = LT_ETHERNET,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    e = "<" if little else ">"
    magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    return struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)


def pcap_record(
    sec: int,
    frac: int,
    data: bytes,
    *,
    little: bool = True,
    orig_len: int | None = None,
    incl_len: int | None = None,
) -> bytes:
    e = "<" if little else ">"
    incl = len(data) if incl_len is None else incl_len
    orig = len(data) if orig_len is None else orig_len
    return struct.pack(e + "IIII", sec, frac, incl, orig) + data


def pcap_file(
    records: Iterable[tuple[int, int, bytes]],
    *,
    little: bool = True,
    nano: bool = False,
    linktype: int = LT_ETHERNET,
    snaplen: int = 65535,
) -> bytes:
    out = [pcap_header(little=little, nano=nano, linktype=linktype, snaplen=snaplen)]
    out += [pcap_record(s, f, d, little=little) for s, f, d in records]
    return b"".join(out)


# -- pcapng ------------------------------------------------------------------------------------


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def ng_option(code: int, value: bytes, *, little: bool = True) -> bytes:
    e = "<" if little else ">"
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def ng_options(opts: Sequence[tuple[int, bytes]], *, little: bool = True) -> bytes:
    if not opts:
        return b""
    e = "<" if little else ">"
    return b"".join(ng_option(c, v, little=little) for c, v in opts) + struct.pack(e + "HH", 0, 0)


def ng_block(btype: int, body: bytes, *, little: bool = True) -> bytes:
    e = "<" if little else ">"
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", total)


def ng_shb(*, little: bool = True, section_length: int = -1, options: bytes = b"") -> bytes:
    e = "<" if little else ">"
    body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, section_length) + options
    return ng_block(BT_SHB, body, little=little)


def ng_idb(
    linktype: int = LT_ETHERNET,
    *,
    little: bool = True,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    name: bytes | None = None,
) -> bytes:
    e = "<" if little else ">"
    opts: list[tuple[int, bytes]] = []
    if name is not None:
        opts.append((2, name))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(e + "q", tsoffset)))
    body = struct.pack(e + "HHI", linktype, 0, snaplen) + ng_options(opts, little=little)
    return ng_block(BT_IDB, body, little=little)


def ng_epb(
    iface: int, ticks: int, data: bytes, *, little: bool = True, orig_len: int | None = None,
    options: bytes = b"",
) -> bytes:
    e = "<" if little else ">"
    orig = len(data) if orig_len is None else orig_len
    hdr = struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
    return ng_block(BT_EPB, hdr + _pad4(data) + options, little=little)


def ng_pb(iface: int, ticks: int, data: bytes, *, little: bool = True, drops: int = 0) -> bytes:
    """Obsolete Packet Block (type 2): 16-bit interface id, 16-bit drops count."""
    e = "<" if little else ">"
    hdr = struct.pack(e + "HHIIII", iface, drops, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return ng_block(BT_PB, hdr + _pad4(data), little=little)


def ng_spb(data: bytes, *, little: bool = True, orig_len: int | None = None) -> bytes:
    e = "<" if little else ">"
    orig = len(data) if orig_len is None else orig_len
    return ng_block(BT_SPB, struct.pack(e + "I", orig) + _pad4(data), little=little)


def ng_isb(iface: int, ticks: int, *, little: bool = True) -> bytes:
    e = "<" if little else ">"
    opts = ng_options([(4, struct.pack(e + "Q", 123)), (5, struct.pack(e + "Q", 4))], little=little)
    return ng_block(BT_ISB, struct.pack(e + "III", iface, ticks >> 32, ticks & 0xFFFFFFFF) + opts, little=little)


def ng_custom(payload: bytes, *, little: bool = True, pen: int = 32473, copy: bool = True) -> bytes:
    e = "<" if little else ">"
    return ng_block(BT_CUSTOM if copy else BT_CUSTOM_NOCOPY, struct.pack(e + "I", pen) + payload, little=little)


def ng_nrb(*, little: bool = True) -> bytes:
    e = "<" if little else ">"
    rec = struct.pack(e + "HH", 1, 4 + 10) + _pad4(bytes([192, 0, 2, 1]) + b"host.test\0")
    return ng_block(BT_NRB, rec + struct.pack(e + "HH", 0, 0), little=little)


# -- an independent reference walker -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    """One packet as a sequential reader sees it: absolute file offset of its first data byte."""

    offset: int
    caplen: int
    ts_ns: int
    linktype: int


def ticks_to_ns(ticks: int, tsresol: int) -> int:
    """What Wireshark shows for a pcapng timestamp: seconds, then the fraction truncated to ns."""
    per_s = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** (tsresol & 0x7F)
    return (ticks // per_s) * 1_000_000_000 + (ticks % per_s) * 1_000_000_000 // per_s


def reference_records(data: bytes) -> list[Rec]:
    """Exact, slow, pure-Python walk of a *valid* pcap or pcapng file (no damage handling)."""
    out: list[Rec] = []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        little = magic[0] in (0xD4, 0x4D)
        e = "<" if little else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack_from(e + "I", data, 20)[0] & 0x0FFFFFFF
        pos = 24
        while pos + 16 <= len(data):
            sec, frac, incl, _ = struct.unpack_from(e + "IIII", data, pos)
            if pos + 16 + incl > len(data):
                break
            out.append(Rec(pos + 16, incl, sec * 1_000_000_000 + frac * (1 if nano else 1000), linktype))
            pos += 16 + incl
        return out
    pos = 0
    e = "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, tsresol, tsoffset)
    while pos + 12 <= len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            e = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        btype, blen = struct.unpack_from(e + "II", data, pos)
        body = data[pos + 8 : pos + blen - 4]
        if btype == BT_IDB:
            linktype = struct.unpack_from(e + "H", body, 0)[0]
            tsresol, tsoffset = 6, 0
            opt = 8
            while opt + 4 <= len(body):
                code, length = struct.unpack_from(e + "HH", body, opt)
                if code == 0:
                    break
                value = body[opt + 4 : opt + 4 + length]
                if code == 9:
                    tsresol = value[0]
                elif code == 14:
                    tsoffset = struct.unpack(e + "q", value)[0]
                opt += 4 + length + (-length % 4)
            ifaces.append((linktype, tsresol, tsoffset))
        elif btype in (BT_EPB, BT_PB):
            if btype == BT_EPB:
                iface, hi, lo, cap, _ = struct.unpack_from(e + "IIIII", body, 0)
            else:
                iface, _, hi, lo, cap, _ = struct.unpack_from(e + "HHIIII", body, 0)
            lt, res, off = ifaces[iface]
            ts = ticks_to_ns((hi << 32) | lo, res) + off * 1_000_000_000
            out.append(Rec(pos + 28, cap, ts, lt))
        elif btype == BT_SPB:
            (orig,) = struct.unpack_from(e + "I", body, 0)
            out.append(Rec(pos + 12, min(orig, blen - 16), 0, ifaces[0][0]))
        pos += blen
    return out


# -- driving the reader ------------------------------------------------------------------------


class TracingReader(CaptureReader):
    """A :class:`CaptureReader` that remembers where in the file each window's buffer starts."""

    def __init__(self, path: str | Path, **kw: object) -> None:
        super().__init__(path, **kw)  # type: ignore[arg-type]
        self.buf_pos: dict[int, int] = {}
        self._keep: list[np.ndarray] = []

    def _read(self, fh, pos, n):  # type: ignore[no-untyped-def,override]
        buf = super()._read(fh, pos, n)
        self.buf_pos[id(buf)] = pos
        self._keep.append(buf)  # ids stay unique while the buffer is alive
        return buf


@dataclass(slots=True)
class ReadResult:
    records: list[Rec]
    payloads: list[bytes]
    warnings: list[str]
    skipped_blocks: int
    packets_stat: int


def read_all(path: str | Path, **kw: object) -> ReadResult:
    """Every packet the reader yields, with absolute offsets, plus its warnings."""
    reader = TracingReader(path, **kw)
    recs: list[Rec] = []
    payloads: list[bytes] = []
    batch: PacketBatch
    for batch in reader:
        base = reader.buf_pos[id(batch.buf)]
        for d, c, t, lt in zip(
            batch.data.tolist(), batch.caplen.tolist(), batch.ts_ns.tolist(), batch.linktype.tolist(), strict=True
        ):
            recs.append(Rec(base + d, c, t, lt))
            payloads.append(batch.buf[d : d + c].tobytes())
    return ReadResult(recs, payloads, list(reader.stats.warnings), reader.stats.counts["skipped_blocks"],
                      reader.stats.counts["packets"])


# -- building TCP conversations by hand ------------------------------------------------------------


def ipv4_tcp_frame(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes,
    *, ident: int = 0,
) -> bytes:
    """Ethernet + IPv4 + TCP (checksums left zero: the reader does not verify them)."""
    ip_src = bytes(int(x) for x in src.split("."))
    ip_dst = bytes(int(x) for x in dst.split("."))
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000, 64, 6, 0, ip_src, ip_dst)
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    return eth + ip + tcp + payload


SYN, ACK, PSH = 0x02, 0x10, 0x08


def ipv4_udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP (checksums left zero)."""
    ip_src = bytes(int(x) for x in src.split("."))
    ip_dst = bytes(int(x) for x in dst.split("."))
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0x4000, 64, 17, 0, ip_src, ip_dst)
    return b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00" + ip + udp + payload


def tcp_conversation(
    client: tuple[str, int],
    server: tuple[str, int],
    segments: Sequence[tuple[bool, int, bytes]],
    *,
    client_isn: int = 0x10000000,
    server_isn: int = 0xF0000000,
    t0: int = 1_700_000_000,
) -> bytes:
    """A pcap of SYN, SYN-ACK, ACK, then ``segments`` as (from_client, stream_offset, bytes).

    Sequence numbers are ISN + 1 + offset, so the stream bytes sit exactly where TCP puts them;
    the server ISN is chosen near 2^32 by default so the sequence space wraps inside the stream.
    """
    (chost, cport), (shost, sport) = client, server
    frames = [
        ipv4_tcp_frame(chost, shost, cport, sport, client_isn, 0, SYN, b""),
        ipv4_tcp_frame(shost, chost, sport, cport, server_isn, client_isn + 1, SYN | ACK, b""),
        ipv4_tcp_frame(chost, shost, cport, sport, client_isn + 1, server_isn + 1, ACK, b""),
    ]
    for i, (from_client, off, data) in enumerate(segments):
        if from_client:
            seq, ack = client_isn + 1 + off, server_isn + 1
            frames.append(ipv4_tcp_frame(chost, shost, cport, sport, seq, ack, ACK | PSH, data, ident=i))
        else:
            seq, ack = server_isn + 1 + off, client_isn + 1
            frames.append(ipv4_tcp_frame(shost, chost, sport, cport, seq, ack, ACK | PSH, data, ident=i))
    return pcap_file((t0 + i // 1000, (i % 1000) * 1000, f) for i, f in enumerate(frames))


# -- TLS handshakes by hand --------------------------------------------------------------------------


def _v8(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def _v16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def tls_extension(ext_type: int, data: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(data)) + data


def client_hello_body(sni: str = "example.com", *, padding: int = 0) -> bytes:
    """A TLS 1.3 ClientHello body: SNI, ALPN h2, groups, signature algorithms, supported versions;
    ``padding`` bytes of a padding extension (21) make it as large as a test needs."""
    name = sni.encode()
    exts = tls_extension(0, _v16(b"\x00" + _v16(name)))
    exts += tls_extension(16, _v16(_v8(b"h2")))
    exts += tls_extension(10, _v16(struct.pack(">HH", 0x001D, 0x0017)))
    exts += tls_extension(13, _v16(struct.pack(">HH", 0x0403, 0x0804)))
    exts += tls_extension(43, _v8(struct.pack(">HH", 0x0304, 0x0303)))
    if padding:
        exts += tls_extension(21, bytes(padding))
    ciphers = struct.pack(">HHH", 0x1301, 0x1302, 0xC02F)
    return struct.pack(">H", 0x0303) + bytes(range(32)) + _v8(b"") + _v16(ciphers) + _v8(b"\x00") + _v16(exts)


def server_hello_body_tls13() -> bytes:
    exts = tls_extension(43, struct.pack(">H", 0x0304)) + tls_extension(51, struct.pack(">HH", 0x001D, 32) + bytes(32))
    return struct.pack(">H", 0x0303) + bytes(range(1, 33)) + _v8(b"") + struct.pack(">HB", 0x1301, 0) + _v16(exts)


def handshake_message(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def tls_records(payload: bytes, fragment: int, content: int = 22) -> list[bytes]:
    """``payload`` (handshake messages) cut into TLS records of at most ``fragment`` bytes each."""
    return [
        bytes([content, 3, 1]) + struct.pack(">H", len(payload[i : i + fragment])) + payload[i : i + fragment]
        for i in range(0, len(payload), fragment)
    ]


def stream_segments(data: bytes | Sequence[bytes], mss: int, *, from_client: bool) -> list[tuple[bool, int, bytes]]:
    """Segments for :func:`tcp_conversation`: each item of ``data`` (or ``data`` itself) cut at ``mss``."""
    parts = [data] if isinstance(data, bytes) else list(data)
    out: list[tuple[bool, int, bytes]] = []
    off = 0
    for part in parts:
        for i in range(0, len(part), mss):
            out.append((from_client, off + i, part[i : i + mss]))
        off += len(part)
    return out
