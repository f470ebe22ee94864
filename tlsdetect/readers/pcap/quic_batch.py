"""QUIC connections of a window settled in one C call, their rows rendered once per distinct hello pair.

Why: with the crypto in C, ~0.4 ms of Python per QUIC connection remained in :mod:`.datagrams`
(long-header walk, CRYPTO frames, reassembly, message walk, settle test, one parse of each hello,
the row). Here the common case takes none of it per connection:

1. numpy groups the window's candidate datagrams by unordered 4-tuple (dense flow ids, the
   direction of each datagram against the flow's first);
2. ``_quic_crypto.initial_batch`` walks all of them in capture order in C and settles each
   connection whose ClientHello and ServerHello complete in the window, handing both bodies in one
   arena;
3. the C hello walk (:mod:`tlsdetect.wire.hello_batch`) keys each hello by its fingerprint input;
   per distinct (ClientHello key, SNI, ServerHello key, session id echoed) the row is built once by
   the same code as the Python path (:func:`.udp_rows.udp_row`) and copied per connection with its
   own time, addresses, ports and transport parameters.

What this does not settle (a connection seen in an earlier window, one with DTLS datagrams, a skip,
a Retry, a HelloRetryRequest, other keys, differing overlaps, a connection still open at the
window's end, a hello the walk or the parser rejects) is left, datagram by datagram, to
:class:`.datagrams.Datagrams`, which stays the oracle: the tests require identical rows.
"""

from __future__ import annotations

import os
from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap.tls_stream import Connection, DirectionView, Endpoint, _ip
from tlsdetect.readers.pcap.udp_rows import udp_row
from tlsdetect.wire.hello_batch import client_hello_batch, server_hello_batch
from tlsdetect.wire.quic_initial import NATIVE, VERSIONS
from tlsdetect.wire.tls import ClientHello, TLSParseError, parse_client_hello, parse_server_hello

try:  # the libcrypto kernel; without it (NATIVE False) the batch is off
    from tlsdetect.wire import _quic_crypto
except ImportError:  # pragma: no cover - the kernel is built in CI
    _quic_crypto = None  # type: ignore[assignment]

__all__ = ["ENABLED", "Batch", "FlowKey", "Handoff", "Templates", "lone_hello_row", "settle"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]
FlowKey = tuple[tuple[int, int, int], tuple[int, int, int]]
#: Whether the batch runs: the kernel is built and on, and ``TLSDETECT_NO_QUIC_BATCH`` is not set
#: (the switch the equivalence tests and the benchmark use to run the Python path alone).
ENABLED = NATIVE and os.environ.get("TLSDETECT_NO_QUIC_BATCH", "").strip().lower() not in {"1", "true", "yes"}
SETTLED, HANDOFF = 1, 3
#: Row templates kept across windows (distinct hello pairs: a handful of stacks in real traffic).
MAX_TEMPLATES = 4096
_VERSIONS = tuple((v, spec.salt, spec.prefix, spec.initial_type) for v, spec in VERSIONS.items())
_FIELDS = 16


@dataclass(slots=True)
class Templates:
    """Rows by distinct hello pair, and the IP spellings seen (both reused across windows)."""

    rows: dict[tuple[bytes, bytes | None, bytes, bool], dict[str, object] | None] = field(default_factory=dict)
    ips: dict[tuple[int, int], str] = field(default_factory=dict)
    #: ClientHellos of handed-over connections by (key, SNI, session id): equal keys parse equal
    #: (frozen objects, so one is shared); None: the parser rejects it
    hellos: dict[tuple[bytes, bytes | None, bytes], ClientHello | None] = field(default_factory=dict)
    #: rows of connections that ended with a ClientHello alone, by (hello, other direction seen)
    lone: dict[tuple[ClientHello, bool], dict[str, object]] = field(default_factory=dict)

    def ip(self, hi: int, lo: int) -> str:
        text = self.ips.get((hi, lo))
        if text is None:
            if len(self.ips) > 65_536:
                self.ips.clear()
            text = self.ips[(hi, lo)] = _ip(hi, lo)
        return text


