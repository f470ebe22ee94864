"""Vectorised decoding of link, IP and TCP/UDP headers for a whole :class:`PacketBatch`.

Every field is read with numpy gathers at per-packet offsets; a packet whose headers do not fit
its captured length, or that is not IPv4/IPv6 carrying TCP or UDP, is marked invalid rather than
raising. Supported link types: Ethernet (with 802.1Q/802.1ad/QinQ tags and PPPoE sessions), Linux
SLL and SLL2, raw IPv4/IPv6, BSD NULL and OpenBSD LOOP, PPP (with or without HDLC-like framing),
PPPoE and Cisco HDLC. Packets of any other link type (802.11, radiotap, user DLTs...) are counted
per type in :attr:`Decoded.unsupported`, so the engine can say which it skipped instead of
reporting "0 connections".

:func:`decode` and :func:`flow_hash` run the compiled core (:mod:`.ccore`) when it is built and
enabled; the numpy code here is the fallback and the oracle the tests hold the C code to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.capture import PacketBatch
from tlsdetect.wire.gather import Gather

__all__ = ["LINKTYPES", "UNSUPPORTED_NAMES", "Decoded", "decode", "flow_hash", "linktype_name"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]

LT_NULL = 0
LT_ETHERNET = 1
LT_RAW = 101
LT_RAW_ALT = (12, 14)  # DLT_RAW on some BSDs
LT_LOOP = 108
LT_SLL = 113
LT_IPV4 = 228
LT_IPV6 = 229
LT_SLL2 = 276
LT_PPP = 9
LT_PPP_HDLC = 50
LT_PPP_ETHER = 51  # PPPoE session header, then PPP
LT_C_HDLC = 104
LINKTYPES = {
    LT_PPP: "PPP",
    LT_PPP_HDLC: "PPP in HDLC-like framing",
    LT_PPP_ETHER: "PPPoE",
    LT_C_HDLC: "Cisco HDLC",
    LT_NULL: "BSD loopback",
    LT_ETHERNET: "Ethernet",
    LT_RAW: "raw IP",
    LT_LOOP: "OpenBSD loopback",
    LT_SLL: "Linux cooked (SLL)",
    LT_IPV4: "raw IPv4",
    LT_IPV6: "raw IPv6",
    LT_SLL2: "Linux cooked v2 (SLL2)",
}

#: Names of link types we do not decode, for the warning that says why a capture gave nothing.
UNSUPPORTED_NAMES = {
    6: "Token Ring", 10: "FDDI", 105: "IEEE 802.11", 119: "IEEE 802.11 Prism", 127: "IEEE 802.11 radiotap",
    163: "IEEE 802.11 AVS", 192: "PPI", 195: "IEEE 802.15.4", 220: "USB Linux mmapped", 253: "netlink",
    **{code: f"user-defined DLT_USER{code - 147}" for code in range(147, 163)},
}


def linktype_name(code: int) -> str:
    return LINKTYPES.get(code) or UNSUPPORTED_NAMES.get(code, "unknown")


ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
PROTO_TCP = 6
PROTO_UDP = 17
IPV6_EXT_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44


@dataclass(slots=True)
class Decoded:
    """Header fields per packet; only rows with ``valid`` set mean anything.

    Addresses are two uint64 halves: IPv4 lives in the low half as an IPv4-mapped IPv6 value,
    so one representation serves both families.
    """

    valid: B
    ip_version: I64
    proto: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64
    seq: I64
    flags: I64
    payload: I64
    payload_len: I64
    fragments: int = 0
    #: link type -> packets skipped because we do not decode that link type
    unsupported: dict[int, int] = field(default_factory=dict)


def _ppp(v: Gather, at: I64) -> tuple[I64, I64]:
    """Network header offset and ethertype after a PPP protocol field at ``at`` (RFC 1661: one byte
    when protocol-field compression made it odd, else two)."""
    one = (v.u8(at) & 1) == 1
    proto = np.where(one, v.u8(at), v.be16(at))
    etype = np.where(proto == PPP_IPV4, ETH_IPV4, np.where(proto == PPP_IPV6, ETH_IPV6, 0))
    return at + np.where(one, 1, 2), etype


def _link_layer(v: Gather, batch: PacketBatch) -> tuple[I64, I64]:
    """Offset of the network header and its ethertype (0 when unknown) per packet."""
    off = batch.data
    lt = batch.linktype
    n = len(off)
    l3 = np.full(n, -1, dtype=np.int64)
    etype = np.zeros(n, dtype=np.int64)

    eth = lt == LT_ETHERNET
    if eth.any():
        o = off[eth]
        et = v.be16(o + 12)
        hdr = np.full(len(o), 14, dtype=np.int64)
        for _ in range(3):  # 802.1Q, 802.1ad and QinQ stacks
            tagged = np.isin(et, VLAN_TPIDS)
            if not tagged.any():
                break
            et = np.where(tagged, v.be16(o + hdr + 2), et)
            hdr = np.where(tagged, hdr + 4, hdr)
        pppoe = et == ETH_PPPOE_SESSION
        if pppoe.any():  # 6 bytes of PPPoE session header, then the PPP protocol
            at, ppp_et = _ppp(v, o + hdr + 6)
            hdr = np.where(pppoe, at - o, hdr)
            et = np.where(pppoe, ppp_et, et)
        l3[eth] = o + hdr
        etype[eth] = et

    ppp = np.isin(lt, (LT_PPP, LT_PPP_HDLC, LT_PPP_ETHER))
    if ppp.any():
        o = off[ppp]
        framed = (v.u8(o) == 0xFF) & (v.u8(o + 1) == 0x03)  # HDLC-like address and control bytes
        skip = np.where(lt[ppp] == LT_PPP_ETHER, 6, np.where(framed, 2, 0))
        l3[ppp], etype[ppp] = _ppp(v, o + skip)
    hdlc = lt == LT_C_HDLC
    if hdlc.any():  # address, control, then an ethertype
        l3[hdlc] = off[hdlc] + 4
        etype[hdlc] = v.be16(off[hdlc] + 2)

    for code, hdr_len, et_at in ((LT_SLL, 16, 14), (LT_SLL2, 20, 0)):
        sel = lt == code
        if sel.any():
            l3[sel] = off[sel] + hdr_len
            etype[sel] = v.be16(off[sel] + et_at)

    raw = np.isin(lt, (LT_RAW, *LT_RAW_ALT, LT_IPV4, LT_IPV6))
    loop = (lt == LT_NULL) | (lt == LT_LOOP)
    for sel, hdr_len in ((raw, 0), (loop, 4)):
        if sel.any():
            start = off[sel] + hdr_len
            version = v.u8(start) >> 4
            l3[sel] = start
            etype[sel] = np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))
    return l3, etype


def flow_hash(
    src_hi: U64, src_lo: U64, dst_hi: U64, dst_lo: U64, sport: I64, dport: I64, *, compiled: bool | None = None
) -> U64:
    """A 64-bit key per (src, dst, sport, dport) direction (splitmix64 finaliser over the fields).

    Collisions are checked later against the real addresses, so this only has to be fast.
    ``compiled``: run the C core (default: when :func:`.ccore.enabled`).
    """
    if compiled if compiled is not None else ccore.enabled():
        return ccore.flow_hash(src_hi, src_lo, dst_hi, dst_lo, sport, dport)
    with np.errstate(over="ignore"):
        h = np.full(len(src_hi), 0x9E3779B97F4A7C15, dtype=np.uint64)
        ports = (sport.astype(np.uint64) << np.uint64(16)) | dport.astype(np.uint64)
        for part in (src_hi, src_lo, dst_hi, dst_lo, ports):
            h ^= part
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
            h *= np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(29)
    return h


def _unsupported(lt: I64) -> dict[int, int]:
    """Packets per link type we do not decode."""
    n = len(lt)
    if n and (lt == lt[0]).all():  # the usual capture: one link type, one lookup
        if int(lt[0]) not in LINKTYPES and int(lt[0]) not in LT_RAW_ALT:
            return {int(lt[0]): n}
    elif (other := ~np.isin(lt, (*LINKTYPES, *LT_RAW_ALT))).any():
        codes, counts = np.unique(lt[other], return_counts=True)
        return dict(zip(codes.tolist(), counts.tolist(), strict=True))
    return {}


def _decode_compiled(batch: PacketBatch) -> Decoded:
    """:func:`decode` by the C core: one loop over the packets, the same values on every row."""
    got = ccore.decode(batch.buf, batch.data, batch.caplen, batch.linktype)
    f = got.int_field
    return Decoded(
        unsupported=_unsupported(batch.linktype),
        valid=got.valid(),
        ip_version=f("ip_version"),
        proto=f("proto"),
        src_hi=got.address("src_hi"),
        src_lo=got.address("src_lo"),
        dst_hi=got.address("dst_hi"),
        dst_lo=got.address("dst_lo"),
        sport=f("sport"),
        dport=f("dport"),
        seq=f("seq"),
        flags=f("flags"),
        payload=f("payload"),
        payload_len=f("payload_len"),
        fragments=got.fragments,
    )


def decode(batch: PacketBatch, *, compiled: bool | None = None) -> Decoded:
    """Decode every packet of ``batch`` down to its TCP/UDP payload, in one pass of gathers.

    ``compiled``: run the C core (default: when :func:`.ccore.enabled`); both give equal arrays.
    """
    if compiled if compiled is not None else ccore.enabled():
        return _decode_compiled(batch)
    v = Gather(batch.buf)
    n = len(batch)
    end = batch.data + batch.caplen
    l3, etype = _link_layer(v, batch)

    is4 = (etype == ETH_IPV4) & (l3 >= 0) & (l3 + 20 <= end)
    is6 = (etype == ETH_IPV6) & (l3 >= 0) & (l3 + 40 <= end)
    is4 &= (v.u8(l3) >> 4) == 4
    is6 &= (v.u8(l3) >> 4) == 6

    proto = np.full(n, -1, dtype=np.int64)
    l4 = np.full(n, -1, dtype=np.int64)
    ip_end = end.copy()
    zero = np.zeros(n, dtype=np.uint64)
    src_hi, src_lo, dst_hi, dst_lo = zero.copy(), zero.copy(), zero.copy(), zero.copy()
    fragments = 0

    if is4.any():
        o = l3[is4]
        ihl = (v.u8(o) & 0x0F) * 4
        total = v.be16(o + 2)
        frag = v.be16(o + 6)
        is_frag = ((frag & 0x1FFF) != 0) | ((frag & 0x2000) != 0)
        fragments += int(is_frag.sum())
        proto[is4] = np.where(is_frag | (ihl < 20), -1, v.u8(o + 9))
        l4[is4] = o + ihl
        # Total length 0 is TCP segmentation offload as captured on the sender: trust caplen.
        ip_end[is4] = np.where(
            (total >= ihl) | (total == 0), np.minimum(o + np.where(total == 0, 1 << 30, total), end[is4]), -1
        )
        mapped = np.uint64(0xFFFF_0000_0000)
        src_lo[is4] = v.be32(o + 12).astype(np.uint64) | mapped
        dst_lo[is4] = v.be32(o + 16).astype(np.uint64) | mapped

    if is6.any():
        o = l3[is6]
        nh = v.u8(o + 6)
        plen = v.be16(o + 4)
        at = o + 40
        for _ in range(4):
            ext = np.isin(nh, IPV6_EXT_HEADERS)
            if not ext.any():
                break
            new_nh = v.u8(at)
            at = np.where(ext, at + (v.u8(at + 1) + 1) * 8, at)
            nh = np.where(ext, new_nh, nh)
        frag6 = nh == IPV6_FRAGMENT
        fragments += int(frag6.sum())
        proto[is6] = np.where(frag6, -1, nh)
        l4[is6] = at
        ip_end[is6] = np.minimum(o + 40 + np.where(plen == 0, 1 << 30, plen), end[is6])
        src_hi[is6] = v.be64(o + 8)
        src_lo[is6] = v.be64(o + 16)
        dst_hi[is6] = v.be64(o + 24)
        dst_lo[is6] = v.be64(o + 32)

    tcp = (proto == PROTO_TCP) & (l4 + 20 <= ip_end)
    udp = (proto == PROTO_UDP) & (l4 + 8 <= ip_end)
    sport = v.be16(l4)
    dport = v.be16(l4 + 2)
    seq = np.where(tcp, v.be32(l4 + 4), 0)
    doff = (v.u8(l4 + 12) >> 4) * 4
    flags = np.where(tcp, v.u8(l4 + 13), 0)
    tcp &= (doff >= 20) & (l4 + doff <= ip_end)
    payload = np.where(tcp, l4 + doff, np.where(udp, l4 + 8, -1))
    payload_len = np.where(tcp | udp, ip_end - payload, 0)
    valid = (tcp | udp) & (payload_len >= 0)
    return Decoded(
        unsupported=_unsupported(batch.linktype),
        valid=valid,
        ip_version=np.where(is4, 4, np.where(is6, 6, 0)),
        proto=np.where(tcp, PROTO_TCP, np.where(udp, PROTO_UDP, -1)),
        src_hi=src_hi,
        src_lo=src_lo,
        dst_hi=dst_hi,
        dst_lo=dst_lo,
        sport=sport,
        dport=dport,
        seq=seq,
        flags=flags,
        payload=payload,
        payload_len=np.maximum(payload_len, 0),
        fragments=fragments,
    )
