"""TCP reassembly: :func:`tlsdetect.readers.pcap.tls_stream.reassemble` as a pure function, and the whole
native engine (:func:`read_pcap`) on real handshakes re-segmented, reordered, retransmitted and
overlapped by hypothesis.

The real byte streams are taken at test time from the reference corpus with tshark's
``follow,tcp,raw`` (independent of our reader); the expected fingerprints are the corpus's, and
the certificate hash is SHA-256 of the DER that tshark dissects.
"""

from __future__ import annotations

import atexit
import hashlib
import ipaddress
import itertools
import random
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tls_stream import _ip, conflicting_segments, reassemble, reassemble_runs

from .conftest import REFERENCE, expected_ja3, expected_ja4, needs_reference
from .craft import hypothesis_examples, tcp_conversation

# -- reassemble(): the pure function ------------------------------------------------------------------


def oracle(segments: list[tuple[int, bytes]], limit: int) -> bytes:
    """What reassembly must give, position by position.

    Byte ``p`` comes from the segment covering it with the lowest start, then the earliest arrival;
    the result is the run of covered positions from 0, cut at ``limit``.
    """
    out = bytearray()
    p = 0
    while p < limit:
        covering = [(rel, i, data) for i, (rel, data) in enumerate(segments) if rel <= p < rel + len(data)]
        if not covering:
            break
        rel, _, data = min(covering, key=lambda c: (c[0], c[1]))
        out.append(data[p - rel])
        p += 1
    return bytes(out)


