#!/usr/bin/env python3
"""Build a pcap of QUIC connections with real, encrypted Initials among other UDP traffic.

Why: the native engine's QUIC path (find long-header Initials with numpy, derive keys from the
client's DCID, decrypt, reassemble CRYPTO frames) must be measured on a file where QUIC Initials
are a minority of UDP packets, as on a real sensor, and every Initial is really protected (RFC
9001), so a reader that skipped the decryption could not pass. Real captures that size cannot be
shipped, so this replays the *real* ClientHello and ServerHello of small source captures (the
project's Chromium/aioquic capture in tests/data/quic/, or any capture given) as many connections.

Per connection: the client's Initial datagram(s) (the hello cut into CRYPTO frames across as many
1,250-byte padded datagrams as it needs, as Chrome does; with ``--shuffle-fraction`` a packet's
frames are cut again and sent in reverse order, and the datagrams swapped), the server's datagram
(its Initial with an ACK and the ServerHello, coalesced with a Handshake packet of random bytes),
the client's Initial ACK, then ``--data-packets`` 1-RTT short-header packets of random bytes in
both directions. Each connection gets fresh connection ids (so fresh keys), addresses, ports and
client/server randoms; the fingerprints (JA3/JA4) are those of the source hello. Between them: DNS
queries and answers on port 53 and RTP-like media streams (``--dns-per-connection``,
``--rtp-per-connection``), and all packets are written in time order.

Output: classic pcap, little-endian, microseconds, Ethernet, IPv4, UDP checksums zero (allowed
in IPv4). A manifest ``<output>.json`` records the counts and the expected JA4/JA3 multisets.
Same seed, same bytes. Usage:

    python benchmarks/make_quic_pcap.py -o benchmarks/data/quic.pcap --connections 20000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import dpkt  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quic_protect as qp

REPO = Path(__file__).resolve().parent.parent
CLIENT_DATAGRAM = 1250  # Chrome pads its Initial datagrams to this
CRYPTO_PER_PACKET = 1150  # CRYPTO bytes per client Initial, leaving room for headers and tag
SERVER_DATAGRAM = 1200


@dataclass(frozen=True)
class HelloPair:
    """The real handshake messages of one source QUIC connection."""

    client_hello: bytes  # with its 4-byte handshake header
    server_hello: bytes | None
    version: int
    dcid_len: int
    scid_len: int
    source: str


def _udp_payloads(path: Path) -> Iterator[tuple[float, bytes, int, bytes, int, bytes]]:
    """(ts, src, sport, dst, dport, payload) of each UDP datagram over IPv4/IPv6."""
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader: Any = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        link = reader.datalink()
        for ts, buf in reader:
            try:
                if link == dpkt.pcap.DLT_EN10MB:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif link == dpkt.pcap.DLT_LINUX_SLL:
                    ip = dpkt.sll.SLL(buf).data
                elif link in (dpkt.pcap.DLT_RAW, 101):
                    ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
                else:
                    return
            except (dpkt.UnpackError, IndexError):
                continue
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
                u = ip.data
                yield float(ts), bytes(ip.src), u.sport, bytes(ip.dst), u.dport, bytes(u.data)


def extract_pairs(path: Path) -> list[HelloPair]:
    """Decrypt the client and server Initials of each QUIC connection in a capture."""
    flows: dict[tuple[bytes, int, bytes, int], dict[str, Any]] = {}
    for _, src, sport, dst, dport, data in _udp_payloads(path):
        for start, end, _ in _safe_packets(data):
            pkt = data[start:end]
            fwd, rev = (src, sport, dst, dport), (dst, dport, src, sport)
            st = flows.get(fwd) or flows.get(rev)
            try:
                if st is None:
                    ini = qp.open_initial(pkt)
                    st = flows[fwd] = {"dcid": ini.dcid, "scid_len": len(ini.scid), "version": ini.version,
                                       "c": {}, "s": {}}
                    server = False
                else:
                    server = fwd not in flows
                    ini = qp.open_initial(pkt, client_dcid=st["dcid"], server=server)
                chunks = st["s" if server else "c"]
                for off, frag in qp.crypto_frames(ini.payload):
                    chunks.setdefault(off, frag)
            except qp.QuicPacketError:
                continue
    pairs = []
    for st in flows.values():
        ch = qp.handshake_message(st["c"])
        if ch is None or ch[0] != 1:
            continue
        sh = qp.handshake_message(st["s"])
        pairs.append(HelloPair(ch, sh if sh is not None and sh[0] == 2 else None, st["version"],
                               len(st["dcid"]), st["scid_len"], path.name))
    return pairs


def _safe_packets(data: bytes) -> list[tuple[int, int, int]]:
    try:
        return list(qp.long_packets(data))
    except qp.QuicPacketError:
        return []


def expected_fingerprints(pair: HelloPair) -> tuple[str, str, str | None]:
    """(ja4, ja3, ja3s) of a source pair, by the package's scalar reference path (``q``)."""
    from tlsdetect.fingerprint import client_fingerprints, server_fingerprint
    from tlsdetect.wire.tls import parse_client_hello, parse_server_hello

    fp = client_fingerprints("q", parse_client_hello(pair.client_hello[4:]))
    ja3s = server_fingerprint(parse_server_hello(pair.server_hello[4:]))[0] if pair.server_hello else None
    return fp.ja4, fp.ja3, ja3s


