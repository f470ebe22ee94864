"""QUIC Initial and DTLS hellos of a capture: the native engine's UDP path.

Per window, numpy picks the few UDP payloads that can carry a hello (:func:`select`): a QUIC
long header of a known version whose first packet is an Initial (``first byte & 0xC0 == 0xC0``,
the version's Initial type bits), or a DTLS epoch-0 handshake record holding a Client- or
ServerHello fragment. Everything else on UDP never reaches Python.

:class:`Datagrams` keeps one state per connection (the unordered 4-tuple): QUIC Initials are
decrypted (:mod:`tlsdetect.wire.quic_initial`) and their CRYPTO frames reassembled per direction,
in any order and across datagrams; DTLS fragments are joined by message_seq
(:mod:`tlsdetect.wire.dtls`). A connection whose hellos are read is settled and its later
datagrams are not decrypted. The row is rendered like a TCP one, with ``transport`` ``quic`` or
``dtls`` (:mod:`.udp_rows`). What is not read is a counted skip under a ``quic_*``/``dtls_*``
name, never an exception.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap import quic_batch
from tlsdetect.readers.pcap.packets import PROTO_UDP, Decoded
from tlsdetect.readers.pcap.quic_batch import Handoff, Templates, lone_hello_row, settle
from tlsdetect.readers.pcap.tls_stream import Connection, DirectionView, Endpoint, reassemble
from tlsdetect.readers.pcap.udp_rows import udp_row
from tlsdetect.wire.dtls import DTLS_VERSIONS, DtlsSide, handshake_fragments
from tlsdetect.wire.gather import Gather
from tlsdetect.wire.quic_initial import (
    VERSIONS,
    InitialPacket,
    QuicSkipError,
    crypto_frames,
    initial_packets,
    open_initial,
)
from tlsdetect.wire.quic_tp import transport_parameters
from tlsdetect.wire.tls import (
    HANDSHAKE_CERTIFICATE,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    TLSParseError,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
)

__all__ = ["Candidates", "Datagrams", "select"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
QUIC, DTLS = 0, 1
DTLS13 = 0xFEFC
#: Most CRYPTO bytes reassembled per direction (a post-quantum ClientHello is under 2 KB; a
#: HelloRetryRequest's second hello doubles it).
MAX_CRYPTO = 64 * 1024
#: CRYPTO frames kept per direction (a hello comes in a handful; retransmissions repeat them).
MAX_FRAMES = 256
#: Client connection IDs kept per direction (a Retry adds one; more is a client trying the sensor's patience).
MAX_DCIDS = 4
#: Server Initials held while the client's (whose connection ID keys them) is not yet seen.
MAX_HELD = 8
#: Connections open at once; past it the oldest-idle is finished (``udp_evicted``).
MAX_OPEN = 65_536
#: A connection without a datagram for this long in capture time is finished with what it has (capture
#: time, not a count of windows: how much time a window holds depends on its size and the traffic's rate).
IDLE_NS = 5_000_000_000
HANDSHAKE_SERVER_HELLO_DONE = 14
#: DTLS handshake messages a candidate datagram may begin with: the hellos, then the server's
#: Certificate and ServerHelloDone (DTLS <= 1.2 sends its chain in clear, often in datagrams of its own).
DTLS_MESSAGES = (1, 2, 11, 14)
_INITIAL_TYPE = {v: spec.initial_type for v, spec in VERSIONS.items()}


@dataclass(slots=True)
class Candidates:
    """The UDP payloads of one window that may carry a hello, in capture order."""

    kind: I64  # QUIC or DTLS
    payload: I64
    plen: I64
    ts: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64

    @classmethod
    def empty(cls) -> Candidates:
        """No datagrams (the engine's last call, which only finishes what was carried)."""
        i, u = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        return cls(i, i, i, i, u, u, u, u, i, i)


def select(buf: npt.NDArray[np.uint8], dec: Decoded, ts_ns: I64) -> Candidates:
    """Locate the window's QUIC Initials and DTLS hello records with whole-array tests."""
    idx = np.flatnonzero(dec.valid & (dec.proto == PROTO_UDP) & (dec.payload_len >= 25))
    p = dec.payload[idx]
    g = Gather(buf)
    b0 = g.u8(p)
    version = g.be32(p + 1)
    known = np.fromiter(_INITIAL_TYPE, dtype=np.int64, count=len(_INITIAL_TYPE))
    types = np.fromiter(_INITIAL_TYPE.values(), dtype=np.int64, count=len(_INITIAL_TYPE))
    at = np.minimum(np.searchsorted(np.sort(known), version), len(known) - 1)
    sorted_types = types[np.argsort(known)]
    quic = ((b0 & 0xC0) == 0xC0) & (np.sort(known)[at] == version) & (((b0 >> 4) & 0x03) == sorted_types[at])
    rv = g.be16(p + 1)
    msg = g.u8(p + 13)
    dtls = (b0 == 22) & np.isin(rv, list(DTLS_VERSIONS)) & (g.be16(p + 3) == 0) & np.isin(msg, DTLS_MESSAGES)
    pick = quic | dtls
    i = idx[pick]
    return Candidates(
        np.where(quic[pick], QUIC, DTLS).astype(np.int64), dec.payload[i], dec.payload_len[i], ts_ns[i],
        dec.src_hi[i], dec.src_lo[i], dec.dst_hi[i], dec.dst_lo[i], dec.sport[i], dec.dport[i],
    )


@dataclass(slots=True)
class _Flow:
    """One UDP connection: ``a`` is the sender of its first candidate datagram (``forward``)."""

    transport: str
    conn: Connection
    touched: int  # capture time (ns) of its last candidate datagram
    crypto: dict[bool, list[tuple[int, bytes]]] = field(default_factory=lambda: {True: [], False: []})
    #: QUIC: the (version, DCID) of each client Initial that decrypted, per direction (the client's)
    dcids: dict[bool, list[tuple[int, bytes]]] = field(default_factory=lambda: {True: [], False: []})
    held: list[tuple[bool, bytes, InitialPacket]] = field(default_factory=list)
    dtls: dict[bool, DtlsSide] = field(default_factory=lambda: {True: DtlsSide(), False: DtlsSide()})
    #: DTLS: the hello bodies read, per direction (a retransmission under a new message_seq adds nothing)
    bodies: set[tuple[bool, bytes]] = field(default_factory=set)
    hello_ts: int | None = None
    settled: bool = False
    emitted: bool = False
    params: str | None = None
    dirty: set[bool] = field(default_factory=set)  # QUIC: directions with CRYPTO bytes not yet parsed


@dataclass(slots=True)
class _Passed:
    """A QUIC connection the C batch settled (:mod:`.quic_batch`): kept so its later datagrams are passed over."""

    touched: int
    transport: str = "quic"
    settled: bool = True
    emitted: bool = True


def _carried(h: Handoff) -> _Flow:
    """The Python path's state of a connection the batch left open (:class:`.quic_batch.Handoff`)."""
    flow = _Flow("quic", Connection(Endpoint(*h.a), Endpoint(*h.b), h.first_ts), h.touched)
    for forward, stream, frames in ((h.client, h.streams[0], h.frames[0]), (not h.client, h.streams[1], h.frames[1])):
        if frames:  # the direction's frames: one segment for the whole bytes, empty ones for the count
            flow.crypto[forward] = [(0, stream)] + [(0, b"")] * (frames - 1)
            flow.conn.views[forward] = DirectionView()
    flow.dcids[h.client] = [(h.version, h.cid)]
    if h.hello is not None:
        flow.conn.views[h.client].client_hellos.append(h.hello)
        flow.hello_ts, flow.params = h.hello_ts, h.params
    return flow


def _key(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return (a, b) if a <= b else (b, a)


class Datagrams:
    """QUIC and DTLS connections across the windows of one capture; :meth:`rows` hands the finished."""

    def __init__(self, stats: ReadStats) -> None:
        self.stats = stats
        self.flows: dict[tuple[tuple[int, int, int], tuple[int, int, int]], _Flow | _Passed] = {}
        self.templates = Templates()
        self.done: list[dict[str, object]] = []
        self.now = 0  # the latest capture time seen

    def window(self, buf: npt.NDArray[np.uint8], cand: Candidates) -> None:
        """Read one window's candidate datagrams, in capture order.

        The cyclic collector is paused meanwhile: each connection makes a few dozen acyclic objects
        (flow, hellos, row), and with the rows and flows alive the collector's full passes walked
        the whole heap again and again: ~20% of the native engine's CPU on 50,000 QUIC connections.
        """
        paused = gc.isenabled()
        gc.disable()
        try:
            self._window(buf, cand)
        finally:
            if paused:
                gc.enable()

    def _window(self, buf: npt.NDArray[np.uint8], cand: Candidates) -> None:
        counts = self.stats.counts
        counts["udp_hello_datagrams"] += len(cand.kind)
        if len(cand.kind):
            cand = self._batch(buf, cand)
        cols = zip(
            cand.kind.tolist(), cand.payload.tolist(), cand.plen.tolist(), cand.ts.tolist(), cand.src_hi.tolist(),
            cand.src_lo.tolist(), cand.dst_hi.tolist(), cand.dst_lo.tolist(), cand.sport.tolist(),
            cand.dport.tolist(), strict=True,
        )
        for kind, p, n, ts, shi, slo, dhi, dlo, sp, dp in cols:  # one step per candidate datagram
            src, dst = (shi, slo, sp), (dhi, dlo, dp)
            key = _key(src, dst)
            flow = self.flows.get(key)
            transport = "quic" if kind == QUIC else "dtls"
            self.now = max(self.now, ts)
            if flow is not None and ts - flow.touched >= IDLE_NS:  # idle too long: a new connection on the 4-tuple
                self._finish(self.flows.pop(key))
                flow = None
            if flow is None:
                flow = _Flow(transport, Connection(Endpoint(*src), Endpoint(*dst), ts), ts)
                self.flows[key] = flow
                if len(self.flows) > MAX_OPEN:
                    self._evict()
            elif isinstance(flow, _Passed) or flow.settled or flow.transport != transport:
                continue
            flow.touched = ts
            forward = (src == (flow.conn.a.hi, flow.conn.a.lo, flow.conn.a.port))
            data = buf[p : p + n].tobytes()
            if kind == QUIC:
                self._quic(flow, forward, data, ts)
            else:
                self._dtls(flow, forward, data, ts)
        self._expire()

    def _batch(self, buf: npt.NDArray[np.uint8], cand: Candidates) -> Candidates:
        """Settle the window's common QUIC connections in one C call (:mod:`.quic_batch`); the
        candidates it leaves, in capture order, for the loop."""
        got = settle(buf, cand.kind, cand.payload, cand.plen, cand.ts, cand.src_hi, cand.src_lo, cand.dst_hi,
                     cand.dst_lo, cand.sport, cand.dport, self.flows, self.templates, QUIC)
        if not got.rows and not got.handoffs:
            return cand
        self.now = max(self.now, int(cand.ts.max()))
        for key, touched in got.passed:
            self.flows[key] = _Passed(touched)
        for h in got.handoffs:
            self.flows[h.key] = _carried(h)
        while len(self.flows) > MAX_OPEN:
            self._evict()
        self.stats.counts["quic_initials_decrypted"] += got.decrypted
        self.stats.counts["quic_connections"] += len(got.rows)
        self.done.extend(got.rows)
        keep = np.flatnonzero(got.python)
        return Candidates(
            cand.kind[keep], cand.payload[keep], cand.plen[keep], cand.ts[keep], cand.src_hi[keep],
            cand.src_lo[keep], cand.dst_hi[keep], cand.dst_lo[keep], cand.sport[keep], cand.dport[keep],
        )

    # -- QUIC ---------------------------------------------------------------------------------

    def _quic(self, flow: _Flow, forward: bool, data: bytes, ts: int) -> None:
        for packet in initial_packets(data):
            if isinstance(packet, QuicSkipError):
                self.stats.skipped[f"quic_{packet.reason}"] += 1
                break
            self._open(flow, forward, data, packet)
        if flow.dirty:  # this datagram's CRYPTO bytes, or a held server Initial its keys opened
            self._reparse(flow, ts)

    def _open(self, flow: _Flow, forward: bool, data: bytes, packet: InitialPacket) -> None:
        """Decrypt one Initial with the keys its direction can have; its CRYPTO frames join the direction's."""
        peer = flow.dcids[not forward]
        attempts: list[tuple[bytes, bool]] = [(cid, True) for v, cid in peer if v == packet.version]
        if not peer:  # not (yet) known to be the server side: try the client's keys first
            attempts.insert(0, (packet.dcid, False))
        else:
            attempts.append((packet.dcid, False))
        for cid, server in attempts:
            try:
                _, plain = open_initial(data, packet, cid, server=server)
            except QuicSkipError:
                continue
            try:
                frames = crypto_frames(plain)
            except QuicSkipError as skip:
                self.stats.skipped[f"quic_{skip.reason}"] += 1
                return
            self.stats.counts["quic_initials_decrypted"] += 1
            known = flow.dcids[forward]
            if not server and (packet.version, packet.dcid) not in known and len(known) < MAX_DCIDS:
                flow.dcids[forward].append((packet.version, packet.dcid))
                self._retry_held(flow, forward)
            if len(flow.crypto[forward]) + len(frames) > MAX_FRAMES:
                self.stats.skipped["quic_too_many_frames"] += 1
                return
            flow.crypto[forward].extend(frames)
            if frames:
                flow.dirty.add(forward)
            return
        if not peer and len(flow.held) < MAX_HELD:
            flow.held.append((forward, data, packet))  # a server Initial before its client's: keys come later
        else:
            self.stats.skipped["quic_decrypt_failed"] += 1

    def _retry_held(self, flow: _Flow, client: bool) -> None:
        held, flow.held = flow.held, []
        for forward, data, packet in held:
            if forward == client:
                self.stats.skipped["quic_decrypt_failed"] += 1
                continue
            self._open(flow, forward, data, packet)

    def _reparse(self, flow: _Flow, ts: int) -> None:
        """Both directions' CRYPTO streams from offset 0, message by message, into the views."""
        views = flow.conn.views
        dirty, flow.dirty = flow.dirty, set()
        for forward in dirty:
            segments = flow.crypto[forward]
            stream = reassemble(segments, MAX_CRYPTO)
            view = views[forward] = DirectionView()
            pos = 0
            while pos + 4 <= len(stream) and len(view.client_hellos) + len(view.server_hellos) < 4:
                msg_type, size = stream[pos], int.from_bytes(stream[pos + 1 : pos + 4], "big")
                if pos + 4 + size > len(stream):
                    break
                body = stream[pos + 4 : pos + 4 + size]
                pos += 4 + size
                self._message(flow, view, msg_type, body, dtls=False)
            if view.client_hellos and flow.hello_ts is None:
                flow.hello_ts = ts  # the datagram that made the hello whole (as tshark dates it)
        flow.settled = _settled(views)
        if flow.settled:
            self._finish(flow)

    # -- DTLS ---------------------------------------------------------------------------------

    def _dtls(self, flow: _Flow, forward: bool, data: bytes, ts: int) -> None:
        frags, stop = handshake_fragments(data)
        if stop is not None:
            self.stats.skipped[stop] += 1
        view = flow.conn.views.setdefault(forward, DirectionView())
        for frag in frags:
            whole = flow.dtls[forward].add(frag)
            if whole is None:
                continue
            msg_type, body = whole
            if msg_type == HANDSHAKE_CLIENT_HELLO and flow.hello_ts is None:
                flow.hello_ts = ts
            self._message(flow, view, msg_type, body, dtls=True)
            if msg_type == HANDSHAKE_SERVER_HELLO_DONE:
                view.server_hello_done = True
        flow.settled = _settled(flow.conn.views, dtls=True)
        if flow.settled:
            self._finish(flow)

    def _message(self, flow: _Flow, view: DirectionView, msg_type: int, body: bytes, *, dtls: bool) -> None:
        if dtls:
            seen = (view is flow.conn.views.get(True), bytes([msg_type]) + body)
            if seen in flow.bodies:
                return  # the same message again (a retransmitted flight): not a second hello
            flow.bodies.add(seen)
        try:
            if msg_type == HANDSHAKE_CLIENT_HELLO:
                hello = parse_client_hello(body, dtls=dtls)
                view.client_hellos.append(hello)
                if not dtls and flow.params is None:
                    flow.params = transport_parameters(body)
            elif msg_type == HANDSHAKE_SERVER_HELLO:
                view.server_hellos.append(parse_server_hello(body))
            elif msg_type == HANDSHAKE_CERTIFICATE and dtls and not view.certificates:
                view.certificates = parse_certificate(body)  # DTLS <= 1.2 sends it in clear
        except TLSParseError as exc:
            self.stats.skipped[f"{flow.transport}_malformed_hello"] += 1
            view.errors.append(f"handshake type {msg_type}: {exc}")

    # -- finishing ----------------------------------------------------------------------------

    def _expire(self) -> None:
        old = [k for k, f in self.flows.items() if self.now - f.touched >= IDLE_NS]
        for key in old:
            self._finish(self.flows.pop(key))

    def _evict(self) -> None:
        key = min(self.flows, key=lambda k: self.flows[k].touched)
        self.stats.skipped["udp_evicted"] += 1
        self._finish(self.flows.pop(key))

    def _finish(self, flow: _Flow | _Passed) -> None:
        """Render the row once (a settled connection's entry stays, so its later datagrams are passed over)."""
        if isinstance(flow, _Passed) or flow.emitted:
            return
        flow.emitted = True
        if flow.held:  # no keys opened them: damaged, or a server's Initials whose client's were not captured
            self.stats.skipped["quic_undecryptable"] += len(flow.held)
        views = flow.conn.views
        if not any(v.client_hellos or v.server_hellos for v in views.values()):
            self.stats.skipped[f"{flow.transport}_no_hello"] += 1
            return
        if flow.hello_ts is not None:
            flow.conn.ts_ns = flow.hello_ts
        row = lone_hello_row(flow.conn, self.templates) if flow.transport == "quic" and quic_batch.ENABLED else None
        if row is None:
            row = udp_row(flow.conn, flow.transport)
        row["quic_transport_params"] = flow.params
        self.stats.counts[f"{flow.transport}_connections"] += 1
        self.done.append(row)
        flow.crypto, flow.held, flow.conn.views = {True: [], False: []}, [], {}  # only the settled mark is kept

    def rows(self, *, final: bool = False) -> list[dict[str, object]]:
        """The finished connections' rows since the last call (``final``: finish every open one)."""
        if final:
            for key in list(self.flows):
                self._finish(self.flows.pop(key))
        out, self.done = self.done, []
        return out


def _settled(views: dict[bool, DirectionView], *, dtls: bool = False) -> bool:
    """Whether the hellos are read: a ClientHello one way, a ServerHello that is not a
    HelloRetryRequest the other (after one, the second ClientHello and ServerHello too); DTLS
    <= 1.2 also waits for the server's chain or its ServerHelloDone."""
    client = next((v for v in views.values() if v.client_hellos), None)
    server = next((v for v in views.values() if v.server_hellos), None)
    if client is None or server is None or client is server:
        return False
    if server.server_hellos[0].is_hello_retry_request:
        return len(server.server_hellos) >= 2 and len(client.client_hellos) >= 2
    if not dtls or server.server_hellos[-1].version == DTLS13:
        return True
    return bool(server.certificates) or server.server_hello_done
