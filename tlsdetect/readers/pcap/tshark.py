"""The tshark engine: Wireshark's dissection -> the same connections table as the native engine.

Why a second engine: it is the independent cross-check of the native pcap engine (Wireshark
reassembles TCP, TLS records, QUIC CRYPTO frames and DTLS fragments with code that shares
nothing with ours), and it is how tlsdetect reads QUIC (tshark decrypts QUIC Initial packets)
and DTLS hellos, which the native engine does not read yet.

How: a Lua listener run inside tshark (:mod:`.tshark_frames`; ``tshark -q -X lua_script:...``)
prints one line per frame that carries a Client- or ServerHello or a Certificate, with the
bytes of every handshake message Wireshark assembled (the ``tls.handshake`` / ``dtls.handshake``
items; for a message reassembled from several TCP
segments, TLS records or QUIC CRYPTO frames, in any order, the raw value is the whole message,
beside the pieces it was built from). DTLS fragments are joined here, by message_seq, because
Wireshark gives up on retransmitted fragments. Those bytes go
through the same parsers (:mod:`tlsdetect.wire.tls`) and the same row rendering
(:class:`.tls_stream.Connection`) as the native engine, so the two engines differ only in
dissection, reassembly and decryption; fingerprints come from the stage after reading
(:func:`tlsdetect.fingerprint.enrich`), never from tshark's own ``ja3`` fields (those are the
oracle in the tests). :func:`iter_tshark` is the reader; :func:`read_pcap_tshark` adds the stage.

The output is read line by line while tshark runs, so memory holds one frame's line plus one
small state per connection (about the size of its row), never the whole dissection.

The server's and the client's flights (``server_flight``, ``client_flight``, ``resumed``; see
:mod:`tlsdetect.schema`) come from the TLS records tshark reassembled, in wire order: the
listener prints each ``tls.record`` item's bytes (a plaintext record whole, an encrypted one's
5-byte header) in tree order, which is stream order and which tshark's per-field lists
(``tls.record.content_type`` beside ``tls.record.opaque_type``) do not keep. Each
direction's records are laid end to end (an encrypted record's body, never printed in full, as
zeros of its length) and read by the native engine's own rules (:meth:`.Connection.row`, through
:mod:`.records`), so the engines differ only in which records they saw and when. Frames with
records are printed only up to relative sequence number 65536 (``_FLIGHT_HORIZON``): past it a
direction's records are unknown, and a flight that would end in the last record-length before
the horizon is missing rather than guessed. QUIC and DTLS flights stay missing.

Known, deliberate differences from the native engine: ``ts`` is the time of the frame in which
the ClientHello was complete (the native engine takes the first segment of the first record);
a record's capture position is the frame that completed it (the native engine takes the segment
with its first byte), which moves a flight's boundary only when a record is still arriving while
the other side answers; flights ending past ~47 KiB of the TCP stream are missing here (the
native engine reads 256 KiB); and for DTLS a second ClientHello (the answer to a
HelloVerifyRequest) is not a HelloRetryRequest.

Size: one module for one engine: the per-connection assembler and the process handling only
serve each other (the listener and its line format are in :mod:`.tshark_frames`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pandas as pd

from tlsdetect import schema
from tlsdetect.fingerprint import client_fingerprints, enrich
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.keylog_rows import KEYLOG_COLUMN, count, tshark_status
from tlsdetect.readers.pcap.tls_stream import Connection, DirectionView, Endpoint, reassemble
from tlsdetect.readers.pcap.tshark_frames import END_MARK, START_MARK, Frame, lua_script, parse_line
from tlsdetect.readers.pcap.udp_rows import udp_row
from tlsdetect.wire.keylog import KeyLog
from tlsdetect.wire.quic_tp import transport_parameters
from tlsdetect.wire.tls import (
    HANDSHAKE_CERTIFICATE,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    MAX_HANDSHAKE_LENGTH,
    MAX_RECORD_LENGTH,
    ClientHello,
    TLSParseError,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
)
from tlsdetect.wire.tls13_flight import parse_certificate13

__all__ = ["TsharkError", "iter_tshark", "read_pcap_tshark", "tshark_command"]

log = logging.getLogger(__name__)

#: Relative TCP sequence number past which frames with TLS records are not printed: the flights
#: are in the first few KiB, and an HTTPS download would otherwise print every record in hex.
_FLIGHT_HORIZON = 65536
#: A direction whose records reach past this may have had a record cut off by the horizon (a
#: record ending past it completes in a frame that is not printed), so its end is not "quiet".
_SURE_UNTIL = _FLIGHT_HORIZON - (5 + MAX_RECORD_LENGTH)
#: Records kept per direction: the flight rules walk at most :data:`.records.MAX_RECORDS`.
_MAX_RECORDS = 64
_HANDSHAKE_FRAMES = " || ".join(f"{proto}.handshake.type == {t}" for proto in ("tls", "dtls") for t in (1, 2, 11))
_RECORD_FRAMES = " || ".join(
    [*(f"tls.record.content_type == {t}" for t in (20, 21, 22)), "tls.record.opaque_type == 23"]
)
#: Frames worth printing: hellos and certificates anywhere, and frames completing a handshake,
#: ChangeCipherSpec, alert or TLS 1.3 encrypted record before the horizon (the flights).
#: Spelled with ``==``: tshark 4.0 rejects the 3.x set syntax ``in {1 2 11}``.
DISPLAY_FILTER = f"{_HANDSHAKE_FRAMES} || (({_RECORD_FRAMES}) && tcp.seq < {_FLIGHT_HORIZON})"
#: Preferences pinned so a user's Wireshark profile cannot switch reassembly off.
PREFERENCES = (
    "tcp.desegment_tcp_streams:TRUE",
    "tls.desegment_ssl_records:TRUE",
    "tcp.reassemble_out_of_order:TRUE",
)
#: Record content types kept whole: the TLS <= 1.2 flights count handshake messages across records.
_PLAINTEXT_TYPES = frozenset({20, 21, 22})
_WANTED = (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO, HANDSHAKE_CERTIFICATE)
_TLS13 = 0x0304
_DTLS_HEADER = 12
#: DTLS message_seq values worth joining: hellos and certificates are in the first flights, and
#: the bound keeps a hostile capture from parking fragments of thousands of messages.
_DTLS_MAX_SEQ = 16
_DTLS_MAX_PARTS = 64
#: Lines of tshark's stderr that are chatter, not the reason it failed.
_STDERR_NOISE = ("Running as user",)
#: tshark errors that end a file part-way; what was read before them is kept.
_PARTIAL_ERRORS = ("cut short in the middle of a packet", "appears to be damaged or corrupt")
_STDERR_LIMIT = 64 * 1024


class TsharkError(RuntimeError):
    """tshark is missing or could not read a file; the message is tshark's own, in one line."""


