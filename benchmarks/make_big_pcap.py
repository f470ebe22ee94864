#!/usr/bin/env python3
"""Build a large classic pcap of synthetic TLS connections made from *real* hellos.

Why: throughput claims for ``tlsdetect fingerprint`` must be measured on a file that is
big (hundreds of MB to several GB), realistic (hellos are a small share of the packets,
connections interleave, some ClientHellos are split over TCP segments) and reproducible
(same seed -> same bytes). Real captures of that size cannot be shipped, so this tool
replays the real ClientHello / server-flight bytes of small source captures as many
synthetic connections.

Each connection is: SYN, SYN/ACK, ACK, ClientHello segment(s), the server's first flight
(ServerHello ...), the client's second flight when the source has one (TLS <= 1.2: its
Certificate if one was asked for, key exchange, ChangeCipherSpec, Finished), a client ACK,
K application-data packets (TLS record 0x17, random
payload, both directions) and FIN, FIN, ACK. Per connection the client IP/port, server
IP, ISNs, timestamps and the 32-byte client/server random and the session id bytes are
varied, so every hello is byte-unique while its fingerprint (JA3/JA4) is that of the
source hello. About ``--split-fraction`` of the ClientHellos get an extra TCP segment
boundary to exercise reassembly; hellos larger than the MSS are always split.

Output: classic pcap, little-endian, microsecond timestamps, Ethernet, IPv4. IPv4 header
checksums are correct; TCP checksums are zero (tshark does not verify them by default).

Speed: packets are assembled per batch of connections with numpy (one random fill, then
vectorised scatters of headers and hello bytes) and written in one large write per batch,
so the build runs at disk/memcpy speed rather than per-packet Python speed.

A manifest ``<output>.json`` records the counts and the expected JA3 multiset, which
``bench_pcap.py`` uses to check every tool's output.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
U8Array = npt.NDArray[np.uint8]
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import dpkt  # noqa: E402  (dev tool dependency)
from dpkt_ja3 import decode_ip, ja3_of_client_hello_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import interleaved_traffic as il  # noqa: E402

MSS = 1460
DATA_MIN, DATA_MAX = 1200, 1460  # TCP payload bytes of an application-data packet
HDR_LEN = 16 + 14 + 20 + 20  # pcap record header + Ethernet + IPv4 + TCP (no options)
PCAP_GLOBAL_HEADER = np.array(
    [(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)],
    dtype=[("magic", "<u4"), ("major", "<u2"), ("minor", "<u2"), ("zone", "<i4"),
           ("sigfigs", "<u4"), ("snaplen", "<u4"), ("linktype", "<u4")],
).tobytes()
START_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: fixed so output is reproducible
SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10
CLIENT, SERVER = 0, 1
# RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello with this fixed random; keep it.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

PACKET_HEADER = np.dtype([
    ("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl_len", "<u4"), ("orig_len", "<u4"),
    ("eth_dst", "u1", 6), ("eth_src", "u1", 6), ("eth_type", ">u2"),
    ("ip_vihl", "u1"), ("ip_tos", "u1"), ("ip_len", ">u2"), ("ip_id", ">u2"),
    ("ip_frag", ">u2"), ("ip_ttl", "u1"), ("ip_proto", "u1"), ("ip_csum", ">u2"),
    ("ip_src", ">u4"), ("ip_dst", ">u4"),
    ("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"),
    ("tcp_off", "u1"), ("tcp_flags", "u1"), ("tcp_win", ">u2"), ("tcp_csum", ">u2"),
    ("tcp_urp", ">u2"),
])
assert PACKET_HEADER.itemsize == HDR_LEN
IP_HEADER_SLICE = slice(30, 50)  # the IPv4 header inside one PACKET_HEADER row
MAC_CLIENT_SIDE = np.array([0x02, 0x00, 0x00, 0x00, 0x00, 0x01], np.uint8)
MAC_SERVER_SIDE = np.array([0x02, 0x00, 0x00, 0x00, 0x00, 0x02], np.uint8)
SERVER_POOL = np.array(
    [(203 << 24) | (0 << 16) | (113 << 8) | i for i in range(1, 33)]
    + [(198 << 24) | (51 << 16) | (100 << 8) | i for i in range(1, 33)], np.uint32)

# Per-packet kinds, in the order they occur inside one connection.
K_SYN, K_SYNACK, K_ACK3, K_HELLO, K_ACK_FLIGHT, K_DATA, K_FIN_C, K_FIN_S, K_LAST_ACK = range(9)
KIND_DIR = np.array([CLIENT, SERVER, CLIENT, -1, CLIENT, -1, CLIENT, SERVER, CLIENT], np.int8)
KIND_FLAGS = np.array([SYN, SYN | ACK, ACK, PSH | ACK, ACK, PSH | ACK, FIN | ACK, FIN | ACK, ACK],
                      np.uint8)


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class HelloPair:
    """Real bytes of one source connection: what the generator replays."""

    client_hello: bytes  # the TLS record(s) carrying the ClientHello, as sent
    server_flight: bytes  # complete records of the server's first flight, or b""
    source: str
    # The client's records after its hello and before application data (TLS <= 1.2:
    # Certificate if asked, ClientKeyExchange, CertificateVerify, ChangeCipherSpec, Finished).
    client_flight: bytes = b""


FlowKey = tuple[bytes, int, bytes, int]  # src IP, src port, dst IP, dst port


@dataclass(frozen=True)
class _Segment:
    index: int
    seq: int
    flags: int
    payload: bytes


def read_tcp_flows(path: Path) -> dict[FlowKey, list[_Segment]]:
    """Group the TCP segments of a pcap/pcapng by direction (src, sport, dst, dport)."""
    flows: dict[FlowKey, list[_Segment]] = {}
    with open(path, "rb") as fh:
        reader = dpkt.pcap.UniversalReader(fh)
        datalink = reader.datalink()
        for index, (_ts, frame) in enumerate(reader):
            ip = decode_ip(datalink, frame)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            key = (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport)
            flows.setdefault(key, []).append(_Segment(index, tcp.seq, tcp.flags, bytes(tcp.data)))
    return flows


def _relative(segments: list[_Segment]) -> list[tuple[int, _Segment]]:
    """Segments with payload, keyed by stream offset (relative to ISN+1 when SYN seen)."""
    syns = [s for s in segments if s.flags & SYN]
    data = [s for s in segments if s.payload]
    if not data:
        return []
    base = (syns[0].seq + 1) if syns else data[0].seq
    out = [((s.seq - base) & 0xFFFFFFFF, s) for s in data]
    return sorted(((rel, s) for rel, s in out if rel < 1 << 31), key=lambda rs: (rs[0], rs[1].index))


def assemble(rel_segments: Iterable[tuple[int, _Segment]]) -> bytes:
    """Contiguous stream bytes from offset 0 up to the first gap (tolerates overlaps)."""
    buf = bytearray()
    for rel, seg in rel_segments:
        if rel > len(buf):
            break
        if rel + len(seg.payload) > len(buf):
            buf += seg.payload[len(buf) - rel:]
    return bytes(buf)


def complete_records(stream: bytes) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each complete TLS record at the head of a stream."""
    pos = 0
    while pos + 5 <= len(stream) and stream[pos + 1] == 3:
        end = pos + 5 + int.from_bytes(stream[pos + 3:pos + 5], "big")
        if end > len(stream):
            return
        yield pos, end
        pos = end