# --- packet building -------------------------------------------------------------------------

def _ip_checksum(header: bytes) -> int:
    s: int = sum(struct.unpack("!10H", header))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def udp_frame(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0) around a payload."""
    ulen = 8 + len(payload)
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, src, dst)
    iph = iph[:10] + struct.pack("!H", _ip_checksum(iph)) + iph[12:]
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + iph + struct.pack("!HHHH", sport, dport, ulen, 0) + payload


def _with_random(msg: bytes, rnd: bytes) -> bytes:
    """A hello with its 32-byte random (after type, length and legacy version) replaced."""
    return msg[:6] + rnd + msg[38:]


def _ack_frame(largest: int) -> bytes:
    return b"\x02" + qp.varint(largest) + qp.varint(0) + qp.varint(0) + qp.varint(largest)


def _cut(data: bytes, base: int, pieces: int) -> list[bytes]:
    """CRYPTO frames for data at offset base, cut into ``pieces`` frames."""
    step = -(-len(data) // pieces)
    return [qp.crypto_frame(base + i, data[i:i + step]) for i in range(0, len(data), step)]


@dataclass
class Generator:
    """Makes the packets of one connection (and the other UDP traffic) from a seeded RNG."""

    pairs: list[HelloPair]
    rng: random.Random
    shuffle_fraction: float
    data_packets: int

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def client_ip(self) -> bytes:
        return bytes([10, self.rng.randrange(256), self.rng.randrange(256), self.rng.randrange(1, 255)])

    def server_ip(self) -> bytes:
        return bytes([198, 51, 100, self.rng.randrange(1, 255)])

    def connection(self, t0: float, pair: HelloPair) -> list[tuple[float, bytes]]:
        """Timed frames of one QUIC connection."""
        r = self.rng
        cip, sip, cport = self.client_ip(), self.server_ip(), r.randrange(20000, 65000)
        dcid, scid, srv_cid = self._bytes(pair.dcid_len), self._bytes(pair.scid_len), self._bytes(8)
        ckeys = qp.initial_keys(dcid, pair.version)
        skeys = qp.initial_keys(dcid, pair.version, server=True)
        hello = _with_random(pair.client_hello, self._bytes(32))
        shuffle = r.random() < self.shuffle_fraction
        out: list[tuple[float, bytes]] = []

        def c2s(t: float, payload: bytes) -> None:
            out.append((t, udp_frame(cip, cport, sip, 443, payload)))

        def s2c(t: float, payload: bytes) -> None:
            out.append((t, udp_frame(sip, 443, cip, cport, payload)))

        packets = []
        for pn, off in enumerate(range(0, len(hello), CRYPTO_PER_PACKET)):
            part = hello[off:off + CRYPTO_PER_PACKET]
            frames = _cut(part, off, 3) if shuffle else [qp.crypto_frame(off, part)]
            payload = b"".join(reversed(frames)) + b"\x01"  # and a PING, as Chrome does
            packets.append(qp.protect_initial(payload, dcid=dcid, scid=scid, keys=ckeys, pn=pn,
                                              version=pair.version, pad_to=CLIENT_DATAGRAM))
        if shuffle:
            packets.reverse()
        rtt = r.uniform(0.002, 0.08)
        for i, pkt in enumerate(packets):
            c2s(t0 + i * 1e-5, pkt)
        if pair.server_hello is not None:
            sh = _with_random(pair.server_hello, self._bytes(32))
            ini = qp.protect_initial(_ack_frame(len(packets) - 1) + qp.crypto_frame(0, sh), dcid=scid,
                                     scid=srv_cid, keys=skeys, pn=0, version=pair.version)
            filler = max(40, SERVER_DATAGRAM - len(ini))
            hs = (bytes([0xE0 | r.randrange(4)]) + struct.pack("!I", pair.version) + bytes([len(scid)]) + scid
                  + bytes([8]) + srv_cid)
            hs += qp.varint(filler) + self._bytes(filler)
            s2c(t0 + rtt, ini + hs)
            c2s(t0 + rtt + 2e-4, qp.protect_initial(_ack_frame(0), dcid=srv_cid, scid=scid, keys=ckeys,
                                                  pn=len(packets), version=pair.version,
                                                  pad_to=CLIENT_DATAGRAM))
        t = t0 + rtt + 5e-4
        for i in range(self.data_packets):
            t += r.uniform(1e-4, 3e-3)
            to_server = i % 2 == 0
            cid = srv_cid if to_server else scid
            body = bytes([0x40 | r.randrange(0x40)]) + cid + self._bytes(r.randrange(40, 1300))
            (c2s if to_server else s2c)(t, body)
        return out

    def dns(self, t: float) -> list[tuple[float, bytes]]:
        """A real-format DNS A query and its answer."""
        r = self.rng
        cip, resolver = self.client_ip(), bytes([192, 0, 2, 53])
        port, qid = r.randrange(20000, 65000), r.randrange(65536)
        labels = [self._bytes(r.randrange(3, 12)).hex()[: r.randrange(3, 12)] for _ in range(2)] + ["example"]
        qname = b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\x00"
        question = qname + b"\x00\x01\x00\x01"
        query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
        answer = (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question
                  + b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", 300, 4) + self.server_ip())
        return [(t, udp_frame(cip, port, resolver, 53, query)),
                (t + r.uniform(5e-4, 0.02), udp_frame(resolver, 53, cip, port, answer))]

    def rtp(self, t: float, n: int) -> list[tuple[float, bytes]]:
        """n packets of an RTP-like media stream (v2 header, 20 ms of G.711 each)."""
        r = self.rng
        a, b = self.client_ip(), self.client_ip()
        pa, pb = 2 * r.randrange(5000, 10000), 2 * r.randrange(5000, 10000)
        ssrc, seq, ts, pt = r.getrandbits(32), r.randrange(65536), r.getrandbits(32), r.choice((0, 8, 111))
        out = []
        for i in range(n):
            hdr = struct.pack("!BBHII", 0x80, pt, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, ssrc)
            out.append((t + 0.02 * i, udp_frame(a, pa, b, pb, hdr + self._bytes(160))))
        return out


# --- writing ---------------------------------------------------------------------------------

@dataclass
class Totals:
    connections: int = 0
    packets: int = 0
    quic_packets: int = 0
    client_initials: int = 0
    bytes: int = 0


def _emit(out: BinaryIO, records: list[tuple[float, bytes]], totals: Totals) -> None:
    """Write time-sorted records as pcap records in one write."""
    chunk = bytearray()
    for ts, frame in records:
        sec, usec = divmod(round(ts * 1e6), 1_000_000)
        chunk += struct.pack("<IIII", sec, usec, len(frame), len(frame))
        chunk += frame
    out.write(chunk)
    totals.packets += len(records)
    totals.bytes += len(chunk)


def write(out: BinaryIO, gen: Generator, *, connections: int, target_bytes: int, rate: float,
          dns_per: float, rtp_per: float, batch: int = 1000) -> tuple[Totals, Counter[int]]:
    """Write connections in time order until both the count and the size are reached."""
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    totals, used = Totals(bytes=24), Counter[int]()
    held: list[tuple[float, bytes]] = []
    size = 24
    t = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    r = gen.rng
    while totals.connections < connections or totals.bytes < target_bytes:
        recs = list(held)
        start = t
        if totals.connections < connections:
            n_conn = max(1, min(batch, connections - totals.connections))
        else:  # only the size is left: about as many connections as the bytes still missing take
            per = max(1.0, size / max(1, totals.connections))
            n_conn = max(1, min(batch, math.ceil((target_bytes - size) / per)))
        for _ in range(n_conn):
            k = r.randrange(len(gen.pairs))
            used[k] += 1
            conn = gen.connection(t, gen.pairs[k])
            totals.quic_packets += len(conn)
            totals.client_initials += -(-len(gen.pairs[k].client_hello) // CRYPTO_PER_PACKET)
            recs += conn
            t += r.expovariate(rate)
        totals.connections += n_conn
        n_dns = int(dns_per * n_conn)
        for _ in range(n_dns):
            recs += gen.dns(r.uniform(start, t))
        streams = max(1, round(rtp_per * n_conn / 50)) if rtp_per else 0
        for _ in range(streams):
            recs += gen.rtp(r.uniform(start, t), 50)
        recs.sort(key=lambda x: x[0])
        cut = next((i for i, (ts, _) in enumerate(recs) if ts > t), len(recs))
        size = totals.bytes + sum(16 + len(frame) for _, frame in recs)  # the file, were all flushed now
        done = totals.connections >= connections and size >= target_bytes
        ready, held = (recs, []) if done else (recs[:cut], recs[cut:])
        _emit(out, ready, totals)
        if done:
            break
    if held:  # the size was reached mid-batch of held records: flush them
        _emit(out, held, totals)
    return totals, used


def expected(pairs: list[HelloPair], used: Counter[int]) -> dict[str, dict[str, int]]:
    """The multisets a reader must find: JA4 and JA3 of every connection, JA3S where it has one."""
    out: dict[str, Counter[str]] = {"ja4": Counter(), "ja3": Counter(), "ja3s": Counter()}
    for k, n in used.items():
        ja4, ja3, ja3s = expected_fingerprints(pairs[k])
        out["ja4"][ja4] += n
        out["ja3"][ja3] += n
        if ja3s:
            out["ja3s"][ja3s] += n
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def default_sources() -> list[Path]:
    """The project's own QUIC capture (Chromium and aioquic, v1 and v2; scripts/make_quic_captures.py)."""
    return [REPO / "tests" / "data" / "quic" / "quic.pcapng"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("sources", nargs="*", help="captures with QUIC handshakes (default: tests/data/quic/quic.pcapng)")
    p.add_argument("-o", "--output", default="quic.pcap")
    p.add_argument("--connections", type=int, default=10_000, help="at least this many QUIC connections")
    p.add_argument("--target-mb", type=float, default=0.0, help="and at least this size (10^6 bytes)")
    p.add_argument("--rate", type=float, default=2000.0, help="new QUIC connections per second")
    p.add_argument("--data-packets", type=int, default=8, help="1-RTT packets per connection")
    p.add_argument("--dns-per-connection", type=float, default=2.0, help="DNS query/answer pairs")
    p.add_argument("--rtp-per-connection", type=float, default=20.0, help="RTP-like packets")
    p.add_argument("--shuffle-fraction", type=float, default=0.2,
                   help="share of connections whose CRYPTO frames and datagrams come out of order")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sources = [Path(s) for s in args.sources] or default_sources()
    pairs = [p for src in sources for p in extract_pairs(src)]
    if not pairs:
        print("no QUIC handshake found in the sources; give captures with QUIC Initials", file=sys.stderr)
        return 1
    began = time.perf_counter()
    gen = Generator(pairs, random.Random(args.seed), args.shuffle_fraction, args.data_packets)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        totals, used = write(fh, gen, connections=args.connections, target_bytes=int(args.target_mb * 1e6),
                            rate=args.rate, dns_per=args.dns_per_connection, rtp_per=args.rtp_per_connection)
    manifest = {
        "file": out.name, "generator": "benchmarks/make_quic_pcap.py", "seed": args.seed,
        "sources": sorted({p.source for p in pairs}), "source_hellos": len(pairs),
        "source_server_hellos": sum(p.server_hello is not None for p in pairs),
        "connections": totals.connections, "packets": totals.packets, "quic_packets": totals.quic_packets,
        "client_initials": totals.client_initials, "bytes": totals.bytes,
        **{f"expected_{k}": v for k, v in expected(pairs, used).items()},
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "seconds": round(time.perf_counter() - began, 1),
    }
    Path(f"{out}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{out}: {totals.connections:,} QUIC connections, {totals.packets:,} packets "
          f"({totals.quic_packets:,} QUIC), {totals.bytes / 1e6:.1f} MB in {manifest['seconds']} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