# ---------------------------------------------------------------------------------------------
# Handshake messages of one connection


def _tls_message(raw: bytes) -> tuple[int, bytes] | None:
    """(type, body) of a complete TLS handshake message; None for a fragment Wireshark also shows.

    Wireshark lists the per-record or per-CRYPTO-frame pieces of a reassembled message next to
    the message itself; only a value whose length field covers it exactly is a whole message.
    """
    if len(raw) < 4 or raw[0] not in _WANTED:
        return None
    if int.from_bytes(raw[1:4], "big") != len(raw) - 4:
        return None
    return raw[0], raw[4:]


@dataclass(frozen=True, slots=True)
class _DtlsFragment:
    msg_type: int
    length: int
    seq: int
    offset: int
    data: bytes


def _dtls_fragment(raw: bytes) -> _DtlsFragment | None:
    """Split the 12-byte DTLS handshake header: type, length, message_seq, offset, fragment length."""
    if len(raw) < _DTLS_HEADER or raw[0] not in _WANTED:
        return None
    length = int.from_bytes(raw[1:4], "big")
    offset = int.from_bytes(raw[6:9], "big")
    frag_len = int.from_bytes(raw[9:12], "big")
    if len(raw) != _DTLS_HEADER + frag_len or offset + frag_len > length or length > MAX_HANDSHAKE_LENGTH:
        return None
    return _DtlsFragment(raw[0], length, int.from_bytes(raw[4:6], "big"), offset, raw[_DTLS_HEADER:])