def client_hello_prefix(stream: bytes) -> bytes | None:
    """The record(s) at the start of a client stream that carry one whole ClientHello."""
    handshake = bytearray()
    for start, end in complete_records(stream):
        if stream[start] != 0x16:
            return None
        handshake += stream[start + 5:end]
        if handshake[:1] != b"\x01":
            return None
        if len(handshake) >= 4 and len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
            return stream[:end]
    return None


def server_first_flight(stream: bytes) -> bytes:
    """Complete records at the head of a server stream, if it starts with a ServerHello."""
    if len(stream) < 6 or stream[0] != 0x16 or stream[5] != 0x02:
        return b""
    ends = [end for _start, end in complete_records(stream)]
    return stream[:ends[-1]] if ends else b""


def client_second_flight(stream: bytes, hello_len: int, server_flight: bytes) -> bytes:
    """Complete records the client sent after its hello, up to its first application data.

    A TLS <= 1.2 client answers the server's first flight with its own (Certificate when the
    server sent a CertificateRequest, ClientKeyExchange, ..., ChangeCipherSpec, Finished)
    before any application data; replaying the hello alone would make every mutual-TLS
    connection one no real client sends. After a HelloRetryRequest, or a second ClientHello,
    nothing is taken (the generator replays single-hello exchanges only).
    """
    if len(server_flight) >= 43 and server_flight[11:43] == HRR_RANDOM:
        return b""
    rest = stream[hello_len:]
    end, after_ccs = 0, False
    for start, stop in complete_records(rest):
        ctype = rest[start]
        if ctype == 23 or ctype not in (20, 22):
            break
        if ctype == 22 and not after_ccs and rest[start + 5:start + 6] == b"\x01":
            break  # another ClientHello
        after_ccs |= ctype == 20
        end = stop
        if ctype == 22 and after_ccs:
            break  # the encrypted Finished ends the flight
    return rest[:end]


def extract_pairs(path: Path) -> list[HelloPair]:
    """All (ClientHello, server flight) pairs of the TCP connections in one capture."""
    flows = read_tcp_flows(path)
    pairs = []
    for key, segments in flows.items():
        client_rel = _relative(segments)
        hello = client_hello_prefix(assemble(client_rel))
        if hello is None or not _patchable(hello):
            continue
        # The server's first flight is what it sent before the client's next payload.
        next_client = min((s.index for rel, s in client_rel if rel >= len(hello)), default=1 << 62)
        reverse = flows.get((key[2], key[3], key[0], key[1]), [])
        server_rel = [(rel, s) for rel, s in _relative(reverse) if s.index < next_client]
        flight = server_first_flight(assemble(server_rel))
        client_flight = client_second_flight(assemble(client_rel), len(hello), flight)
        pairs.append(HelloPair(hello, flight, path.name, client_flight))
    return pairs


def _patchable(hello: bytes) -> bool:
    """True when random and session id lie inside the first record (always, in practice)."""
    first_record_end = 5 + int.from_bytes(hello[3:5], "big")
    return first_record_end >= 44 and 44 + hello[43] <= first_record_end


def load_pairs(sources: list[Path]) -> list[HelloPair]:
    """Distinct hello pairs of all sources, in a stable order."""
    seen: dict[tuple[bytes, bytes], HelloPair] = {}
    for path in sources:
        try:
            found = extract_pairs(path)
        except (ValueError, dpkt.UnpackError, dpkt.NeedData) as exc:  # not a capture we can read
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        for pair in found:
            seen.setdefault((pair.client_hello, pair.server_flight + pair.client_flight), pair)
    return list(seen.values())


# --------------------------------------------------------------------------- layouts