@st.composite
def segmentations(draw: st.DrawFn, max_size: int = 400) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A byte string, cut into segments, plus retransmissions and overlapping segments, shuffled."""
    data = draw(st.binary(min_size=0, max_size=max_size))
    n = len(data)
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=40)) if n > 1 else set())
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    segs = [(a, data[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    if segs:
        segs += [segs[i] for i in draw(st.lists(st.integers(0, len(segs) - 1), max_size=10))]  # retransmissions
    if n:
        for a, length in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 64)), max_size=10)):
            segs.append((a, data[a : a + length]))  # overlapping (re-segmented) retransmissions
    order = draw(st.permutations(range(len(segs))))
    return data, [segs[i] for i in order]


SETTINGS = settings(max_examples=hypothesis_examples(100), deadline=None)


@SETTINGS
@given(case=segmentations())
def test_reassemble_returns_the_original_bytes(case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    data, segs = case
    assert reassemble(segs, limit=len(data) + 100) == data
    assert reassemble(segs, limit=10**9) == data


@SETTINGS
@given(case=segmentations(), limit=st.integers(0, 500))
def test_reassemble_stops_at_the_limit(case: tuple[bytes, list[tuple[int, bytes]]], limit: int) -> None:
    data, segs = case
    assert reassemble(segs, limit=limit) == data[:limit]


@SETTINGS
@given(case=segmentations(), hole=st.integers(0, 10**6))
def test_reassemble_stops_at_a_gap(case: tuple[bytes, list[tuple[int, bytes]]], hole: int) -> None:
    data, segs = case
    assume(len(data) > 0)
    hole %= len(data)
    kept = [(rel, d) for rel, d in segs if not rel <= hole < rel + len(d)]
    got = reassemble(kept, limit=10**9)
    assert len(got) <= hole
    assert got == data[: len(got)]
    assert got == oracle(kept, 10**9)


@SETTINGS
@given(
    segs=st.lists(st.tuples(st.integers(0, 60), st.binary(max_size=30)), max_size=12),
    limit=st.integers(0, 100),
)
def test_reassemble_conflicting_retransmissions(segs: list[tuple[int, bytes]], limit: int) -> None:
    """Overlaps whose bytes differ: the lower sequence number wins, then the earlier arrival."""
    assert reassemble(segs, limit=limit) == oracle(segs, limit)


@SETTINGS
@given(case=segmentations())
def test_segments_of_one_stream_never_conflict(case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    # any split, order and retransmission of the same bytes: no conflict
    data, segs = case
    runs = [(rel, d, i) for i, (rel, d) in enumerate(segs)]
    got, _, _ = reassemble_runs(runs, 10**9)
    assert got == data
    assert conflicting_segments(runs, got) == 0


@SETTINGS
@given(case=segmentations(), at=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_an_overlap_with_other_bytes_is_counted(case: tuple[bytes, list[tuple[int, bytes]]], at: int,
                                                flip: int) -> None:
    data, segs = case
    assume(len(data) > 0)
    at %= len(data)
    forged = bytes([data[at] ^ flip])
    runs = [(rel, d, i) for i, (rel, d) in enumerate(segs)] + [(at, forged, len(segs))]  # arrives last
    got, _, _ = reassemble_runs(runs, 10**9)
    # the earlier arrival won, so the forged byte is the one that differs: exactly one conflict
    assert got == data
    assert conflicting_segments(runs, got) == 1
    # only the first ``limit`` bytes are compared (the handshake's): a forged byte past them is not counted
    assert conflicting_segments(runs, got, limit=at) == 0
    assert conflicting_segments(runs, got, limit=at + 1) == 1


def test_reassemble_examples() -> None:
    assert reassemble([], 100) == b""
    assert reassemble([(3, b"def"), (0, b"abc")], 100) == b"abcdef"
    assert reassemble([(0, b"abc"), (4, b"efg")], 100) == b"abc"  # gap at 3
    assert reassemble([(1, b"bcd")], 100) == b""  # nothing at 0
    assert reassemble([(0, b"abcdef"), (2, b"XY")], 100) == b"abcdef"
    assert reassemble([(2, b"XY"), (0, b"ab"), (2, b"cd")], 100) == b"abXY"  # earlier arrival wins
    assert reassemble([(0, b"abcdef")], 4) == b"abcd"


# -- real streams from the corpus ---------------------------------------------------------------------


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def _tshark(*args: str) -> str:
    return subprocess.run(["tshark", "-n", *args], capture_output=True, text=True, check=True).stdout


def records_prefix(stream: bytes) -> bytes:
    """The plaintext handshake records and the first ChangeCipherSpec/application-data record after
    them: what the engine needs, plus one record it must ignore."""
    pos = 0
    while pos + 5 <= len(stream):
        ctype, length = stream[pos], int.from_bytes(stream[pos + 3 : pos + 5], "big")
        pos += 5 + length
        if ctype in (20, 23):
            break
    assert pos <= len(stream)
    return stream[:pos]


@cache
def follow(name: str, tcp_stream: int) -> tuple[bytes, bytes]:
    """Client and server byte streams of one TCP conversation, reassembled by tshark."""
    out = _tshark("-r", str(REFERENCE / name), "-q", "-z", f"follow,tcp,raw,{tcp_stream}")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Node 1:")) + 1
    client, server = bytearray(), bytearray()
    for line in lines[start:]:
        if line.startswith("====="):
            break
        if line.startswith("\t"):
            server += bytes.fromhex(line.strip())
        else:
            client += bytes.fromhex(line.strip())
    return bytes(client), bytes(server)


@cache
def server_leaf_der(name: str, tcp_stream: int) -> bytes:
    out = _tshark(
        "-r", str(REFERENCE / name), "-Y", f"tcp.stream == {tcp_stream} && tls.handshake.type == 11",
        "-T", "fields", "-e", "tls.handshake.certificate",
    )
    first = out.splitlines()[0].split(",")[0]
    return bytes.fromhex(first.replace(":", ""))


#: (capture, tcp.stream) -> what the corpus expects for it
STREAMS = {
    "chrome-tls13": ("arkime_tls-split-client-hello.pcap", 0),
    "tls12-certificate": ("latest.pcapng", 3),
}


def expected_for(name: str, tcp_stream: int) -> dict[str, object]:
    (j4,) = [s for s in expected_ja4()[name]["streams"] if s["transport"] == "tcp" and s["stream"] == tcp_stream]
    (j3,) = [s for s in expected_ja3()[name]["streams"] if s["transport"] == "tcp" and s["stream"] == tcp_stream]
    return {
        "client": (j3["client"], j3["client_port"]),
        "server": (j3["server"], j3["server_port"]),
        "ja4": j4["ja4"],
        "ja3": j3["ja3"][0],
        "ja3s": j3["ja3s"][0],
        "sni": j3["sni"],
    }


@st.composite
def cut_points(draw: st.DrawFn, stream: bytes) -> list[int]:
    """Cut points: random ones, a run of 1-byte segments somewhere, and cuts inside record headers."""
    n = len(stream)
    cuts = set(draw(st.sets(st.integers(1, n - 1), max_size=25)))
    headers = []
    pos = 0
    while pos + 5 <= n:
        headers.append(pos)
        pos += 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
    for h in draw(st.lists(st.sampled_from(headers), max_size=3)):
        cuts |= set(draw(st.sets(st.integers(h, min(h + 6, n - 1)), max_size=6)))
    if draw(st.booleans()):  # 1-byte segments at the very start: the header arrives byte by byte
        cuts |= set(range(1, draw(st.integers(1, 8))))
    if draw(st.booleans()):  # a run of 1-byte segments anywhere
        a = draw(st.integers(1, n - 2))
        cuts |= set(range(a, min(a + draw(st.integers(1, 20)), n - 1)))
    return sorted(c for c in cuts if 0 < c < n)


@st.composite
def conversations(draw: st.DrawFn, client: bytes, server: bytes) -> list[tuple[bool, int, bytes]]:
    segs: list[tuple[bool, int, bytes]] = []
    for from_client, stream in ((True, client), (False, server)):
        bounds = [0, *draw(cut_points(stream)), len(stream)]
        own = [(from_client, a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
        own += [own[i] for i in draw(st.lists(st.integers(0, len(own) - 1), max_size=8))]
        for a, length in draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 300)), max_size=6)):
            own.append((from_client, a, stream[a : a + length]))
        segs += own
    rng = random.Random(draw(st.integers(0, 2**32)))
    rng.shuffle(segs)
    return segs


_TMP = Path(tempfile.mkdtemp(prefix="tlsdetect-reassembly-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


def run_engine(expected: dict[str, object], segs: list[tuple[bool, int, bytes]]) -> dict[str, object]:
    data = tcp_conversation(expected["client"], expected["server"], segs, server_isn=2**32 - 700)  # type: ignore[arg-type]
    with tempfile.NamedTemporaryFile(dir=_TMP, suffix=".pcap", delete=False) as fh:
        fh.write(data)
    path = Path(fh.name)
    try:
        frame, stats = read_pcap(path)
    finally:
        path.unlink()
    assert stats.warnings == []
    assert len(frame) == 1, frame
    return frame.iloc[0].to_dict()  # type: ignore[no-any-return]


HYPO = settings(
    max_examples=hypothesis_examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@needs_reference
@needs_tshark
def test_streams_from_tshark_are_the_handshakes() -> None:
    """The extracted streams are what the end-to-end tests assume: whole records, hello first."""
    for name, tcp_stream in STREAMS.values():
        client, server = follow(name, tcp_stream)
        assert client[:1] == b"\x16"
        assert client[5] == 1  # ClientHello
        assert server[:1] == b"\x16"
        assert server[5] == 2  # ServerHello
        assert records_prefix(client)
        assert records_prefix(server)
    exp = expected_for(*STREAMS["chrome-tls13"])
    assert (exp["ja4"], exp["ja3"], exp["ja3s"]) == (
        "t13d1516h2_8daaf6152771_02713d6af862",
        "35708a08e7be9f7aa5bce7f2d5c1cecb",
        "eb1d94daa7e0344597e756a1fb6e7054",
    )


def check_row(row: dict[str, object], expected: dict[str, object]) -> None:
    assert (row["client_ip"], row["client_port"]) == expected["client"]
    assert (row["server_ip"], row["server_port"]) == expected["server"]
    assert row["ja4"] == expected["ja4"]
    assert row["ja3"] == expected["ja3"]
    assert row["ja3s"] == expected["ja3s"]
    assert row["sni"] == expected["sni"]


@needs_reference
@needs_tshark
@pytest.mark.parametrize("which", list(STREAMS))
def test_in_order_conversation(which: str) -> None:
    """The streams in MSS-sized segments, in order: the baseline the shuffled cases vary."""
    name, tcp_stream = STREAMS[which]
    client, server = (records_prefix(s) for s in follow(name, tcp_stream))
    segs = [(True, a, client[a : a + 1400]) for a in range(0, len(client), 1400)]
    segs += [(False, a, server[a : a + 1400]) for a in range(0, len(server), 1400)]
    expected = expected_for(name, tcp_stream)
    row = run_engine(expected, segs)
    check_row(row, expected)
    if which == "tls12-certificate":
        assert row["server_cert_sha256"] == hashlib.sha256(server_leaf_der(name, tcp_stream)).hexdigest()


def _resegmented(which: str) -> None:
    name, tcp_stream = STREAMS[which]
    client, server = (records_prefix(s) for s in follow(name, tcp_stream))
    expected = expected_for(name, tcp_stream)
    cert = hashlib.sha256(server_leaf_der(name, tcp_stream)).hexdigest() if which == "tls12-certificate" else None

    @HYPO
    @given(segs=conversations(client, server))
    def check(segs: list[tuple[bool, int, bytes]]) -> None:
        row = run_engine(expected, segs)
        check_row(row, expected)
        if cert is not None:
            assert row["server_cert_sha256"] == cert

    check()


@needs_reference
@needs_tshark
def test_chrome_tls13_resegmented_reordered_retransmitted() -> None:
    _resegmented("chrome-tls13")


@needs_reference
@needs_tshark
def test_tls12_certificate_resegmented_reordered_retransmitted() -> None:
    _resegmented("tls12-certificate")


@needs_reference
@needs_tshark
def test_stray_record_lookalike_arrives_first() -> None:
    """A reordered 1-byte segment 0x16 from inside the ServerHello arrives before the real first
    segment: the direction must still start at the lowest sequence number."""
    name, tcp_stream = STREAMS["chrome-tls13"]
    client, server = (records_prefix(s) for s in follow(name, tcp_stream))
    stray = server.index(b"\x16", 1)  # a 0x16 byte inside the ServerHello body
    segs = [(True, 0, client), (False, stray, server[stray : stray + 1]), (False, 0, server)]
    expected = expected_for(name, tcp_stream)
    check_row(run_engine(expected, segs), expected)


# -- the record count and the incomplete reason of one connection ------------------------------------


@SETTINGS
@given(body=st.binary(min_size=0, max_size=3000), fragment=st.integers(1, 2**14), tail=st.binary(max_size=40))
def test_first_message_records_counts_its_records(body: bytes, fragment: int, tail: bytes) -> None:
    from tlsdetect.readers.pcap.tls_stream import first_message_records

    from .craft import handshake_message, tls_records

    msg = handshake_message(1, body)
    records = tls_records(msg, fragment)
    data = b"".join(records)
    assert first_message_records(data + tail) == len(records)
    assert first_message_records(data[:-1]) is None  # not whole yet


def test_incomplete_reasons_of_a_direction() -> None:
    from tlsdetect.readers.pcap.tls_stream import Connection, DirectionView, Endpoint, gave_up

    assert gave_up(None) == "no_client_hello"
    assert gave_up(DirectionView(capped=True)) == "depth_exceeded"
    assert gave_up(DirectionView(errors=["handshake type 1: short"])) == "malformed_hello"
    assert gave_up(DirectionView(stop="not_tls")) == "malformed_hello"
    assert gave_up(DirectionView(stop="limit")) == "message_limit"
    assert gave_up(DirectionView()) == "hello_cut"
    conn = Connection(a=Endpoint(0, 1, 1000), b=Endpoint(0, 2, 443), ts_ns=0, views={True: DirectionView()})
    assert conn.incomplete() == "hello_cut"
    assert conn.row()["incomplete"] == "hello_cut"


@given(st.integers(0, 2**32 - 1))
def test_addresses_are_spelled_as_ipaddress_does(v4: int) -> None:
    """IPv4 (stored IPv4-mapped) through inet_ntoa: the same text as the ipaddress module's."""
    assert _ip(0, 0xFFFF << 32 | v4) == str(ipaddress.IPv4Address(v4))
    assert _ip(1, v4) == str(ipaddress.IPv6Address(1 << 64 | v4))