@dataclass(slots=True)
class _Side:
    """One direction: the parsed view plus what is needed to drop duplicates and join fragments."""

    view: DirectionView = field(default_factory=DirectionView)
    seen: set[bytes] = field(default_factory=set)  # digests of accepted messages
    dtls_done: set[int] = field(default_factory=set)  # message_seq values already complete
    dtls_parts: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    records: list[bytes] = field(default_factory=list)  # see Frame.records; b"" ends the list
    arrivals: list[int] = field(default_factory=list)  # frame number of each record
    reach: int = 0  # highest nxtseq of a frame that carried records


@dataclass(slots=True)
class _Conn:
    """Everything known about one tcp.stream / udp.stream."""

    transport: str  # tcp / quic / dtls
    stream: int
    conn: Connection
    first_sender: tuple[str, int]  # (ip, port) as tshark spells it: the ``a`` side of ``conn``
    sides: dict[bool, _Side] = field(default_factory=dict)
    hello_ts: int | None = None
    random: bytes | None = None  # the first ClientHello's (``--keylog`` looks it up)
    params: str | None = None  # QUIC: the ``quic_transport_params`` column

    def side(self, forward: bool) -> _Side:
        if forward not in self.sides:
            self.sides[forward] = _Side()
            self.conn.views[forward] = self.sides[forward].view
        return self.sides[forward]

    def tls13(self) -> bool:
        """Whether a ServerHello negotiated TLS 1.3 (QUIC always does): its certificates are encrypted."""
        if self.transport == "quic":
            return True
        return any(sh.version == _TLS13 for s in self.sides.values() for sh in s.view.server_hellos)


def _endpoint(ip: str, port: int) -> Endpoint:
    """The native engine's endpoint encoding: IPv4 as IPv4-mapped IPv6, split in two 64-bit halves."""
    addr = ipaddress.ip_address(ip)
    value = (0xFFFF << 32) | int(addr) if addr.version == 4 else int(addr)
    return Endpoint(value >> 64, value & 0xFFFFFFFFFFFFFFFF, port)


def _transport(proto: str, frame: Frame) -> str | None:
    """The connections-table transport of a message: dtls, quic, tcp, or None for TLS in UDP elsewhere."""
    if proto == "dtls":
        return "dtls"
    if frame.quic:
        return "quic"
    return "tcp" if frame.l4 == "tcp" else None


