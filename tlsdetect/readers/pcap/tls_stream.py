"""From the reassembled bytes of one TCP connection to one connections-table row (pure logic).

The engine hands each direction's bytes from the segment where a TLS record began to :func:`read_direction`;
:class:`Connection` decides how many more bytes each side needs (``want``), when it is settled, and renders the row.

Size: one module because it is the reassembling lane's one rule set, the oracle the fast lane is tested against:
what a direction's bytes say (read as they arrive, equal to read at once) and what the row makes of both.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import numpy as np

from tlsdetect.readers.pcap.records import (
    MAX_FLIGHT_ITEMS,
    after_hellos,
    handshake_sizes,
    single,
    tls13_flights,
    truncated_places,
    walk_stream,
)
from tlsdetect.wire.tls import (
    HANDSHAKE_CERTIFICATE,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    MAX_RECORD_LENGTH,
    CertInfo,
    ClientHello,
    ServerHello,
    TLSParseError,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
    scan_records,
)
from tlsdetect.wire.versions import version_name

__all__ = ["Connection", "DirectionView", "conflicting_segments", "read_direction", "reassemble", "reassemble_runs"]

HANDSHAKE_CERTIFICATE_REQUEST = 13
HANDSHAKE_SERVER_HELLO_DONE = 14
TLS13 = 0x0304
#: Bytes more asked for at a time while a flight column is undecided.
FLIGHT_STEP = 16 * 1024



def reassemble(segments: list[tuple[int, bytes]], limit: int) -> bytes:
    """Contiguous bytes from relative offset 0, up to the first gap or ``limit``.

    ``segments`` are ``(relative_seq, payload)`` in arrival order; any order, duplicates and
    overlaps are fine. Where segments overlap, the lower sequence number wins, then the earlier
    arrival (retransmissions normally carry the same bytes).
    """
    out = bytearray()
    for rel, data in sorted(segments, key=lambda s: s[0]):
        cursor = len(out)
        if cursor >= limit:
            break
        if rel > cursor:
            break  # a gap: nothing after it is usable yet
        end = rel + len(data)
        if end <= cursor:
            continue
        out += data[cursor - rel : limit - rel]
    return bytes(out)


def reassemble_runs(segments: list[tuple[int, bytes, int]], limit: int) -> tuple[bytes, list[int], list[int]]:
    """:func:`reassemble` for ``(relative_seq, payload, capture position)`` segments, also saying
    where each piece that made it in starts and its capture position (which segment carried a
    record's first byte is what the flight columns are cut by)."""
    out = bytearray()
    starts: list[int] = []
    arrivals: list[int] = []
    for rel, data, arrival in sorted(segments, key=lambda s: s[0]):
        cursor = len(out)
        if cursor >= limit or rel > cursor:
            break
        if rel + len(data) <= cursor:
            continue
        starts.append(cursor)
        arrivals.append(arrival)
        out += data[cursor - rel : limit - rel]
    return bytes(out), starts, arrivals


def conflicting_segments(segments: list[tuple[int, bytes, int]], data: bytes, limit: int | None = None) -> int:
    """How many of ``segments`` (``(relative_seq, payload, capture position)``) carry, where they overlap
    the reassembled ``data`` (its first ``limit`` bytes: the engine passes the plaintext handshake the row was
    read from), bytes other than the ones :func:`reassemble_runs` kept.

    Only the handshake's bytes count: past them real stacks send 1-byte keep-alive probes at the last sent
    byte with a garbage byte (three connections of the reference corpus do), which would be false conflicts.

    Retransmissions repeat the same bytes; overlapping segments with *different* bytes are the classic way
    to show a sensor one stream and the endpoint another (the receiver's overlap policy decides which wins,
    and stacks differ), so the sensor cannot know which hello the server read. One slice comparison per
    segment (memcmp), only over the bytes it shares with ``data``."""
    n = 0
    end = len(data) if limit is None else min(limit, len(data))
    for rel, payload, _ in segments:
        stop = min(rel + len(payload), end)
        if rel < stop and payload[: stop - rel] != data[rel:stop]:
            n += 1
    return n


@dataclass(slots=True)
class DirectionView:
    """What one direction's plaintext handshake bytes said."""

    client_hellos: list[ClientHello] = field(default_factory=list)
    server_hellos: list[ServerHello] = field(default_factory=list)
    certificates: tuple[CertInfo, ...] = ()
    certificate_request: bool = False
    server_hello_done: bool = False
    change_cipher_spec: bool = False
    stop: str = "need_more"
    next_need: int = 5
    errors: list[str] = field(default_factory=list)
    consumed: int = 0
    messages: int = 0
    #: Messages already taken from past ``consumed`` (their record's last message was still cut): the
    #: next scan, resumed at ``consumed``, finds them again first and skips them.
    ahead: int = 0
    #: A message after ChangeCipherSpec did not parse (the encrypted Finished): no later one is read.
    garbled: bool = False
    #: The reassembled bytes so far and their pieces' starts and capture positions (the engine
    #: sets them): the flight columns walk the records past the plaintext handshake.
    data: bytes = b""
    starts: list[int] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    capped: bool = False
    #: The direction has bytes past a gap after ``data`` (the engine sets it when the connection is
    #: finished): a flight walk that ends at the end of ``data`` ended cut, not quiet.
    hole: bool = False


def _next_need(data: bytes, consumed: int) -> int:
    """Bytes needed before the record after ``consumed`` is whole."""
    pos = consumed
    while pos + 5 <= len(data):
        length = (data[pos + 3] << 8) | data[pos + 4]
        if pos + 5 + length > len(data):
            return pos + 5 + length
        pos += 5 + length
    return pos + 5


MAX_MESSAGES = 16


def first_message_records(data: bytes) -> int | None:
    """How many TLS records the first handshake message of ``data`` came in (None: not whole).

    Nearly every stack sends a ClientHello in one record; dozens of tiny records are a way past
    inspection that reads one record at a time, so the count is a column of its own.
    """
    pos, records, head, body = 0, 0, bytearray(), 0
    while pos + 5 <= len(data) and data[pos] == 22:
        length = (data[pos + 3] << 8) | data[pos + 4]
        fragment = data[pos + 5 : pos + 5 + length]
        records += 1
        take = min(4 - len(head), len(fragment))
        head += fragment[:take]
        body += len(fragment) - take
        if len(head) == 4 and body >= int.from_bytes(head[1:], "big"):
            return records
        pos += 5 + length
    return None


def gave_up(view: DirectionView | None) -> str:
    """Why a direction's hello was not read (the ``incomplete`` reason codes, see ``schema``)."""
    if view is None:
        return "no_client_hello"
    if view.capped:
        return "depth_exceeded"
    if view.errors or view.stop in ("not_tls", "alert", "encrypted"):
        return "malformed_hello"
    if view.stop == "limit":
        return "message_limit"
    return "hello_cut"


def read_direction(data: bytes, previous: DirectionView | None = None) -> DirectionView:
    """Parse every plaintext handshake message at the start of one direction.

    ``previous`` is the view of a shorter prefix of the same bytes (the stream grows as segments
    arrive): scanning resumes after the records it consumed, so a connection's handshake is
    parsed once however many segments it comes in. The view is updated in place.
    """
    view = previous if previous is not None else DirectionView()
    if view.stop != "need_more":
        return view  # encryption, an alert or junk already ended the plaintext
    base = view.consumed
    scan = scan_records(data[base:], max_messages=MAX_MESSAGES - view.messages + view.ahead, after_ccs=True)
    view.stop = scan.stop
    # Which messages came after a ChangeCipherSpec, per message: the answer must not depend on how
    # the bytes were split between calls (a CCS read later does not make an earlier error expected).
    ccs_at = 0 if view.change_cipher_spec else scan.before_ccs
    view.change_cipher_spec |= scan.saw_change_cipher_spec
    view.consumed = base + scan.consumed
    first = view.ahead
    view.ahead = len(scan.messages) - scan.settled
    view.messages += len(scan.messages) - first
    view.next_need = base + _next_need(data[base:], scan.consumed) if scan.stop == "need_more" else len(data)
    for i, msg in enumerate(scan.messages[first:], start=first):
        if view.garbled:
            break
        try:
            if msg.msg_type == HANDSHAKE_CLIENT_HELLO:
                view.client_hellos.append(parse_client_hello(msg.body))
            elif msg.msg_type == HANDSHAKE_SERVER_HELLO:
                view.server_hellos.append(parse_server_hello(msg.body))
            elif msg.msg_type == HANDSHAKE_CERTIFICATE and not view.certificates:
                view.certificates = parse_certificate(msg.body)
            elif msg.msg_type == HANDSHAKE_CERTIFICATE_REQUEST:
                view.certificate_request = True
            elif msg.msg_type == HANDSHAKE_SERVER_HELLO_DONE:
                view.server_hello_done = True
        except TLSParseError as exc:
            if ccs_at is not None and i >= ccs_at:
                view.garbled = True  # encrypted Finished after CCS looks like garbage: expected; read no further
                break
            view.errors.append(f"handshake type {msg.msg_type}: {exc}")
    return view


CLIENT_HELLO_COLUMNS = (
    "alpn", "ch_version", "ch_ciphers", "ch_extensions", "ch_groups", "ch_point_formats", "ch_sig_algs",
    "ch_supported_versions", "ch_alpn",
)
SERVER_HELLO_COLUMNS = ("sh_version", "sh_cipher", "sh_extensions", "sh_selected_version", "sh_alpn")


def client_hello_columns(ch: ClientHello) -> dict[str, object]:
    """The connections-table cells a ClientHello fills (both native lanes use this)."""
    return {
        "alpn": ch.alpn[0].decode("ascii", "backslashreplace") if ch.alpn else None,
        "ch_version": ch.legacy_version,
        "ch_ciphers": ch.ciphers,
        "ch_extensions": ch.extensions,
        "ch_groups": ch.groups,
        "ch_point_formats": ch.point_formats,
        "ch_sig_algs": ch.sig_algs,
        "ch_supported_versions": ch.supported_versions,
        "ch_alpn": tuple(a.hex() for a in ch.alpn),
    }


def server_hello_columns(sh: ServerHello) -> dict[str, object]:
    """The connections-table cells a ServerHello fills (both native lanes use this)."""
    return {
        "sh_version": sh.legacy_version,
        "sh_cipher": sh.cipher,
        "sh_extensions": sh.extensions,
        "sh_selected_version": sh.selected_version,
        "sh_alpn": sh.alpn.decode("ascii", "backslashreplace") if sh.alpn else None,
    }


def chain_json(chain: tuple[CertInfo, ...]) -> str:
    """The ``server_chain`` column: leaf first, each with subject, issuer, SHA-256, SKI, AKI and SPKI pin."""
    return json.dumps([{"subject": c.subject, "issuer": c.issuer, "sha256": c.sha256, "ski": c.ski, "akid": c.akid,
                        "spki": c.spki} for c in chain])


def _ip(hi: int, lo: int) -> str:
    if hi == 0 and (lo >> 32) == 0xFFFF:  # IPv4: the dotted quad ipaddress spells, ~10x cheaper
        return f"{(lo >> 24) & 255}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return str(ipaddress.IPv6Address((hi << 64) | lo))


@dataclass(slots=True)
class Endpoint:
    hi: int
    lo: int
    port: int

    @property
    def ip(self) -> str:
        return _ip(self.hi, self.lo)


@dataclass(slots=True)
class Connection:
    """Both directions of one TCP connection, as far as the handshake goes."""

    a: Endpoint  # sender of the first TLS record seen
    b: Endpoint
    ts_ns: int
    views: dict[bool, DirectionView] = field(default_factory=dict)  # True: a -> b
    #: The last :meth:`flight_columns` answer and the bytes it was read from: the reassembling
    #: lane asks several times per new segment, and reading is what costs.
    memo: tuple[tuple[bool, tuple[bool, ...]], tuple[bytes | None, ...], tuple[dict[str, object], bool]] | None = field(
        default=None, repr=False, compare=False
    )
    #: Sequence bookkeeping lives with the reader; this holds only what parsing needs.

    def _roles(self) -> tuple[bool, bool]:
        """(direction key of the client, whether the roles are known)."""
        for key in (True, False):
            view = self.views.get(key)
            if view and view.client_hellos:
                return key, True
        for key in (True, False):
            view = self.views.get(key)
            if view and view.server_hellos:
                return not key, True
        return True, False

    def want(self, forward: bool) -> int | None:
        """How many bytes of direction ``forward`` are needed; None when that side is settled.

        Past the hellos, both directions are read on (``FLIGHT_STEP`` more bytes at a time)
        until the flight columns are decided."""
        need = self._hello_want(forward)
        view = self.views.get(forward)
        if need is not None or view is None or view.capped:
            return need
        return None if self.flight_columns(final=False)[1] else len(view.data) + FLIGHT_STEP

    def flight_columns(self, *, final: bool) -> tuple[dict[str, object], bool]:
        """``sh_session_id_echoed``, ``resumed`` and the flight columns (:mod:`.records`' rules),
        and whether they are decided (``final``: nothing more will be read)."""
        views = (self.views.get(True), self.views.get(False))
        read = tuple(None if v is None else v.data for v in views)
        memo = self.memo
        holes = tuple(v is not None and v.hole for v in views)
        if memo is not None and memo[0] == (final, holes) and all(a is b for a, b in zip(memo[1], read, strict=True)):
            return memo[2]
        answer = self._flight_columns(final=final)
        self.memo = ((final, holes), read, answer)
        return answer

    def _flight_columns(self, *, final: bool, read_records: bool = True) -> tuple[dict[str, object], bool]:
        """See :meth:`flight_columns`; ``truncated`` too (:func:`.records.truncated_places`): which
        direction's flight is missing because its records were cut, only when both hellos were read
        (a hello not read is the ``incomplete`` column's). ``read_records=False`` (QUIC, DTLS): session columns."""
        client_key, _ = self._roles()
        client, server = self.views.get(client_key), self.views.get(not client_key)
        if server is None or not server.server_hellos or server.server_hellos[-1].is_hello_retry_request:
            return {}, True
        sh = server.server_hellos[-1]
        ch = client.client_hellos[-1] if client is not None and client.client_hellos else None
        out: dict[str, object] = {}
        echoed = None if ch is None else bool(sh.session_id) and sh.session_id == ch.session_id
        out["sh_session_id_echoed"] = echoed
        if not read_records:  # no record stream to walk
            return {**out, "resumed": (41 in sh.extensions) if sh.version == TLS13 else (echoed or None)}, True
        if sh.version == TLS13:
            out["resumed"] = 41 in sh.extensions
            if client is None:
                return out, True
            s_rec = walk_stream(server.data, server.starts, server.arrivals, final=final, capped=server.capped,
                                record_max=MAX_RECORD_LENGTH, hole=server.hole)
            c_rec = walk_stream(client.data, client.starts, client.arrivals, final=final, capped=client.capped,
                                record_max=MAX_RECORD_LENGTH, hole=client.hole)
            s_first, c_first = after_hellos(s_rec.ctype), after_hellos(c_rec.ctype)
            t_hello = s_rec.arrival[s_first - 1] if s_first > 0 else -1
            flights = tls13_flights(single(*s_rec[:3]), single(*c_rec[:3]), np.array([s_first]),
                                    np.array([c_first]), np.array([t_hello]))
            decided = True
            places: list[str | None] = []
            for name, sizes, walk in zip(("server", "client"), flights, (s_rec, c_rec), strict=True):
                known = bool(sizes.known[0])
                items = tuple(sizes.size.tolist())  # one connection: its sizes, in order
                out[f"{name}_flight"] = items if known else None
                out[f"{name}_flight_bytes"] = sum(items) if known else None
                decided &= known
                cut = ch is not None and walk.cut and not known  # records.flight_cut, for one connection
                places.append(f"{name}_flight" if cut else None)
            out["truncated"] = truncated_places(*places)
            return out, decided
        s_read = handshake_sizes(server.data, hole=server.hole)
        s_sizes = s_read.sizes
        s_known = (s_read.done or s_read.ccs) and 1 <= len(s_sizes) <= MAX_FLIGHT_ITEMS
        abbreviated = s_read.ccs and len(s_sizes) == 1
        out["resumed"] = True if echoed else (abbreviated if s_known else None)
        if s_known:
            out["server_flight"], out["server_flight_bytes"] = tuple(s_sizes[1:]), sum(s_sizes[1:])
        s_place = c_place = None
        if ch is not None and not s_known and s_read.cut and not server.capped:
            # The certificate was lost with the cut unless it had been read (or a resumed session sent none).
            s_place = "server_flight" if server.certificates or echoed else "server_chain"
        c_known = False
        if client is not None:
            c_read = handshake_sizes(client.data, hole=client.hole)
            c_sizes = c_read.sizes
            c_known = c_read.ccs and 1 <= len(c_sizes) <= MAX_FLIGHT_ITEMS
            if c_known:
                out["client_flight"], out["client_flight_bytes"] = tuple(c_sizes[1:]), sum(c_sizes[1:])
            if ch is not None and not c_known and c_read.cut and not client.capped:
                asked = server.certificate_request and not client.certificates
                c_place = "client_chain" if asked else "client_flight"
        out["truncated"] = truncated_places(s_place, c_place)
        return out, bool(s_known and c_known) or client is None

    def _hello_want(self, forward: bool) -> int | None:
        view = self.views.get(forward)
        if view is None:
            return 5
        client_key, known = self._roles()
        if view.stop in ("not_tls", "alert", "limit", "encrypted") or view.errors:
            return None
        if not known:
            return view.next_need
        if forward == client_key:
            if not view.client_hellos:
                return view.next_need
            server = self.views.get(not client_key)
            if server is None:
                # No server side captured: keep reading, a second ClientHello may follow.
                return view.next_need if len(view.client_hellos) < 2 else None
            hrr = bool(server.server_hellos) and server.server_hellos[0].is_hello_retry_request
            if hrr and len(view.client_hellos) < 2:
                return view.next_need
            tls13 = bool(server.server_hellos) and server.server_hellos[-1].version == TLS13
            if server.certificate_request and not tls13 and not view.certificates:
                return view.next_need
            return None
        if not view.server_hellos:
            return view.next_need
        first = view.server_hellos[0]
        if first.is_hello_retry_request and len(view.server_hellos) < 2:
            return view.next_need
        if view.server_hellos[-1].version == TLS13 or view.server_hello_done or view.change_cipher_spec:
            return None
        return view.next_need

    def incomplete(self) -> str | None:
        """The ``incomplete`` column: None when the hellos (and a TLS <= 1.2 chain) were read
        whole, else where reading gave up. A direction never seen is a vantage point, not a give-up,
        except for a missing ClientHello: its fingerprints are the row's point."""
        client_key, _ = self._roles()
        client, server = self.views.get(client_key), self.views.get(not client_key)
        if client is None or not client.client_hellos:
            return gave_up(client)
        if server is None:
            return None
        if not server.server_hellos:
            return gave_up(server)
        if server.capped and not server.certificates and self._hello_want(not client_key) is not None:
            return "depth_exceeded"  # the chain went past the reassembly depth
        return None

    def settled(self) -> bool:
        _, known = self._roles()
        return known and all(self.want(k) is None for k in (True, False) if k in self.views) and len(
            self.views
        ) == 2

    def row(self, *, records: bool = True) -> dict[str, object]:
        """The connections-table row (hello lists included, fingerprints added later); ``records=False``: no flights."""
        client_key, _ = self._roles()
        client = self.views.get(client_key)
        server = self.views.get(not client_key)
        c_end, s_end = (self.a, self.b) if client_key else (self.b, self.a)
        row: dict[str, object] = {
            "ts": self.ts_ns,
            "client_ip": c_end.ip,
            "client_port": c_end.port,
            "server_ip": s_end.ip,
            "server_port": s_end.port,
            "transport": "tcp",
        }
        offered: int | None = None
        row["incomplete"] = self.incomplete()
        if client and client.client_hellos:
            ch = client.client_hellos[0]
            row["ch_records"] = first_message_records(client.data)
            row["sni"] = ch.sni
            row.update(client_hello_columns(ch))
            real = [v for v in ch.supported_versions if (v & 0x0F0F) != 0x0A0A]
            offered = max(real) if real else ch.legacy_version
            if len(client.client_hellos) > 1:  # only a HelloRetryRequest makes a client say hello twice
                row["retry_hello"] = client.client_hellos[1]
                row["hello_retry"] = True
            if client.certificates:
                leaf = client.certificates[0]
                row.update(
                    peer_subject=leaf.subject,
                    peer_issuer=leaf.issuer,
                    peer_issuer_akid=leaf.akid,
                    peer_cert_sha256=leaf.sha256,
                    peer_spki_sha256=leaf.spki,
                )
        negotiated: int | None = None
        if server and server.server_hellos:
            sh = server.server_hellos[0]
            row.update(server_hello_columns(sh))
            row["hello_retry"] = sh.is_hello_retry_request or bool(row.get("hello_retry"))
            negotiated = server.server_hellos[-1].version
            if server.certificates:
                leaf = server.certificates[0]
                row.update(
                    server_subject=leaf.subject,
                    server_issuer=leaf.issuer,
                    server_issuer_akid=leaf.akid,
                    server_cert_sha256=leaf.sha256,
                    server_spki_sha256=leaf.spki,
                    server_chain=chain_json(server.certificates),
                )
        version = negotiated if negotiated is not None else offered
        if version is not None:
            row["tls_version"] = version_name(version)
        flights = self.flight_columns(final=True) if records else self._flight_columns(final=True, read_records=False)
        row.update(flights[0])
        return row