@dataclass
class Layouts:
    """Padded tables describing the hello packets of every (template, split) variant.

    A *layout* is one template sent with one segmentation; a connection picks a layout
    and the batch builder turns the table rows into packets with pure numpy indexing.
    """

    bank: U8Array  # all template bytes, concatenated
    template: IntArray  # [L] template index
    weight: npt.NDArray[np.float64]  # [L] probability of the layout
    n_seg: IntArray  # [L] hello packets of the layout
    seg_dir: IntArray  # [L, S]
    seg_src: IntArray  # [L, S] offset into bank
    seg_len: IntArray  # [L, S]
    seg_hello: IntArray  # [L, S] 1 = carries ClientHello/ServerHello bytes
    seg_is_ch: IntArray  # [L, S] 1 = carries ClientHello bytes
    n_patch: IntArray  # [L]
    patch_seg: IntArray  # [L, P] which hello packet of the layout
    patch_off: IntArray  # [L, P] offset inside that packet's payload
    patch_val: IntArray  # [L, P] column of the per-connection random block
    split: IntArray  # [L] 1 = ClientHello spans more than one segment
    ja3: list[str]  # [T] JA3 string of each template
    server_split: IntArray  # [L] 1 = the ServerHello itself spans more than one segment


@dataclass
class _LayoutRow:
    """One layout before padding: hello segments and where the per-connection bytes go."""

    template: int
    weight: float
    segs: list[tuple[int, int, int, int, int]]  # (direction, bank offset, length, hello, is ClientHello)
    patches: list[tuple[int, int, int]]  # (segment, offset in segment, value column)
    split: int
    server_split: int = 0


def _mss_cuts(length: int, extra_cut: int | None, mss: int = MSS) -> list[tuple[int, int]]:
    """(offset, length) segments of a message cut at the MSS and optionally once more."""
    cuts = set(range(mss, length, mss)) | ({extra_cut} if extra_cut else set())
    bounds = [0, *sorted(cuts), length]
    return [(a, b - a) for a, b in itertools.pairwise(bounds)]


def _patch_rows(segments: list[tuple[int, int]], seg_base: int,
                offsets: range, first_val: int) -> list[tuple[int, int, int]]:
    """Map message offsets to (segment, offset-in-segment, value column) rows."""
    rows = []
    for k, off in enumerate(offsets):
        for j, (start, length) in enumerate(segments):
            if start <= off < start + length:
                rows.append((seg_base + j, off - start, first_val + k))
                break
    return rows