class _Assembler:
    """Frames of one file -> connection states; :meth:`rows` renders them."""

    def __init__(self, source: str, stats: ReadStats, keylog: KeyLog | None = None) -> None:
        self.source = source
        self.stats = stats
        self.keylog = keylog
        self.conns: dict[tuple[str, int], _Conn] = {}

    def add(self, frame: Frame) -> None:
        counts = self.stats.counts
        counts["frames"] += 1
        for proto, raw in frame.messages:
            transport = _transport(proto, frame)
            if transport is None:
                # TLS carried over UDP but not in QUIC (EAP-TLS in RADIUS, ...): no transport letter fits.
                counts["skipped_messages"] += 1
                continue
            conn = self._conn(frame, transport)
            forward = (frame.src, frame.sport) == conn.first_sender
            if proto == "dtls":
                self._add_dtls(conn, forward, frame, raw)
            else:
                message = _tls_message(raw)
                if message is not None:
                    self._accept(conn, forward, frame, *message)
        if frame.records:
            self._add_records(frame)

    def _add_records(self, frame: Frame) -> None:
        """Keep a TCP frame's records for its connection (one that has a hello message already:
        a stream caught mid-way has no flight to measure)."""
        conn = self.conns.get(("tcp", frame.stream))
        if conn is None or conn.transport != "tcp":
            return
        side = conn.side((frame.src, frame.sport) == conn.first_sender)
        side.reach = max(side.reach, frame.nxtseq)
        for record in frame.records:
            if len(side.records) >= _MAX_RECORDS or (side.records and not side.records[-1]):
                return  # enough, or a record not understood: nothing after it is placed
            side.records.append(record)
            side.arrivals.append(frame.number)

    def _conn(self, frame: Frame, transport: str) -> _Conn:
        key = (frame.l4, frame.stream)
        conn = self.conns.get(key)
        if conn is None:
            src, dst = _endpoint(frame.src, frame.sport), _endpoint(frame.dst, frame.dport)
            connection = Connection(a=src, b=dst, ts_ns=frame.ts_ns)
            conn = _Conn(transport, frame.stream, connection, (frame.src, frame.sport))
            self.conns[key] = conn
        return conn

    def _add_dtls(self, conn: _Conn, forward: bool, frame: Frame, raw: bytes) -> None:
        """Join DTLS fragments by message_seq; a sequence number already complete is a retransmission."""
        frag = _dtls_fragment(raw)
        side = conn.side(forward)
        if frag is None or frag.seq in side.dtls_done or frag.seq >= _DTLS_MAX_SEQ:
            return
        parts = side.dtls_parts.setdefault(frag.seq, [])
        if len(parts) >= _DTLS_MAX_PARTS:
            return
        parts.append((frag.offset, frag.data))
        body = reassemble(parts, frag.length)
        if len(body) < frag.length:
            return
        side.dtls_done.add(frag.seq)
        del side.dtls_parts[frag.seq]
        self._accept(conn, forward, frame, frag.msg_type, body)

    def _accept(self, conn: _Conn, forward: bool, frame: Frame, msg_type: int, body: bytes) -> None:
        """Parse one whole message into its direction's view (duplicates are retransmissions)."""
        side = conn.side(forward)
        digest = hashlib.blake2b(bytes([msg_type]) + body, digest_size=16).digest()
        if digest in side.seen:
            return
        side.seen.add(digest)
        self.stats.counts["handshake_messages"] += 1
        view = side.view
        try:
            if msg_type == HANDSHAKE_CLIENT_HELLO:
                view.client_hellos.append(parse_client_hello(body, dtls=conn.transport == "dtls"))
                if conn.transport == "quic" and conn.params is None:
                    conn.params = transport_parameters(body)
                if conn.hello_ts is None:
                    conn.hello_ts = frame.ts_ns
                    conn.random = body[2:34]
            elif msg_type == HANDSHAKE_SERVER_HELLO:
                view.server_hellos.append(parse_server_hello(body))
            elif msg_type == HANDSHAKE_CERTIFICATE and not view.certificates and not conn.tls13():
                view.certificates = parse_certificate(body)
            elif msg_type == HANDSHAKE_CERTIFICATE and not view.certificates and self._keyed(conn):
                # TLS 1.3's is encrypted: seen when tshark decrypted it, in 1.3's framing; taken only with
                # the key log's secret (tshark also uses a pcapng's own Decryption Secrets Block, which the
                # native engine does not read: the engines stay equal)
                view.certificates = parse_certificate13(body)
        except TLSParseError as exc:
            self.stats.counts["parse_errors"] += 1
            view.errors.append(f"frame {frame.number}: handshake type {msg_type}: {exc}")

    def _keyed(self, conn: _Conn) -> bool:
        """Whether ``--keylog`` holds a handshake secret for the connection's ClientHello random."""
        log = self.keylog
        return log is not None and conn.random is not None and (conn.random in log.server_hs
                                                                  or conn.random in log.client_hs)

    def rows(self) -> list[dict[str, object]]:
        out = []
        for conn in self.conns.values():
            views = [s.view for s in conn.sides.values()]
            if not any(v.client_hellos or v.server_hellos for v in views):
                continue
            row = _render(conn, self.source)
            if self.keylog is not None and conn.transport == "tcp" and conn.tls13():
                row[KEYLOG_COLUMN] = tshark_status(row.get("server_chain") is not None, conn.random, self.keylog,
                                                   row.get("resumed"))  # type: ignore[arg-type]
                count(self.stats, str(row[KEYLOG_COLUMN]))
            out.append(row)
        return out


