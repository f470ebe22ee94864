"""The fast lane: whole TLS 1.3 handshakes that need no reassembly, done entirely in numpy.

Most connections in bulk traffic look the same on the wire: one segment holding the whole
ClientHello, one holding the whole ServerHello, the ServerHello selects TLS 1.3 (so nothing
after it is in clear) and is not a HelloRetryRequest. For those, :mod:`..hello_batch` groups
the hellos by fingerprint input, one representative per group is parsed by
:mod:`..tls`, and the rows are built column-wise. Everything else (split hellos, TLS <= 1.2
with certificates in clear, HelloRetryRequest, a hello whose partner is in another window,
retransmitted hellos) is left to the reassembling slow lane in :mod:`.pcap`, which gives the
same row for the same handshake — the tests compare the two lanes on the reference corpus.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..fingerprint import CLIENT_FP_COLUMNS, client_fingerprints, server_fingerprint
from ..gather import Gather
from ..hello_batch import HelloBatch, client_hello_batch, server_hello_batch
from ..tls import (
    MAX_RECORD_LENGTH,
    CertInfo,
    ClientHello,
    ServerHello,
    TLSParseError,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
)
from .flight import Flight, server_flights
from .packets import flow_hash
from .tls_stream import (
    CLIENT_HELLO_COLUMNS,
    SERVER_HELLO_COLUMNS,
    chain_json,
    client_hello_columns,
    server_hello_columns,
    version_name,
)

__all__ = ["FastLane", "Segments"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Segments:
    """Every TCP packet with payload in one window (the arrays the pcap engine already has)."""

    keys: U64
    seq: I64
    payload: I64
    plen: I64
    ts: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64


def _next_segment(seg: Segments, first: I64, need: I64) -> I64:
    """Index of the segment that continues each ``first`` with at least ``need`` bytes, or -1."""
    with np.errstate(over="ignore"):
        composite = seg.keys ^ (seg.seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        wanted_seq = (seg.seq[first] + seg.plen[first]) & 0xFFFFFFFF
        wanted = seg.keys[first] ^ (wanted_seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    order = np.argsort(composite)
    sorted_c = composite[order]
    pos = np.minimum(np.searchsorted(sorted_c, wanted), len(sorted_c) - 1)
    j = order[pos]
    ok = (sorted_c[pos] == wanted) & (seg.keys[j] == seg.keys[first]) & (seg.seq[j] == wanted_seq)
    ok &= seg.plen[j] >= need
    return np.where(ok, j, -1)


def _overlapped(seg: Segments, first: I64, second: I64, span: I64) -> B:
    """Whether any segment other than ``first``/``second`` of the same flow direction carries
    bytes of the stream range ``[0, span)`` that starts at ``first``."""
    order = np.argsort(seg.keys, kind="stable")
    sorted_keys = seg.keys[order]
    keys = seg.keys[first]
    lo = np.searchsorted(sorted_keys, keys, "left")
    counts = np.searchsorted(sorted_keys, keys, "right") - lo
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(first), dtype=np.int64), counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = order[np.repeat(lo, counts) + within]
    rel = ((seg.seq[idx] - seg.seq[first][owner] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    other = (idx != first[owner]) & (idx != second[owner])
    hits = other & (rel < span[owner]) & (rel + seg.plen[idx] > 0)
    return np.bincount(owner[hits], minlength=len(first)) > 0


def _with_joined(buf: U8, p1: I64, l1: I64, all_payload: I64, second: I64, rec_end: I64) -> tuple[U8, I64]:
    """A buffer where every hello's record is contiguous, and where each record starts.

    Whole records stay where they are in ``buf``; a record continued in a ``second`` segment is
    copied (both parts) behind it. Only split hellos are copied.
    """
    starts = p1.copy()
    split = np.flatnonzero(second >= 0)
    if len(split) == 0:
        return buf, starts
    pieces = [buf]
    at = len(buf)
    for i, j, first_len, need in zip(
        split.tolist(), all_payload[second[split]].tolist(), l1[split].tolist(), rec_end[split].tolist(), strict=True
    ):
        head = buf[p1[i] : p1[i] + first_len]
        tail = buf[j : j + need - first_len]
        pieces += [head, tail]
        starts[i] = at
        at += len(head) + len(tail)
    return np.concatenate(pieces), starts


@dataclass(slots=True)
class _Groups:
    """Distinct hellos seen so far (by 128-bit key) and what parsing the first of each gave."""

    index: dict[tuple[int, int], int] = field(default_factory=dict)
    parsed: list[ClientHello | ServerHello | None] = field(default_factory=list)

    def ids(
        self, key: U64, local_codes: I64, reps: I64, bodies: list[bytes], parse: Callable[[bytes], object]
    ) -> I64:
        """Global group id per hello; a representative the scalar parser rejects maps to -1."""
        local_to_global = np.empty(len(reps), dtype=np.int64)
        for local, rep in enumerate(reps.tolist()):
            k = (int(key[0, rep]), int(key[1, rep]))
            gid = self.index.get(k)
            if gid is None:
                gid = len(self.parsed)
                self.index[k] = gid
                try:
                    self.parsed.append(parse(bodies[local]))  # type: ignore[arg-type]
                except TLSParseError:
                    self.parsed.append(None)
            local_to_global[local] = gid if self.parsed[gid] is not None else -1
        return local_to_global[local_codes]


@dataclass(slots=True)
class _Chains:
    """Distinct certificate chains seen so far and their parsed certificates."""

    index: dict[bytes, int] = field(default_factory=dict)
    parsed: list[tuple[CertInfo, ...] | None] = field(default_factory=list)


@dataclass(slots=True)
class FastLane:
    """Accumulates fast-lane connections window by window; :meth:`frame` renders them."""

    recent_windows: int = 8
    clients: _Groups = field(default_factory=_Groups)
    servers: _Groups = field(default_factory=_Groups)
    cols: dict[str, list[npt.NDArray[np.generic]]] = field(default_factory=dict)
    sni: list[str | None] = field(default_factory=list)
    recent: deque[U64] = field(default_factory=deque)
    chains: _Chains = field(default_factory=_Chains)

    def _add(self, name: str, values: npt.NDArray[np.generic]) -> None:
        self.cols.setdefault(name, []).append(values)

    def take(self, buf: U8, seg: Segments, start: I64, busy: U64) -> B:
        """Consume the complete handshakes among the hello-start packets ``start`` of a window.

        ``seg`` holds every TCP payload packet of the window; ``busy`` the flow keys the slow
        lane already follows. A ClientHello may span its start segment and the next one in
        sequence (every Chrome hello with an ML-KEM key share does). Returns the mask of start
        packets this lane took; retransmissions of a taken hello are swallowed for
        ``recent_windows`` windows.
        """
        keys = seg.keys[start]
        payload, plen = seg.payload[start], seg.plen[start]
        n = len(start)
        taken = np.zeros(n, dtype=bool)
        if self.recent:
            taken |= np.isin(keys, np.concatenate(list(self.recent)))
        g = Gather(buf)
        rec_len = g.be16(payload + 3)
        msg_type = g.u8(payload + 5)
        msg_len = g.be24(payload + 6)
        framed = (plen >= 9) & (rec_len >= 4 + msg_len) & (msg_len > 0) & (rec_len <= MAX_RECORD_LENGTH)
        whole = framed & (plen >= 5 + rec_len)
        uniq, counts = np.unique(keys, return_counts=True)
        single = np.isin(keys, uniq[counts == 1]) & ~np.isin(keys, busy) & ~taken
        # The second segment of a two-segment ClientHello: same flow, next sequence number.
        second = np.full(n, -1, dtype=np.int64)
        split = np.flatnonzero(framed & ~whole & single & (msg_type == 1))
        if len(split):
            second[split] = _next_segment(seg, start[split], 5 + rec_len[split] - plen[split])
        # Another segment over the hello's bytes (a retransmission, or a conflicting overlap as
        # in evasion) is the reassembling lane's business: it has one rule for who wins.
        single &= ~_overlapped(seg, start, second, 5 + rec_len)
        ch = np.flatnonzero(single & (msg_type == 1) & (whole | (second >= 0)))
        sh = np.flatnonzero(whole & single & (msg_type == 2))
        if len(ch) == 0 or len(sh) == 0:
            self._remember(keys[taken])
            return taken
        c_buf, c_rec = _with_joined(buf, payload[ch], plen[ch], seg.payload, second[ch], 5 + rec_len[ch])
        c_body, s_body = c_rec + 9, payload[sh] + 9
        cb = client_hello_batch(c_buf, c_body, c_body + msg_len[ch])
        sb = server_hello_batch(buf, s_body, s_body + msg_len[sh])
        c_ok = np.flatnonzero(cb.valid)
        # TLS 1.3: nothing after the ServerHello is in clear. TLS <= 1.2: the rest of the
        # server's first flight (certificates) must be whole in this window.
        s_cert = np.full(len(sh), -1, dtype=np.int64)
        s_request = np.zeros(len(sh), dtype=bool)
        s_flat = sb.valid & ~sb.hrr
        older = np.flatnonzero(s_flat & ~sb.selected_tls13)
        if len(older):
            flight = server_flights(
                buf, keys[sh[older]], seg.seq[start[sh[older]]], seg.keys, seg.seq, seg.payload, seg.plen
            )
            s_cert[older] = self._cert_groups(flight)
            s_request[older] = flight.cert_request
            s_flat[older] &= flight.settled & (s_cert[older] != -2)
        s_ok = np.flatnonzero(s_flat)
        # Pair each ClientHello with the ServerHello travelling the other way.
        rev = flow_hash(
            seg.dst_hi[start[ch[c_ok]]], seg.dst_lo[start[ch[c_ok]]], seg.src_hi[start[ch[c_ok]]],
            seg.src_lo[start[ch[c_ok]]], seg.dport[start[ch[c_ok]]], seg.sport[start[ch[c_ok]]],
        )
        order = np.argsort(keys[sh[s_ok]])
        sh_keys = keys[sh[s_ok]][order]
        if len(sh_keys) == 0:
            self._remember(keys[taken])
            return taken
        pos = np.minimum(np.searchsorted(sh_keys, rev), len(sh_keys) - 1)
        paired = np.flatnonzero(sh_keys[pos] == rev)
        if len(paired) == 0:
            self._remember(keys[taken])
            return taken
        c_sel = c_ok[paired]
        s_sel = s_ok[order[pos[paired]]]
        cb, sb = cb.subset(c_sel), sb.subset(s_sel)
        c_gid = self._group(self.clients, cb, c_buf, c_body[c_sel], msg_len[ch[c_sel]], parse_client_hello)
        s_gid = self._group(self.servers, sb, buf, s_body[s_sel], msg_len[sh[s_sel]], parse_server_hello)
        good = (c_gid >= 0) & (s_gid >= 0)
        # mTLS on TLS <= 1.2: the client's certificate follows in its second flight.
        peer = np.full(len(c_sel), -1, dtype=np.int64)
        asked = np.flatnonzero(s_request[s_sel] & good)
        if len(asked):
            c_first = start[ch[c_sel[asked]]]
            client_flight = server_flights(
                buf, seg.keys[c_first], seg.seq[c_first], seg.keys, seg.seq, seg.payload, seg.plen
            )
            peer[asked] = self._cert_groups(client_flight)
            good[asked] &= client_flight.settled & (peer[asked] != -2)
        c_idx, s_idx = ch[c_sel][good], sh[s_sel][good]
        cert_gid = s_cert[s_sel][good]
        peer_gid = peer[good]
        for lo, length in zip(cb.sni_start[good].tolist(), cb.sni_len[good].tolist(), strict=True):
            self.sni.append(None if lo < 0 else c_buf[lo : lo + length].tobytes().decode("ascii", "backslashreplace"))
        w = start[c_idx]
        for name, values in (
            ("ts", seg.ts[w]),
            ("c_hi", seg.src_hi[w]),
            ("c_lo", seg.src_lo[w]),
            ("c_port", seg.sport[w]),
            ("s_hi", seg.dst_hi[w]),
            ("s_lo", seg.dst_lo[w]),
            ("s_port", seg.dport[w]),
            ("c_gid", c_gid[good]),
            ("s_gid", s_gid[good]),
            ("cert_gid", cert_gid),
            ("peer_gid", peer_gid),
        ):
            self._add(name, values)
        taken[c_idx] = True
        taken[s_idx] = True
        self._remember(keys[taken])
        return taken

    def _cert_groups(self, flight: Flight) -> I64:
        """Certificate-chain group per server: -1 no Certificate, -2 one the parser rejects.

        Chains are told apart by a cryptographic digest of the whole certificate list: a
        forged chain that shares a prefix with a trusted one must never borrow its identity.
        """
        out = np.full(len(flight.cert_start), -1, dtype=np.int64)
        view = memoryview(flight.buf.tobytes())
        index, parsed = self.chains.index, self.chains.parsed
        for i in np.flatnonzero(flight.cert_start >= 0).tolist():
            lo = int(flight.cert_start[i])
            body = view[lo : lo + int(flight.cert_len[i])]
            digest = hashlib.blake2b(body, digest_size=16).digest()
            gid = index.get(digest)
            if gid is None:
                gid = index[digest] = len(parsed)
                try:
                    parsed.append(parse_certificate(bytes(body)))
                except TLSParseError:
                    parsed.append(None)
            out[i] = gid if parsed[gid] is not None else -2
        return out

    def _remember(self, keys: U64) -> None:
        self.recent.append(keys)
        while len(self.recent) > self.recent_windows:
            self.recent.popleft()

    @staticmethod
    def _group(
        groups: _Groups, batch: HelloBatch, buf: U8, body: I64, length: I64, parse: Callable[[bytes], object]
    ) -> I64:
        codes, reps = batch.codes()
        bodies = [buf[b : b + n].tobytes() for b, n in zip(body[reps].tolist(), length[reps].tolist(), strict=True)]
        return groups.ids(batch.key, codes, reps, bodies, parse)

    def __len__(self) -> int:
        return len(self.sni)

    def drain(self) -> pd.DataFrame:
        """The fast-lane rows so far as a connections-table fragment (fingerprints included).

        The rows are handed over and forgotten, so memory holds one chunk, not the capture;
        the distinct hellos (a few hundred) are kept for the rest of the file.
        """
        if not self.sni:
            return pd.DataFrame()
        col = {k: np.concatenate(v) for k, v in self.cols.items()}
        sni = self.sni
        self.cols, self.sni = {}, []
        out: dict[str, object] = {
            "ts": col["ts"],
            "client_ip": _ips(col["c_hi"], col["c_lo"]),
            "client_port": col["c_port"],
            "server_ip": _ips(col["s_hi"], col["s_lo"]),
            "server_port": col["s_port"],
            "transport": "tcp",
            "sni": pd.array(pa.array(sni, type=pa.string()), dtype="string"),
            "hello_retry": False,
            "fingerprint_origin": "computed",
        }
        c_gid, s_gid = col["c_gid"], col["s_gid"]
        out.update(_client_columns(self.clients.parsed, c_gid))
        out.update(_server_columns(self.servers.parsed, s_gid))
        out.update(_cert_columns(self.chains.parsed, col["cert_gid"]))
        out.update(_cert_columns(self.chains.parsed, col["peer_gid"], prefix="peer_", chain=False))
        return pd.DataFrame(out)


def _ips(hi: U64, lo: U64) -> object:
    """Addresses as text. IPv4 (mapped into the low half) is formatted by Arrow kernels, octet
    by octet; the rare IPv6 address through :mod:`ipaddress`, once per distinct value."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    octets = [pc.cast(pa.array(((lo >> np.uint64(s)) & np.uint64(0xFF)).astype(np.uint8)), pa.string())
              for s in (24, 16, 8, 0)]
    text = pc.binary_join_element_wise(*octets, ".")
    if not v4.all():
        other = np.flatnonzero(~v4)
        pairs = np.stack([hi[other], lo[other]], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        words = [str(ipaddress.IPv6Address((int(h) << 64) | int(v))) for h, v in uniq.tolist()]
        values = text.to_numpy(zero_copy_only=False).astype(object)
        values[other] = np.array(words, dtype=object)[inverse.reshape(-1)]
        return pd.array(values, dtype="string")
    return pd.array(text, dtype="string")


def _broadcast(values: list[object], gid: I64) -> object:
    """``values[gid]`` per row. Text goes through Arrow's take (no Python string per row)."""
    if all(v is None or isinstance(v, str) for v in values):
        return pd.array(pa.array(values, type=pa.string()).take(pa.array(gid % max(len(values), 1))), dtype="string")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr[gid]


def _client_columns(hellos: list[ClientHello | ServerHello | None], gid: I64) -> dict[str, object]:
    names = (*CLIENT_FP_COLUMNS, *CLIENT_HELLO_COLUMNS)
    per: dict[str, list[object]] = {name: [] for name in names}
    for h in hellos:
        fields: dict[str, object] = {}
        if isinstance(h, ClientHello):
            fields = dict(zip(CLIENT_FP_COLUMNS, client_fingerprints("t", h), strict=True))
            fields.update(client_hello_columns(h))
        for name in names:
            per[name].append(fields.get(name))
    return {name: _broadcast(values, gid) for name, values in per.items()}


def _server_columns(hellos: list[ClientHello | ServerHello | None], gid: I64) -> dict[str, object]:
    names = ("ja3s", "ja3s_full", "tls_version", *SERVER_HELLO_COLUMNS)
    per: dict[str, list[object]] = {name: [] for name in names}
    for h in hellos:
        fields: dict[str, object] = {}
        if isinstance(h, ServerHello):
            fields = dict(zip(("ja3s", "ja3s_full"), server_fingerprint(h), strict=True))
            fields["tls_version"] = version_name(h.version)
            fields.update(server_hello_columns(h))
        for name in names:
            per[name].append(fields.get(name))
    return {name: _broadcast(values, gid) for name, values in per.items()}


def _cert_columns(
    chains: list[tuple[CertInfo, ...] | None], gid: I64, *, prefix: str = "server_", chain: bool = True
) -> dict[str, object]:
    names = [f"{prefix}subject", f"{prefix}issuer", f"{prefix}cert_sha256", f"{prefix}issuer_akid"]
    names += [f"{prefix}chain"] if chain else []
    per: dict[str, list[object]] = {name: [] for name in names}
    for certs in [*chains, None]:  # the extra last entry serves gid -1 (no certificate)
        leaf = certs[0] if certs else None
        per[names[0]].append(leaf.subject if leaf else None)
        per[names[1]].append(leaf.issuer if leaf else None)
        per[names[2]].append(leaf.sha256 if leaf else None)
        per[names[3]].append(leaf.akid if leaf else None)
        if chain:
            per[names[4]].append(chain_json(certs) if certs else None)
    return {name: _broadcast(values, gid) for name, values in per.items()}