@dataclass(frozen=True, slots=True)
class Handoff:
    """A connection still open at the window's end, for the Python path to carry on from: its state
    as that path would hold it after the same datagrams (each direction's CRYPTO bytes are whole
    from offset 0, so one segment stands for them; ``frames`` keeps its count of frames)."""

    key: FlowKey
    a: tuple[int, int, int]  # the sender of its first datagram
    b: tuple[int, int, int]
    first_ts: int
    touched: int
    client: bool  # the direction (True: a -> b) of the client's Initials
    streams: tuple[bytes, bytes]  # (client's, server's) CRYPTO bytes
    frames: tuple[int, int]
    version: int
    cid: bytes
    hello_ts: int | None
    hello: ClientHello | None  # whole in the client's bytes: parsed
    params: str | None


@dataclass(slots=True)
class Batch:
    """What one window's batch settled: rows in settling order, the flows to mark as passed over
    (key, capture time of the settling datagram), the connections handed over still open, the
    Initials it opened, and which candidate datagrams are left to the Python path."""

    rows: list[dict[str, object]]
    passed: list[tuple[FlowKey, int]]
    decrypted: int
    python: B
    handoffs: list[Handoff] = field(default_factory=list)


def _flows(kind: I64, src_hi: U64, src_lo: U64, sport: I64, dst_hi: U64, dst_lo: U64, dport: I64,
           ) -> tuple[I64, I64, list[FlowKey], B]:
    """Dense flow id per datagram (the unordered 4-tuple), first datagram per flow, the flows' keys
    as the Python path spells them, and each datagram's direction (True: the flow's first sender's)."""
    sp, dp = sport.astype(np.uint64), dport.astype(np.uint64)
    src_first = (src_hi < dst_hi) | ((src_hi == dst_hi) & ((src_lo < dst_lo) | ((src_lo == dst_lo) & (sp <= dp))))
    lo = np.where(src_first[:, None], np.stack([src_hi, src_lo, sp], axis=1), np.stack([dst_hi, dst_lo, dp], axis=1))
    hi = np.where(src_first[:, None], np.stack([dst_hi, dst_lo, dp], axis=1), np.stack([src_hi, src_lo, sp], axis=1))
    uniq, first, inv = np.unique(np.concatenate([lo, hi], axis=1), axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    keys: list[FlowKey] = [((a, b, c), (d, e, f)) for a, b, c, d, e, f in uniq.tolist()]
    f0 = first[inv]
    fwd = (src_hi == src_hi[f0]) & (src_lo == src_lo[f0]) & (sport == sport[f0])
    return inv, first.astype(np.int64), keys, fwd


def settle(
    buf: npt.NDArray[np.uint8], kind: I64, payload: I64, plen: I64, ts: I64, src_hi: U64, src_lo: U64,
    dst_hi: U64, dst_lo: U64, sport: I64, dport: I64, known: Container[FlowKey], templates: Templates,
    quic: int = 0,
) -> Batch:
    """Settle what the C batch can of one window's candidate datagrams (``kind == quic`` are QUIC)."""
    n = len(kind)
    if n == 0 or not ENABLED:
        return Batch([], [], 0, np.ones(n, dtype=bool))
    inv, first, keys, fwd = _flows(kind, src_hi, src_lo, sport, dst_hi, dst_lo, dport)
    nflows = len(keys)
    ok = np.bincount(inv, weights=(kind != quic), minlength=nflows) == 0  # no DTLS datagram on the 4-tuple
    ok &= np.fromiter((k not in known for k in keys), dtype=bool, count=nflows)  # new in this window
    flow_id = np.where(ok[inv], inv, -1).astype(np.int64)
    raw, arena = _quic_crypto.initial_batch(
        np.ascontiguousarray(buf), np.ascontiguousarray(payload, dtype=np.int64),
        np.ascontiguousarray(plen, dtype=np.int64), np.ascontiguousarray(ts, dtype=np.int64), flow_id,
        np.ascontiguousarray(fwd, dtype=np.uint8), nflows, _VERSIONS,
    )
    ans = np.frombuffer(raw, dtype=np.int64).reshape(nflows, _FIELDS)
    done = np.flatnonzero(ans[:, 0] == SETTLED)
    done = done[np.argsort(ans[done, 3], kind="stable")]  # in settling order, as the Python path emits
    good = np.zeros(nflows, dtype=bool)
    rows: list[dict[str, object]] = []
    passed: list[tuple[FlowKey, int]] = []
    decrypted = 0
    if len(done):
        a = ans[done]
        data = np.frombuffer(arena, dtype=np.uint8)
        ch = client_hello_batch(data, a[:, 4], a[:, 4] + a[:, 5])
        sh = server_hello_batch(data, a[:, 6], a[:, 6] + a[:, 7])
        take = ch.valid & sh.valid & ~sh.hrr
        cols = zip(done.tolist(), a.tolist(), take.tolist(), ch.sni_start.tolist(), ch.sni_len.tolist(),
                   ch.key, sh.key, strict=True)
        for flow, (_, client, hello_ts, settled_ts, co, cl, so, sl, dec, echoed, *_), walked, s0, sn, ck, sk in cols:
            if not walked:
                continue
            tkey = (ck, arena[s0 : s0 + sn] if s0 >= 0 else None, sk, bool(echoed))
            template = templates.rows.get(tkey, templates)  # the Templates object: not seen yet
            ch_body = arena[co : co + cl]
            i0 = int(first[flow])
            a_end = (int(src_hi[i0]), int(src_lo[i0]), int(sport[i0]))
            b_end = (int(dst_hi[i0]), int(dst_lo[i0]), int(dport[i0]))
            if template is templates:
                template = _template(ch_body, arena[so : so + sl], bool(client), a_end, b_end, hello_ts)
                if len(templates.rows) >= MAX_TEMPLATES:
                    templates.rows.clear()
                templates.rows[tkey] = template
            if not isinstance(template, dict):
                continue  # the parser rejects it: the Python path counts and records why
            c_end, s_end = (a_end, b_end) if client else (b_end, a_end)
            row = template.copy()
            row["ts"] = hello_ts
            row["client_ip"] = templates.ip(c_end[0], c_end[1])
            row["client_port"] = c_end[2]
            row["server_ip"] = templates.ip(s_end[0], s_end[1])
            row["server_port"] = s_end[2]
            row["quic_transport_params"] = _quic_crypto.transport_parameters(ch_body)  # quic_tp in C
            rows.append(row)
            passed.append((keys[flow], settled_ts))
            decrypted += dec
            good[flow] = True
    handoffs = []
    open_ = np.flatnonzero(ans[:, 0] == HANDOFF)
    hellos = _handoff_hellos(ans[open_], arena, templates)
    for flow, hello in zip(open_.tolist(), hellos, strict=True):
        if hello is False:
            continue  # its hello does not parse: the Python path reads its datagrams and records why
        handoffs.append(_handoff(ans[flow].tolist(), arena, keys[flow], int(first[flow]), ts, src_hi, src_lo, sport,
                                 dst_hi, dst_lo, dport, hello))
        decrypted += int(ans[flow, 8])
        good[flow] = True
    return Batch(rows, passed, decrypted, ~good[inv], handoffs)


def _handoff_hellos(a: I64, arena: bytes, templates: Templates) -> list[ClientHello | bool | None]:
    """Per handed-over connection: its ClientHello (parsed once per distinct key, SNI and session id),
    None when its bytes do not hold a whole one yet, False when the parser rejects it."""
    out: list[ClientHello | bool | None] = [None] * len(a)
    whole = np.flatnonzero(a[:, 2] >= 0)
    if not len(whole):
        return out
    data = np.frombuffer(arena, dtype=np.uint8)
    body = a[whole, 4] + 4
    walked = client_hello_batch(data, body, a[whole, 4] + a[whole, 5])
    cols = zip(whole.tolist(), body.tolist(), (a[whole, 4] + a[whole, 5]).tolist(), walked.valid.tolist(),
               walked.key, walked.sni_start.tolist(), walked.sni_len.tolist(), strict=True)
    for i, start, end, valid, key, s0, sn in cols:
        raw = arena[start:end]
        if not valid:
            out[i] = _parse(raw)
            continue
        sid = raw[35 : 35 + raw[34]] if len(raw) > 34 else b""
        hkey = (key, arena[s0 : s0 + sn] if s0 >= 0 else None, sid)
        if hkey not in templates.hellos:
            if len(templates.hellos) >= MAX_TEMPLATES:
                templates.hellos.clear()
            got = _parse(raw)
            templates.hellos[hkey] = None if got is False else got  # type: ignore[assignment]
        hello = templates.hellos[hkey]
        out[i] = False if hello is None else hello
    return out


def _parse(body: bytes) -> ClientHello | bool:
    try:
        return parse_client_hello(body)
    except TLSParseError:
        return False


def _handoff(a: list[int], arena: bytes, key: FlowKey, i0: int, ts: I64, src_hi: U64, src_lo: U64,
             sport: I64, dst_hi: U64, dst_lo: U64, dport: I64, hello: ClientHello | bool | None) -> Handoff:
    """The open connection's state for the Python path."""
    _, client, hello_ts, touched, co, cl, so, sl, _, _, cf, sf, version, io, il, _ = a
    cstream, sstream = arena[co : co + cl], arena[so : so + sl]
    whole = isinstance(hello, ClientHello)
    return Handoff(
        key, (int(src_hi[i0]), int(src_lo[i0]), int(sport[i0])), (int(dst_hi[i0]), int(dst_lo[i0]), int(dport[i0])),
        int(ts[i0]), touched, bool(client), (cstream, sstream), (cf, sf), version, arena[io : io + il],
        hello_ts if whole else None, hello if isinstance(hello, ClientHello) else None,
        _quic_crypto.transport_parameters(cstream[4:]) if whole else None,
    )


def lone_hello_row(conn: Connection, templates: Templates) -> dict[str, object] | None:
    """The ``quic`` row of a connection that ended with one ClientHello and nothing else read (a client
    whose server never answered, or was not captured), from a row rendered once per distinct hello;
    None for any other shape (then :func:`.udp_rows.udp_row` renders it)."""
    views = conn.views
    if not 1 <= len(views) <= 2:
        return None
    client_key = next((k for k, v in views.items() if v.client_hellos), None)
    if client_key is None:
        return None
    view = views[client_key]
    other = views.get(not client_key)
    if len(view.client_hellos) != 1 or view != DirectionView(client_hellos=view.client_hellos):
        return None
    if other is not None and other != DirectionView():
        return None
    key = (view.client_hellos[0], other is not None)
    template = templates.lone.get(key)
    if template is None:
        if len(templates.lone) >= MAX_TEMPLATES:
            templates.lone.clear()
        template = templates.lone[key] = udp_row(conn, "quic")
    c_end, s_end = (conn.a, conn.b) if client_key else (conn.b, conn.a)
    row = template.copy()
    row["ts"] = conn.ts_ns
    row["client_ip"] = templates.ip(c_end.hi, c_end.lo)
    row["client_port"] = c_end.port
    row["server_ip"] = templates.ip(s_end.hi, s_end.lo)
    row["server_port"] = s_end.port
    return row


def _template(
    ch_body: bytes, sh_body: bytes, client: bool, a: tuple[int, int, int], b: tuple[int, int, int], ts: int
) -> dict[str, object] | None:
    """The row of one connection, built as :class:`.datagrams.Datagrams` builds it (None: a hello does not parse)."""
    try:
        ch, sh = parse_client_hello(ch_body), parse_server_hello(sh_body)
    except TLSParseError:
        return None
    conn = Connection(Endpoint(*a), Endpoint(*b), ts)
    conn.views[client] = DirectionView(client_hellos=[ch])
    conn.views[not client] = DirectionView(server_hellos=[sh])
    row = udp_row(conn, "quic")
    row["quic_transport_params"] = None
    return row