def _lay_out(side: _Side) -> None:
    """A direction's records end to end, as the native engine's reassembled stream: an encrypted
    record's body as zeros of its length (only its length is read), each record's capture
    position its frame number. ``capped`` when records past the horizon may be missing."""
    records = side.records
    broken = bool(records) and not records[-1]
    if broken:
        records = records[:-1]
    parts = [r if len(r) > 5 or r[0] in _PLAINTEXT_TYPES else r + bytes(int.from_bytes(r[3:5], "big")) for r in records]
    starts, pos = [], 0
    for part in parts:
        starts.append(pos)
        pos += len(part)
    view = side.view
    view.data, view.starts, view.arrivals = b"".join(parts), starts, side.arrivals[: len(parts)]
    view.capped = broken or len(side.records) >= _MAX_RECORDS or side.reach > _SURE_UNTIL


def _render(conn: _Conn, source: str) -> dict[str, object]:
    """The row, rendered by the native engine's :meth:`Connection.row` plus what only we know."""
    if conn.hello_ts is not None:
        conn.conn.ts_ns = conn.hello_ts
    if conn.transport == "tcp":
        for side in conn.sides.values():
            _lay_out(side)
    if conn.transport != "tcp":
        row = udp_row(conn.conn, conn.transport)
        row["quic_transport_params"] = conn.params
    else:
        row = conn.conn.row()
        retry = row.pop("retry_hello", None)
        if isinstance(retry, ClientHello):
            fps = client_fingerprints("t", retry)
            row["ja3_retry"], row["ja4_retry"] = fps.ja3, fps.ja4
    row["conn_id"] = f"{source}#{conn.transport}{conn.stream}"
    return row


# ---------------------------------------------------------------------------------------------
# Running tshark


def tshark_command(tshark: str, path: str | os.PathLike[str], script: str | os.PathLike[str],
                   keylog: str | None = None) -> list[str]:
    """The command line: no output of tshark's own (``-q``), the listener ``script`` prints the
    frames (see :mod:`.tshark_frames`); ``keylog``: Wireshark decrypts TLS 1.3 handshakes with it."""
    cmd = [tshark, "-n", "-q", "-r", os.fspath(path), "-X", f"lua_script:{os.fspath(script)}"]
    for pref in PREFERENCES:
        cmd += ["-o", pref]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    return cmd


def _resolve(tshark: str) -> str:
    found = shutil.which(tshark)
    if found is None:
        raise TsharkError("tshark not found; install Debian package tshark")
    return found


def _stderr_message(raw: bytes) -> str:
    """tshark's reason in one line: its first ``tshark:`` line, else its last meaningful line."""
    lines = [
        ln.strip()
        for ln in raw.decode("utf-8", "replace").splitlines()
        if ln.strip() and not ln.strip().startswith(_STDERR_NOISE)
    ]
    for ln in lines:
        if ln.startswith("tshark:"):
            return ln
    return lines[-1] if lines else ""


@dataclass(slots=True)
class _Listener:
    """What the listener's own lines said: whether it started, and whether it saw the file through."""

    started: bool = False
    ended: bool = False


def _frames(stdout: IO[bytes], stats: ReadStats, name: str, listener: _Listener) -> Iterator[Frame]:
    """Parse the listener's lines as they arrive (see :func:`.tshark_frames.parse_line`)."""
    for raw in stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line == START_MARK:
            listener.started = True
            continue
        if line == END_MARK:
            listener.ended = True
            continue
        frame = parse_line(line) if listener.started else None
        if frame is None:
            if line:
                stats.counts["unreadable_lines"] += 1
            continue
        yield frame


_SCRIPT_LOCK = threading.Lock()
_SCRIPT: list[str] = []