def _split_points(length: int, mss: int = MSS) -> list[int]:
    """Extra cut positions: after the record header, inside the random, the middle."""
    limit = min(length, mss)
    return sorted({p for p in (5, 40, length // 2) if 0 < p < limit})


def build_layouts(pairs: list[HelloPair], split_fraction: float, *, mss: int = MSS,
                  server_split_fraction: float = 0.0) -> Layouts:
    """Turn hello pairs into the padded layout tables used by the batch builder.

    ``server_split_fraction`` of the server flights get an extra cut inside the ServerHello
    message (a server writing its hello in two sends, a middlebox re-segmenting); with 0 the
    layouts are those of earlier versions, so default files keep their bytes.
    """
    bank = bytearray()
    rows: list[_LayoutRow] = []
    for t, pair in enumerate(pairs):
        ch_at, sf_at = len(bank), len(bank) + len(pair.client_hello)
        cf_at = sf_at + len(pair.server_flight)
        bank += pair.client_hello + pair.server_flight + pair.client_flight
        ch, sf = pair.client_hello, pair.server_flight
        ch_sid = range(44, 44 + ch[43])
        sf_sid = range(44, 44 + sf[43]) if len(sf) > 44 and sf[43] == ch[43] else range(0)
        sh_end = 9 + int.from_bytes(sf[6:9], "big") if sf else 0
        sf_random = range(11, 43) if sf and sf[11:43] != HRR_RANDOM else range(0)
        points = _split_points(len(ch), mss)
        variants = [(None, 1.0 - split_fraction)] + [(p, split_fraction / len(points)) for p in points]
        sh_cut = min(sh_end, len(sf)) // 2
        sf_variants: list[tuple[int | None, float]] = [(None, 1.0)]
        if server_split_fraction > 0 and sh_cut > 0:
            sf_variants = [(None, 1.0 - server_split_fraction), (sh_cut, server_split_fraction)]
        for (extra_cut, weight), (sf_cut, sf_weight) in itertools.product(variants, sf_variants):
            sf_segs = _mss_cuts(len(sf), sf_cut, mss)
            ch_segs = _mss_cuts(len(ch), extra_cut, mss)
            segs = [(CLIENT, ch_at + a, n, 1, 1) for a, n in ch_segs]
            segs += [(SERVER, sf_at + a, n, int(a < sh_end), 0) for a, n in sf_segs]
            if pair.client_flight:
                segs += [(CLIENT, cf_at + a, n, 0, 0) for a, n in _mss_cuts(len(pair.client_flight), None, mss)]
            patches = (_patch_rows(ch_segs, 0, range(11, 43), 0)
                       + _patch_rows(ch_segs, 0, ch_sid, 32)
                       + _patch_rows(sf_segs, len(ch_segs), sf_random, 64)
                       + _patch_rows(sf_segs, len(ch_segs), sf_sid, 32))
            rows.append(_LayoutRow(t, weight * sf_weight / len(pairs), segs, patches, int(len(ch_segs) > 1),
                                   int(sf_cut is not None)))
    return _pad_layouts(rows, bank, [template_ja3(p.client_hello) for p in pairs])


def template_ja3(client_hello: bytes) -> str:
    """JA3 string of a ClientHello, also when it is fragmented over several records."""
    handshake = b"".join(client_hello[a + 5:b] for a, b in complete_records(client_hello))
    record = client_hello[:3] + len(handshake).to_bytes(2, "big") + handshake
    return ja3_of_client_hello_record(record) or ""


def _pad_layouts(rows: list[_LayoutRow], bank: bytearray, ja3: list[str]) -> Layouts:
    """Pack ragged layout rows into rectangular numpy tables."""
    n, s_max = len(rows), max(len(r.segs) for r in rows)
    p_max = max(len(r.patches) for r in rows)
    seg = np.zeros((5, n, s_max), np.int64)
    patch = np.zeros((3, n, p_max), np.int64)
    for i, r in enumerate(rows):
        seg[:, i, :len(r.segs)] = np.array(r.segs, np.int64).T
        if r.patches:
            patch[:, i, :len(r.patches)] = np.array(r.patches, np.int64).T
    weight = np.array([r.weight for r in rows])
    return Layouts(
        bank=np.frombuffer(bytes(bank), np.uint8), template=np.array([r.template for r in rows]),
        weight=weight / weight.sum(), n_seg=np.array([len(r.segs) for r in rows]),
        seg_dir=seg[0], seg_src=seg[1], seg_len=seg[2], seg_hello=seg[3], seg_is_ch=seg[4],
        n_patch=np.array([len(r.patches) for r in rows]),
        patch_seg=patch[0], patch_off=patch[1], patch_val=patch[2],
        split=np.array([r.split for r in rows]), ja3=ja3,
        server_split=np.array([r.server_split for r in rows]),
    )


# --------------------------------------------------------------------------- sizing


FIXED_PACKETS = 3 + 1 + 3  # handshake, ACK of the server flight, FIN/FIN/ACK


@dataclass(frozen=True)
class Plan:
    connections: int
    data_packets: int  # mean K per connection
    expected_bytes: float
    expected_hello_fraction: float


def plan(layouts: Layouts, connections: int, target_mb: float, hello_fraction: float) -> Plan:
    """Pick the mean number K of data packets per connection.

    K is the smallest value that makes the file at least ``target_mb`` MB *and* keeps
    hello-carrying packets at or below ``hello_fraction`` of all packets.
    """
    w = layouts.weight
    fixed = FIXED_PACKETS + float(w @ layouts.n_seg)
    hellos = float(w @ layouts.seg_hello.sum(1))
    hello_bytes = float(w @ layouts.seg_len.sum(1))
    per_data = HDR_LEN + (DATA_MIN + DATA_MAX) / 2
    k_fraction = math.ceil(hellos / hello_fraction - fixed) if hello_fraction > 0 else 0
    need = target_mb * 1e6 * 1.002 / connections - HDR_LEN * fixed - hello_bytes
    k_size = math.ceil(need / per_data)
    k = max(k_fraction, k_size, 2)
    per_conn = HDR_LEN * fixed + hello_bytes + k * per_data
    return Plan(connections, k, 24 + connections * per_conn, hellos / (fixed + k))


# --------------------------------------------------------------------------- batch build


@dataclass
class Totals:
    """Running counts, written to the manifest."""

    connections: int = 0
    packets: int = 0
    hello_packets: int = 0
    client_hello_packets: int = 0
    split_client_hellos: int = 0
    split_server_hellos: int = 0
    data_packets: int = 0
    bytes: int = len(PCAP_GLOBAL_HEADER)
    last_ts_us: int = START_EPOCH * 1_000_000


@dataclass
class Batch:
    """Per-packet arrays of one batch, in connection order (packet i of connection c)."""

    lid: IntArray  # [connections] layout of each connection
    conn_first: IntArray  # [connections] index of its first packet
    conn: IntArray  # [packets] connection of each packet
    step: IntArray  # [packets] position inside its connection
    kind: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    direction: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    plen: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    pay_start: IntArray = field(default_factory=lambda: np.empty(0, np.int64))  # in the batch buffer

    @property
    def n_conn(self) -> int:
        return len(self.lid)

    def hello_rows(self) -> tuple[IntArray, IntArray, IntArray]:
        """(packet index, layout, segment) of every hello packet."""
        hello = np.flatnonzero(self.kind == K_HELLO)
        return hello, self.lid[self.conn[hello]], self.step[hello] - 3


def random_pool(rng: np.random.Generator, size: int) -> U8Array:
    """Uniform random bytes for payloads, like real ciphertext: every byte value, 0x16 included, once
    in 256. (Generator versions before 2026-11-27 removed 0x16, which made the bare scan's pattern
    byte 4x rarer than in real traffic and that peer faster than it is on real captures.)"""
    return rng.integers(0, 256, size, dtype=np.uint8)


def _excl_cumsum(x: IntArray) -> IntArray:
    out = np.zeros_like(x)
    np.cumsum(x[:-1], out=out[1:])
    return out


def _ragged_arange(lengths: IntArray) -> IntArray:
    """Concatenation of arange(n) for each n in lengths."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(_excl_cumsum(lengths), lengths)


class BatchBuilder:
    """Builds the bytes of a batch of connections; all work is vectorised."""

    def __init__(self, layouts: Layouts, plan_: Plan, args: argparse.Namespace) -> None:
        self.lay = layouts
        self.k = plan_.data_packets
        self.interleave: int = args.interleave
        self.clients: int = args.clients
        self.rng = np.random.default_rng(args.seed)
        self.pool = random_pool(self.rng, 64 << 20)
        self.template_counts = np.zeros((len(layouts.ja3), 2), np.int64)  # [t, split]
        self.servers = SERVER_POOL if args.servers is None else il.server_pool(args.servers)
        self.timing = None if args.rate is None else il.Timing(rate=args.rate, rtt_us=args.rtt_ms * 1000)
        self.next_start_us = 0.0
        self.conn_base = 0
        self.open_us_total = 0.0  # sum over connections of first-to-last packet time
        #: With ``--rate``: per batch, per connection (client IP, client port, server IP, layout).
        self.conn_rows: list[IntArray] = []
        #: With ``--rate``: per record of the last batch (file order) its time, length, tag and
        #: connection, and the time up to which no later batch has a packet.
        self.records: tuple[IntArray, IntArray, IntArray, IntArray] | None = None
        self.safe_us = 0.0

    def build(self, n_conn: int, totals: Totals) -> U8Array:
        """Return the pcap records of the next ``n_conn`` connections."""
        lid = self.rng.choice(len(self.lay.weight), n_conn, p=self.lay.weight)
        k = self.rng.integers(self.k - self.k // 2, self.k + self.k // 2 + 1, n_conn)
        per_conn = FIXED_PACKETS + self.lay.n_seg[lid] + k
        conn = np.repeat(np.arange(n_conn), per_conn)
        conn_first = _excl_cumsum(per_conn)
        b = Batch(lid=lid, conn_first=conn_first, conn=conn, step=np.arange(len(conn)) - conn_first[conn])
        self._packet_kinds(b, k)
        seq, ack = self._sequence_numbers(b)
        if self.timing is None:
            order, ts = self._interleave_order(b), None
        else:
            order, ts = self._timed_order(b)
        hdr = self._headers(b, seq, ack, order, totals, ts)

        rec_len = HDR_LEN + b.plen[order]
        rec_start = _excl_cumsum(rec_len)
        buf = np.empty(int(rec_len.sum()), np.uint8)
        self._fill_random(buf)
        buf[rec_start[:, None] + np.arange(HDR_LEN)] = hdr.view(np.uint8).reshape(-1, HDR_LEN)
        b.pay_start = np.empty_like(rec_start)
        b.pay_start[order] = rec_start + HDR_LEN  # back to connection order
        self._write_data_record_headers(buf, b)
        self._write_hellos(buf, b)
        self._patch_hellos(buf, b)
        self._count(totals, b, len(buf))
        if ts is not None:
            self.records = (ts, rec_len, self._tags(b)[order], self.conn_base + b.conn[order])
        self.conn_base += n_conn
        return buf

    def _timed_order(self, b: Batch) -> tuple[IntArray, IntArray]:
        """File order and time (microseconds since the start) of every packet, for ``--rate``.

        Each packet waits for what it answers: a round trip for the SYN/ACK, for the server's
        flight after the ClientHello (plus the server's think time), for the client's flight after
        it and for a response after a request; back-to-back segments follow 12 us apart.
        """
        assert self.timing is not None
        prev_dir = np.r_[-1, b.direction[:-1]]
        turn = (b.step > 0) & (prev_dir != b.direction)
        hello = b.kind == K_HELLO
        phase = np.select(
            [b.step == 0, b.kind == K_SYNACK, hello & turn & (b.direction == SERVER), turn & (b.kind != K_FIN_C),
             (b.kind == K_DATA) | (b.kind == K_FIN_C)],
            [0, 1, 2, 1, 4], 3)
        rtt = self.timing.rtt_us * np.exp(self.rng.normal(0.0, self.timing.rtt_jitter, b.n_conn))
        gaps = il.packet_gaps(self.rng, self.timing, conn=b.conn, rtt=rtt, phase=phase)
        starts = il.connection_starts(self.rng, b.n_conn, self.next_start_us, self.timing.rate)
        self.next_start_us = self.safe_us = float(starts[-1])
        ts = il.connection_times(gaps, b.conn_first, b.conn, starts)
        self.open_us_total += float((ts[np.r_[b.conn_first[1:], len(ts)] - 1] - ts[b.conn_first]).sum())
        order = np.argsort(ts, kind="stable")
        return order, ts[order]

    def _tags(self, b: Batch) -> IntArray:
        """Per packet (connection order): first ClientHello segment, first ServerHello segment, and
        the client's first payload after its hello (its second flight, or its first request) and
        the server's first application data, and its last packet."""
        hello, lids, j = b.hello_rows()
        tag = np.zeros(len(b.conn), np.int64)
        first_ch = self.lay.seg_is_ch[lids, j].astype(bool) & (j == 0)
        first_sh = (self.lay.seg_dir[lids, j] == SERVER) & (self.lay.seg_dir[lids, np.maximum(j - 1, 0)] == CLIENT)
        tag[hello[first_ch]] = il.TAG_CLIENT_HELLO
        tag[hello[first_sh & (j > 0)]] = il.TAG_SERVER_HELLO
        later = (b.direction == CLIENT) & (b.plen > 0) & (b.kind != K_HELLO) | (b.kind == K_HELLO)
        later[hello] &= self.lay.seg_dir[lids, j] == CLIENT
        later[hello] &= ~self.lay.seg_is_ch[lids, j].astype(bool)
        _, first_later = np.unique(b.conn[later], return_index=True)
        tag[np.flatnonzero(later)[first_later]] = il.TAG_CLIENT_NEXT
        server_data = (b.kind == K_DATA) & (b.direction == SERVER)
        _, first_data = np.unique(b.conn[server_data], return_index=True)
        tag[np.flatnonzero(server_data)[first_data]] = il.TAG_SERVER_NEXT
        tag[np.r_[b.conn_first[1:], len(tag)] - 1] = il.TAG_LAST
        return tag

    def _packet_kinds(self, b: Batch, k: IntArray) -> None:
        """Kind, direction and TCP payload length of every packet."""
        b_hello = 3 + self.lay.n_seg[b.lid][b.conn]
        b_data = b_hello + 1
        b_fin = b_data + k[b.conn]
        b.kind = np.select([b.step < 3, b.step < b_hello, b.step < b_data, b.step < b_fin],
                           [b.step, K_HELLO, K_ACK_FLIGHT, K_DATA], K_FIN_C + b.step - b_fin)
        b.direction = KIND_DIR[b.kind].astype(np.int64)
        b.plen = np.zeros(len(b.conn), np.int64)
        hello, lids, j = b.hello_rows()
        b.direction[hello] = self.lay.seg_dir[lids, j]
        b.plen[hello] = self.lay.seg_len[lids, j]
        data = b.kind == K_DATA
        n_data = int(data.sum())
        # A request from the client, then mostly server->client responses.
        b.direction[data] = (self.rng.random(n_data) < 0.75).astype(np.int64)
        b.direction[data & (b.step == b_data)] = CLIENT
        b.plen[data] = self.rng.integers(DATA_MIN, DATA_MAX + 1, n_data)

    def _sequence_numbers(self, b: Batch) -> tuple[IntArray, IntArray]:
        """TCP seq/ack per packet from per-direction running byte counts."""
        consumed = b.plen + np.isin(b.kind, (K_SYN, K_SYNACK, K_FIN_C, K_FIN_S))
        isn = self.rng.integers(0, 1 << 32, (b.n_conn, 2), dtype=np.int64)
        rows = np.arange(len(b.conn))
        sent_before = np.empty((2, len(b.conn)), np.int64)
        for d in (CLIENT, SERVER):
            mine = consumed * (b.direction == d)
            before = np.cumsum(mine) - mine
            sent_before[d] = before - before[b.conn_first][b.conn]
        other = 1 - b.direction
        seq = isn[b.conn, b.direction] + sent_before[b.direction, rows]
        ack = isn[b.conn, other] + sent_before[other, rows]
        ack[b.kind == K_SYN] = 0
        return seq & 0xFFFFFFFF, ack & 0xFFFFFFFF

    def _interleave_order(self, b: Batch) -> IntArray:
        """Permutation mixing packets of ``interleave`` concurrent connections."""
        if self.interleave <= 1:
            return np.arange(len(b.conn))
        stagger = self.rng.integers(0, 2 * self.interleave, b.n_conn)
        group = np.arange(b.n_conn) // self.interleave
        return np.lexsort((b.conn, b.step + stagger[b.conn], group[b.conn]))

    def _endpoints(self, n_conn: int) -> tuple[IntArray, IntArray, IntArray]:
        """Client IP (10/8, from ``clients`` hosts), client port and server IP per connection."""
        host = self.rng.integers(1, self.clients + 1, n_conn)
        client_ip = 0x0A000000 | (host * 2654435761 % (1 << 24))  # spread hosts over 10/8
        client_port = self.rng.integers(1024, 65536, n_conn)
        server_ip = self.servers[self.rng.integers(0, len(self.servers), n_conn)].astype(np.int64)
        return client_ip, client_port, server_ip

    def _headers(self, b: Batch, seq: IntArray, ack: IntArray, order: IntArray,
                 totals: Totals, timed: IntArray | None = None) -> np.ndarray:
        """Structured pcap-record + Ethernet + IPv4 + TCP headers, in file order."""
        n = len(order)
        client_ip, client_port, server_ip = self._endpoints(b.n_conn)
        if timed is not None:
            self.conn_rows.append(np.stack([client_ip, client_port, server_ip, b.lid], axis=1))
        c, plen = b.conn[order], b.plen[order]
        is_client = b.direction[order] == CLIENT
        if timed is None:
            ts = totals.last_ts_us + np.cumsum(self.rng.integers(1, 40, n))
            totals.last_ts_us = int(ts[-1])
        else:
            ts = START_EPOCH * 1_000_000 + timed

        hdr = np.zeros(n, PACKET_HEADER)
        hdr["ts_sec"], hdr["ts_usec"] = ts // 1_000_000, ts % 1_000_000
        hdr["incl_len"] = hdr["orig_len"] = 54 + plen
        hdr["eth_dst"] = np.where(is_client[:, None], MAC_SERVER_SIDE, MAC_CLIENT_SIDE)
        hdr["eth_src"] = np.where(is_client[:, None], MAC_CLIENT_SIDE, MAC_SERVER_SIDE)
        hdr["eth_type"] = 0x0800
        hdr["ip_vihl"], hdr["ip_frag"], hdr["ip_proto"] = 0x45, 0x4000, 6
        hdr["ip_ttl"] = np.where(is_client, 64, 57)
        hdr["ip_len"] = 40 + plen
        hdr["ip_id"] = self.rng.integers(0, 1 << 16, n)
        hdr["ip_src"] = np.where(is_client, client_ip[c], server_ip[c])
        hdr["ip_dst"] = np.where(is_client, server_ip[c], client_ip[c])
        hdr["sport"] = np.where(is_client, client_port[c], 443)
        hdr["dport"] = np.where(is_client, 443, client_port[c])
        hdr["seq"], hdr["ack"] = seq[order], ack[order]
        hdr["tcp_off"], hdr["tcp_flags"] = 0x50, KIND_FLAGS[b.kind[order]]
        hdr["tcp_win"] = np.where(is_client, 502, 1047)
        _set_ip_checksums(hdr)
        return hdr

    def _fill_random(self, buf: U8Array) -> None:
        """Fill buf from the random pool starting at a random offset (wrapping)."""
        pos, start = 0, int(self.rng.integers(0, len(self.pool)))
        while pos < len(buf):
            n = min(len(buf) - pos, len(self.pool) - start)
            buf[pos:pos + n] = self.pool[start:start + n]
            pos, start = pos + n, 0

    @staticmethod
    def _write_data_record_headers(buf: U8Array, b: Batch) -> None:
        """Each data packet carries exactly one TLS application_data record."""
        data = b.kind == K_DATA
        body = b.plen[data] - 5
        rec = np.stack([np.full_like(body, 0x17), np.full_like(body, 3), np.full_like(body, 3),
                        body >> 8, body & 0xFF], axis=1).astype(np.uint8)
        buf[b.pay_start[data][:, None] + np.arange(5)] = rec

    def _write_hellos(self, buf: U8Array, b: Batch) -> None:
        """Copy the template hello bytes of every hello packet (one ragged gather)."""
        hello, lids, j = b.hello_rows()
        lengths = self.lay.seg_len[lids, j]
        within = _ragged_arange(lengths)
        dst = np.repeat(b.pay_start[hello], lengths) + within
        src = np.repeat(self.lay.seg_src[lids, j], lengths) + within
        buf[dst] = self.lay.bank[src]

    def _patch_hellos(self, buf: U8Array, b: Batch) -> None:
        """Give every hello its own random (client and server) and session id."""
        values = self.rng.integers(0, 256, (b.n_conn, 96), dtype=np.uint8)
        counts = self.lay.n_patch[b.lid]
        c = np.repeat(np.arange(b.n_conn), counts)
        p = _ragged_arange(counts)
        lids = b.lid[c]
        packet = b.conn_first[c] + 3 + self.lay.patch_seg[lids, p]
        buf[b.pay_start[packet] + self.lay.patch_off[lids, p]] = values[c, self.lay.patch_val[lids, p]]

    def _count(self, totals: Totals, b: Batch, n_bytes: int) -> None:
        _hello, lids, j = b.hello_rows()
        totals.connections += b.n_conn
        totals.packets += len(b.conn)
        totals.hello_packets += int(self.lay.seg_hello[lids, j].sum())
        totals.client_hello_packets += int(self.lay.seg_is_ch[lids, j].sum())
        totals.split_client_hellos += int(self.lay.split[b.lid].sum())
        totals.split_server_hellos += int(self.lay.server_split[b.lid].sum())
        totals.data_packets += int((b.kind == K_DATA).sum())
        totals.bytes += n_bytes
        np.add.at(self.template_counts, (self.lay.template[b.lid], self.lay.split[b.lid]), 1)


def _set_ip_checksums(hdr: np.ndarray) -> None:
    """Fill the IPv4 header checksum of every row (vectorised ones' complement sum)."""
    ip = hdr.view(np.uint8).reshape(-1, HDR_LEN)[:, IP_HEADER_SLICE].astype(np.uint32)
    total = (ip[:, 0::2] << 8 | ip[:, 1::2]).sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    hdr["ip_csum"] = ~total & 0xFFFF


# --------------------------------------------------------------------------- main


def default_sources() -> list[Path]:
    """The project's clean captures: pcaps/ also holds an interception demo (docs/captures/MANIFEST.json)."""
    manifest = json.loads((REPO_ROOT / "docs" / "captures" / "MANIFEST.json").read_text())
    return sorted(REPO_ROOT / "pcaps" / name for name, c in manifest["captures"].items() if c["label"] == "clean")


def expand_sources(items: list[str]) -> list[Path]:
    """Files as given; directories contribute their *.pcap* files."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        out += sorted(path.glob("*.pcap*")) if path.is_dir() else [path]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="*", help="source pcap/pcapng files or directories "
                   "(default: the clean captures in pcaps/ of the repository)")
    p.add_argument("-o", "--output", default="big.pcap", help="output pcap path")
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--target-mb", type=float, default=500.0,
                   help="minimum file size in MB (10^6 bytes)")
    p.add_argument("--hello-fraction", type=float, default=0.10,
                   help="maximum share of hello-carrying packets (0 = size only)")
    p.add_argument("--split-fraction", type=float, default=0.10,
                   help="share of ClientHellos given an extra TCP segment boundary")
    p.add_argument("--interleave", type=int, default=16,
                   help="connections whose packets are mixed together (1 = sequential)")
    p.add_argument("--clients", type=int, default=20_000, help="distinct client IPs")
    p.add_argument("--batch", type=int, default=2048, help="connections built per write")
    p.add_argument("--seed", type=int, default=1)
    g = p.add_argument_group("interleaved traffic (on with --rate; see benchmarks/README.md)")
    g.add_argument("--rate", type=float, default=None,
                   help="new connections per second (Poisson); packets are timed and written in time "
                        "order, so thousands of connections overlap (replaces --interleave)")
    g.add_argument("--rtt-ms", type=float, default=20.0,
                   help="median round-trip time, jittered per connection (log-normal, sigma 0.35)")
    g.add_argument("--servers", type=int, default=None,
                   help="distinct server IPs (default: 64 documentation addresses)")
    g.add_argument("--mss", type=int, default=MSS, help="TCP MSS hellos and flights are cut at")
    g.add_argument("--server-split-fraction", type=float, default=0.0,
                   help="share of ServerHello messages given an extra TCP segment boundary")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(path: Path, *, args: argparse.Namespace, sources: list[Path], plan_: Plan,
                   totals: Totals, builder: BatchBuilder, seconds: float,
                   writer: il.TimeOrderedWriter | None = None) -> dict[str, Any]:
    """Sidecar JSON with the counts and the expected JA3 multiset of the file."""
    ja3: Counter[str] = Counter()
    ja3_single: Counter[str] = Counter()
    for t, s in enumerate(builder.lay.ja3):
        md5 = hashlib.md5(s.encode()).hexdigest()
        ja3[md5] += int(builder.template_counts[t].sum())
        ja3_single[md5] += int(builder.template_counts[t, 0])
    manifest = {
        "file": path.name,
        "generator": "benchmarks/make_big_pcap.py",
        "seed": args.seed,
        "sources": [{"name": s.name, "sha256": file_sha256(s)} for s in sources],
        "templates": len(builder.lay.ja3),
        "data_packets_per_connection_mean": plan_.data_packets,
        "interleave": args.interleave,
        "split_fraction": args.split_fraction,
        **{k: v for k, v in vars(totals).items() if k != "last_ts_us"},
        "server_hello_packets": totals.hello_packets - totals.client_hello_packets,
        "hello_fraction": totals.hello_packets / totals.packets,
        "client_hello_fraction": totals.client_hello_packets / totals.packets,
        "build_seconds": round(seconds, 2),
        "expected_ja3_md5": dict(sorted(ja3.items())),
        "expected_ja3_md5_single_segment": dict(sorted(ja3_single.items())),
    }
    if writer is not None:
        span_s = (writer.last_ts + 1) / 1e6
        manifest["interleaved"] = {
            "rate": args.rate, "rtt_ms": args.rtt_ms, "servers": len(builder.servers), "mss": args.mss,
            "server_split_fraction": args.server_split_fraction,
            "seconds_of_traffic": round(span_s, 3),
            # Little's law: arrivals per second x mean time a connection stays open
            "mean_concurrent_connections": round(builder.open_us_total / 1e6 / span_s, 1),
            "hellos_in_different_16MiB_windows": writer.straddles(16 * 1024 * 1024, totals.connections),
        }
    Path(str(path) + ".json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def write_connection_truth(path: Path, builder: BatchBuilder, writer: il.TimeOrderedWriter) -> Path:
    """Sidecar ``<output>.conns.npz`` of an interleaved file: one row per connection.

    Why: the manifest's JA3 multiset says whether a reader found every hello; this says which
    connection is which (client IP/port, server IP as in the file), with its expected JA3, whether
    its ClientHello / ServerHello was split and the file offsets of both hellos, so a benchmark can
    tell what sent a given connection off a reader's fast path.
    """
    rows = np.concatenate(builder.conn_rows)
    lid = rows[:, 3]
    ja3 = np.array([hashlib.md5(j.encode()).hexdigest() for j in builder.lay.ja3])
    offsets = writer.offsets(len(rows))
    out = Path(str(path) + ".conns.npz")
    np.savez_compressed(
        out, client_ip=rows[:, 0].astype(np.uint32), client_port=rows[:, 1].astype(np.uint16),
        server_ip=rows[:, 2].astype(np.uint32), ja3_md5=ja3[builder.lay.template[lid]],
        client_hello_split=builder.lay.split[lid].astype(bool),
        server_hello_split=builder.lay.server_split[lid].astype(bool),
        client_hello_offset=offsets[il.TAG_CLIENT_HELLO], server_hello_offset=offsets[il.TAG_SERVER_HELLO],
        client_next_offset=offsets[il.TAG_CLIENT_NEXT], server_next_offset=offsets[il.TAG_SERVER_NEXT],
        last_packet_offset=offsets[il.TAG_LAST])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sources = expand_sources(args.sources) if args.sources else default_sources()
    if not sources:
        sys.exit("no source captures: pass files/directories, or add pcaps/*.pcap to the repo")
    started = time.perf_counter()
    pairs = load_pairs(sources)
    if not pairs:
        sys.exit("no TCP ClientHello found in the sources")
    layouts = build_layouts(pairs, args.split_fraction, mss=args.mss,
                            server_split_fraction=args.server_split_fraction)
    plan_ = plan(layouts, args.connections, args.target_mb, args.hello_fraction)

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    say(f"{len(pairs)} hello templates from {len(sources)} source(s); "
        f"K={plan_.data_packets} data packets/connection; expect "
        f"{plan_.expected_bytes / 1e6:,.0f} MB, hello fraction {plan_.expected_hello_fraction:.1%}")
    if args.hello_fraction and plan_.expected_hello_fraction < 0.05:
        need = math.ceil(args.connections * args.hello_fraction / plan_.expected_hello_fraction)
        say(f"warning: hellos are only {plan_.expected_hello_fraction:.1%} of packets; "
            f"use --connections ~{need:,} to keep them at ~{args.hello_fraction:.0%}")

    totals, builder = Totals(), BatchBuilder(layouts, plan_, args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = il.TimeOrderedWriter(len(PCAP_GLOBAL_HEADER)) if args.rate is not None else None
    with open(out, "wb") as fh:
        fh.write(PCAP_GLOBAL_HEADER)
        for first in range(0, args.connections, args.batch):
            n = min(args.batch, args.connections - first)
            buf = builder.build(n, totals)
            if writer is None:
                fh.write(buf.data)
                continue
            assert builder.records is not None
            last = first + n >= args.connections
            fh.write(writer.push(buf, *builder.records, None if last else builder.safe_us).data)
    seconds = time.perf_counter() - started
    m = write_manifest(out, args=args, sources=sources, plan_=plan_, totals=totals,
                       builder=builder, seconds=seconds, writer=writer)
    if writer is not None:
        write_connection_truth(out, builder, writer)
    print(f"wrote {out}: {m['connections']:,} connections, {m['packets']:,} packets, "
          f"{m['hello_packets']:,} hello packets ({m['hello_fraction']:.1%}; ClientHello "
          f"{m['client_hello_packets']:,}, ServerHello {m['server_hello_packets']:,}), "
          f"{m['split_client_hellos']:,} split ClientHellos, {m['bytes']:,} bytes "
          f"({m['bytes'] / 1e6:,.0f} MB) in {seconds:.1f} s")
    if m["bytes"] < args.target_mb * 1e6:
        say("warning: file is smaller than --target-mb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