# -- one direction read as its bytes arrive equals it read at once -----------------------------------


@st.composite
def handshake_streams(draw: st.DrawFn) -> bytes:
    """Handshake messages (a real ClientHello among junk-bodied ones) cut into records of any size, with a
    ChangeCipherSpec record at any record boundary, mid-message included (a mangled length does that)."""
    from .craft import client_hello_body, handshake_message, tls_records

    kinds = st.one_of(st.just((1, client_hello_body())),
                      st.tuples(st.sampled_from([1, 2, 11, 13, 14, 99]), st.binary(max_size=60)))
    msgs = draw(st.lists(kinds, min_size=1, max_size=5))
    records = tls_records(b"".join(handshake_message(t, b) for t, b in msgs), draw(st.integers(1, 400)))
    if draw(st.booleans()):
        records.insert(draw(st.integers(0, len(records))), b"\x14\x03\x03\x00\x01\x01")
    return b"".join(records) + draw(st.binary(max_size=8))


@SETTINGS
@given(data=handshake_streams(), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_a_direction_read_in_pieces_equals_it_read_at_once(data: bytes, cuts: list[int]) -> None:
    # A record holding a whole message and the start of the next one used to give its whole message twice
    # when read in pieces (a second ClientHello: a HelloRetryRequest that never happened).
    from tlsdetect.readers.pcap.tls_stream import DirectionView, read_direction

    view: DirectionView | None = None
    for end in [*sorted(c for c in cuts if c < len(data)), len(data)]:
        view = read_direction(data[:end], view)
    once = read_direction(data)
    assert view is not None
    fields = ("client_hellos", "server_hellos", "certificates", "certificate_request", "server_hello_done", "garbled",
              "change_cipher_spec", "stop", "errors", "consumed", "messages")
    assert {f: getattr(view, f) for f in fields} == {f: getattr(once, f) for f in fields}