def _script() -> str:
    """The listener written once per process to a private temporary file (tshark reads a path)."""
    with _SCRIPT_LOCK:
        if not _SCRIPT or not os.path.exists(_SCRIPT[0]):
            fd, path = tempfile.mkstemp(prefix="tlsdetect-", suffix=".lua")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(lua_script(DISPLAY_FILTER))
            atexit.register(_remove, path)
            _SCRIPT[:] = [path]
        return _SCRIPT[0]


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_file(tshark: str, path: str | os.PathLike[str], keylog: KeyLog | None = None
               ) -> tuple[list[dict[str, object]], ReadStats]:
    """Run tshark over one file and turn its frames into rows, while it is still printing them.

    Counts: ``frames``, ``handshake_messages``, ``skipped_messages``, ``parse_errors``,
    ``unreadable_lines`` (output lines that are not a frame), ``connections``.
    """
    name = Path(path).name
    stats = ReadStats(files=1)
    assembler = _Assembler(name, stats, keylog)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                tshark_command(tshark, path, _script(), None if keylog is None else keylog.path),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            )
        except OSError as exc:
            raise TsharkError(f"cannot run {tshark}: {exc.strerror or exc}") from None
        assert proc.stdout is not None
        finished = False
        listener = _Listener()
        try:
            for frame in _frames(proc.stdout, stats, name, listener):
                assembler.add(frame)
            finished = True
        finally:
            if not finished:  # an error or an interrupt here: nobody will read the rest
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        message = _stderr_message(err.read(_STDERR_LIMIT))
    if code != 0:
        if not any(p in message for p in _PARTIAL_ERRORS):
            raise TsharkError(message or f"tshark exited with status {code} reading {name}")
        stats.warnings.append(f"{name}: {message}; read up to the damage")
        log.warning("%s: %s", name, message)
    elif not listener.ended:  # tshark carries on after a Lua error, with status 0
        raise TsharkError(f"tshark's Lua listener did not run through {name}: {message or 'no reason given'}")
    rows = assembler.rows()
    stats.counts["connections"] = stats.rows = len(rows)
    return rows, stats


def _to_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    if not rows:
        return schema.empty()
    df = pd.DataFrame.from_records(rows)
    df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="ns", utc=True)
    df["source"] = "pcap"
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    return schema.conform(df)


def _map_files(
    exe: str, files: list[str | os.PathLike[str]], workers: int, keylog: KeyLog | None = None
) -> Iterator[tuple[list[dict[str, object]], ReadStats]]:
    """Results in file order; with several workers, tshark processes overlap their start-up."""
    if workers == 1 or len(files) <= 1:
        for path in files:
            yield _read_file(exe, path, keylog)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield from pool.map(lambda p: _read_file(exe, p, keylog), files)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed file stops the files not started


def iter_tshark(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    stats: ReadStats | None = None,
    tshark: str = "tshark",
    jobs: int | None = None,
    keylog: KeyLog | None = None,
) -> Iterator[pd.DataFrame]:
    """The handshakes of each capture file through tshark, one table per file (not enriched).

    One row per tcp.stream / udp.stream with a Client- or ServerHello, in the connections-table
    shape of :func:`tlsdetect.readers.pcap.engine.iter_connections`; tables in the order of
    ``paths``, rows in time order. Raises :class:`TsharkError` when tshark is missing or cannot
    read a file; a file cut short keeps what came before the damage, with a warning in
    ``stats.warnings``.

    ``jobs`` tshark processes run at once (default: up to 4, one per CPU), because for small
    files tshark's ~0.3 s start-up, not the dissection, is most of the time.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = list(paths)
    exe = _resolve(tshark)
    workers = max(1, jobs if jobs is not None else min(4, os.cpu_count() or 1))
    total = stats if stats is not None else ReadStats()
    if keylog is not None and keylog.path is None:
        raise TsharkError("the tshark engine needs the key log as a file (KeyLog.path)")
    for rows, part in _map_files(exe, files, workers, keylog):
        total.merge(part)
        if rows:
            yield _to_frame(rows)


def read_pcap_tshark(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    tshark: str = "tshark",
    jobs: int | None = None,
    keylog: KeyLog | None = None,
) -> tuple[pd.DataFrame, ReadStats]:
    """Fingerprint every TLS, QUIC and DTLS handshake in capture files through tshark.

    :func:`iter_tshark` with the enrichment stage, as one table, and what was read.
    """
    total = ReadStats()
    frames = [enrich(df) for df in iter_tshark(paths, stats=total, tshark=tshark, jobs=jobs, keylog=keylog)]
    if not frames:
        return schema.empty(), total
    return (frames[0] if len(frames) == 1 else schema.concat(frames)), total
