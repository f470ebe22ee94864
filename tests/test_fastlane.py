"""The fast (numpy) lane and the reassembling lane must give identical rows for every handshake."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect import schema
from tlsdetect.readers.pcap.engine import iter_pcap, read_pcap

from .conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, ROOT, needs_reference
from .craft import tcp_conversation, tls_records
from .test_tls_stream import follow, needs_tshark

CAPTURES = sorted(
    [
        *REFERENCE.glob("*.pcap*"),
        *REFERENCE.glob("*.cap"),
        *INTERCEPTION.glob("*.pcap*"),
        *PROJECT_PCAPS.glob("*.pcap*"),
    ]
)


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c != "conn_id"]
    return df[cols].astype(str).sort_values(["client_ip", "client_port", "ts"]).reset_index(drop=True)


def _assert_same(path: Path, **kwargs: object) -> int:
    fast, fast_stats = read_pcap(path, **kwargs)  # type: ignore[arg-type]
    slow, slow_stats = read_pcap(path, fast_lane=False, **kwargs)  # type: ignore[arg-type]
    assert slow_stats.counts["fast_lane_connections"] == 0
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    return fast_stats.counts["fast_lane_connections"]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_lanes_agree_on_real_captures(path: Path) -> None:
    _assert_same(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small capture from the benchmark generator: the project's real hellos, many connections,
    interleaved, some ClientHellos split over two segments."""
    out = tmp_path_factory.mktemp("lanes") / "synthetic.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"), str(PROJECT_PCAPS), "-o", str(out),
         "--connections", "3000", "--target-mb", "20", "--seed", "7", "--quiet"],
        check=True,
    )
    return out


@pytest.mark.slow
def test_lanes_agree_on_many_connections(synthetic: Path) -> None:
    taken = _assert_same(synthetic)
    assert taken > 1000  # the fast lane really took most of them


@pytest.mark.slow
def test_small_windows_and_chunks_change_nothing(synthetic: Path) -> None:
    """Windows of 64 KiB split handshakes across windows; chunks of 100 rows stream the table."""
    whole, _ = read_pcap(synthetic)
    small, _ = read_pcap(synthetic, window=64 * 1024)
    pd.testing.assert_frame_equal(_canonical(whole), _canonical(small))
    chunks = list(iter_pcap(synthetic, chunk_rows=100, window=64 * 1024))
    assert len(chunks) > 10
    pd.testing.assert_frame_equal(_canonical(whole), _canonical(pd.concat(chunks, ignore_index=True)))
    for chunk in chunks:  # each chunk is a whole table on its own: the sinks write it as it comes
        schema.validate(chunk)
        assert len(chunk)
        assert chunk["ts"].is_monotonic_increasing


@pytest.mark.slow
def test_reassembled_rows_arrive_in_batches(synthetic: Path) -> None:
    """Rows of the reassembling path wait for an eighth of a chunk of them, then come in time order
    with the fast-lane rows of the same drain; with the fast lane off every row takes that path."""
    chunks = list(iter_pcap(synthetic, chunk_rows=400, fast_lane=False, window=64 * 1024))
    assert len(chunks) >= 3000 // 400
    assert all(len(c) >= 400 and c["ts"].is_monotonic_increasing for c in chunks[:-1])
    whole, _ = read_pcap(synthetic)
    pd.testing.assert_frame_equal(_canonical(whole), _canonical(pd.concat(chunks, ignore_index=True)))


@pytest.mark.slow
def test_every_hello_is_found_with_its_ja3(synthetic: Path) -> None:
    """The generator's sidecar lists the JA3 of every connection it wrote (from tshark-verified hellos)."""
    manifest = json.loads(Path(str(synthetic) + ".json").read_text())
    df, _ = read_pcap(synthetic)
    assert len(df) == manifest["connections"]
    assert Counter(df["ja3"]) == Counter(manifest["expected_ja3_md5"])


@pytest.mark.slow
def test_stopping_early_stops_the_reader_thread(synthetic: Path) -> None:
    """The prefetch thread must not outlive a consumer that stops reading (no hang, no leak)."""
    import threading

    before = threading.active_count()
    chunks = iter_pcap(synthetic, chunk_rows=50, window=64 * 1024)
    assert len(next(chunks)) > 0
    chunks.close()
    assert threading.active_count() == before


# -- handshakes the fast lane takes only since issue 2, crafted from real streams ---------------

HRR_STREAM = ("tls-handshake.pcapng", 38)  # TLS 1.3: ClientHello, HelloRetryRequest, CCS, ClientHello
TLS12_STREAM = ("latest.pcapng", 3)  # TLS 1.2 with Certificate, ServerKeyExchange, ServerHelloDone
APP_DATA = b"\x17\x03\x03\x00\x10" + bytes(range(16))
#: A TLS <= 1.2 client's ChangeCipherSpec: it ends the client's second flight, which the fast lane
#: must see before it takes the handshake.
CCS = b"\x14\x03\x03\x00\x01\x01"


def _records(stream: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 5 <= len(stream):
        end = pos + 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
        out.append(stream[pos:end])
        pos = end
    return out


def _segments(stream: bytes, cuts: list[int], *, client: bool) -> list[tuple[bool, int, bytes]]:
    bounds = [0, *cuts, len(stream)]
    return [(client, a, stream[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def _lanes_on(tmp_path: Path, segs: list[tuple[bool, int, bytes]]) -> int:
    path = tmp_path / "crafted.pcap"
    path.write_bytes(tcp_conversation(("10.1.2.3", 40000), ("10.9.8.7", 443), segs))
    fast, _ = read_pcap(path)
    assert len(fast) == 1
    return _assert_same(path)


@needs_reference
@needs_tshark
@pytest.mark.parametrize("cut", [1, 3, 5, 8, 9, 40])
def test_client_hello_split_inside_its_header(tmp_path: Path, cut: int) -> None:
    """A ClientHello whose first segment ends inside (or right after) the 9 header bytes."""
    ch = _records(follow(*HRR_STREAM)[0])[0]
    server = _records(follow(*TLS12_STREAM)[1])
    segs = _segments(ch + CCS + APP_DATA, [cut, len(ch)], client=True)
    segs.insert(1, (False, 0, b"".join(server[:5])))
    assert _lanes_on(tmp_path, segs) == 1


@needs_reference
@needs_tshark
@pytest.mark.parametrize("mss", [200, 1400, 20000])
def test_server_hello_record_spanning_segments(tmp_path: Path, mss: int) -> None:
    """A TLS 1.2 server packing ServerHello ... ServerHelloDone into one record over several segments."""
    client, server = (_records(s) for s in follow(*TLS12_STREAM))
    messages = b"".join(r[5:] for r in server[:5])
    flight = b"\x16\x03\x03" + len(messages).to_bytes(2, "big") + messages
    segs = [(True, 0, client[0])]
    segs += _segments(flight, list(range(mss, len(flight), mss)), client=False)
    segs += [(True, len(client[0]), b"".join(client[1:4]))]
    assert _lanes_on(tmp_path, segs) == 1


@needs_reference
@needs_tshark
@pytest.mark.parametrize(("server_cuts", "client_cuts", "order", "fast"), [
    ([20], [], "in", 1),  # a ServerHello split in two (3.35% of real servers, issue 19)
    ([3, 9, 30, 31, 60], [], "in", 1),  # ... in six, one cut inside its record header
    ([40], [50, 100], "in", 1),  # a ClientHello in three segments
    ([40, 70], [9, 100, 101], "in", 1),
    ([40, 70], [50, 100], "reversed", 1),  # the pieces out of order: stitched by sequence number
    ([40, 70], [50, 100], "resent", 1),  # a piece sent twice, the same bytes
    ([40, 70], [50, 100], "forged", 0),  # ... with other bytes: the reassembling lane says overlap_conflict
])
def test_hellos_over_many_segments(tmp_path: Path, server_cuts: list[int], client_cuts: list[int], order: str,
                                   fast: int) -> None:
    """Issue 19 item 2: hellos cut over any number of in-order segments take the fast lane."""
    client, server = (_records(s) for s in follow(*TLS12_STREAM))
    s_segs = _segments(server[0], server_cuts, client=False)
    c_segs = _segments(client[0], client_cuts, client=True)
    if order == "reversed":
        s_segs, c_segs = s_segs[::-1], c_segs[::-1]
    elif order == "resent":
        s_segs.append(s_segs[1])
    elif order == "forged":
        s_segs.append((False, s_segs[1][1], bytes(len(s_segs[1][2]))))
    rest = b"".join(server[1:5])
    segs = [*c_segs, *s_segs, (False, len(server[0]), rest), (True, len(client[0]), b"".join(client[1:4]))]
    assert _lanes_on(tmp_path, segs) == fast


@needs_reference
@needs_tshark
@pytest.mark.parametrize(
    ("client_after", "server_after", "fast"),
    [
        ("app", "ccs+app", 1),  # no second hello on either side: taken
        ("ccs+app", "app", 1),
        ("alert", "ccs+app", 1),
        ("ccs+hello", "ccs+hello", 0),  # the real exchange: the slow lane pairs both hellos
        ("hello", "app", 0),
        ("app", "ccs+hello", 0),
        ("", "ccs+app", 0),  # nothing after the first hello in this capture: not decided here
        ("ccs", "ccs+app", 0),
    ],
)
def test_hello_retry_request(tmp_path: Path, client_after: str, server_after: str, fast: int) -> None:
    client, server = (_records(s) for s in follow(*HRR_STREAM))
    ccs = b"\x14\x03\x03\x00\x01\x01"
    parts = {"app": APP_DATA, "ccs": ccs, "alert": b"\x15\x03\x03\x00\x02\x02\x28", "": b""}
    c_tail = b"".join(client[2] if p == "hello" else parts[p] for p in client_after.split("+"))
    s_tail = b"".join(server[2] if p == "hello" else parts[p] for p in server_after.split("+"))
    segs = [(True, 0, client[0]), (False, 0, server[0])]
    if s_tail:
        segs.append((False, len(server[0]), s_tail))
    if c_tail:
        segs.append((True, len(client[0]), c_tail))
    assert _lanes_on(tmp_path, segs) == fast


@needs_reference
@needs_tshark
@pytest.mark.parametrize("hidden_first", [True, False])
def test_hello_retry_with_a_conflicting_overlap(tmp_path: Path, hidden_first: bool) -> None:
    """After the first ClientHello one segment carries application data and another, longer one
    at the same place ChangeCipherSpec and the second ClientHello: whichever the reassembling
    lane's rule picks, both lanes must give the same row."""
    client, server = (_records(s) for s in follow(*HRR_STREAM))
    at = len(client[0])
    ccs = b"\x14\x03\x03\x00\x01\x01"
    app, hello = (True, at, APP_DATA), (True, at, ccs + client[2])
    segs = [(True, 0, client[0]), (False, 0, server[0]), (False, len(server[0]), ccs + APP_DATA)]
    segs += [hello, app] if hidden_first else [app, hello]
    _lanes_on(tmp_path, segs)


@needs_reference
@needs_tshark
@pytest.mark.parametrize("forged_first", [True, False])
def test_certificate_flight_with_a_conflicting_overlap(tmp_path: Path, forged_first: bool) -> None:
    """A TLS 1.2 server flight where a longer segment with one certificate byte changed overlaps
    the real Certificate segment at the same place: both lanes must pick the same bytes."""
    client, server = (_records(s) for s in follow(*TLS12_STREAM))
    flight = b"".join(server[:5])
    cut = len(server[0])
    cert_len = int.from_bytes(flight[cut + 12 : cut + 15], "big")
    last = cut + 15 + cert_len - 1  # the leaf certificate's last signature byte
    forged = bytearray(flight[cut : last + 20])
    forged[last - cut] ^= 0xFF
    real = (False, cut, flight[cut : last - 100])
    segs = [(True, 0, client[0]), (False, 0, flight[:cut])]
    segs += [(False, cut, bytes(forged)), real] if forged_first else [real, (False, cut, bytes(forged))]
    segs += [(False, last - 100, flight[last - 100 :]), (True, len(client[0]), b"".join(client[1:4]))]
    _lanes_on(tmp_path, segs)


@needs_reference
@needs_tshark
@pytest.mark.parametrize("where", ["after_done_same_record", "after_done_next_record", "after_done_next_segment",
                                   "before_certificate", "before_certificate_same_record"])
def test_second_server_hello(tmp_path: Path, where: str) -> None:
    """A hostile TLS 1.2 server sends a second ServerHello (one random byte changed) in its first
    flight, before or after ServerHelloDone, in the same record or not: both lanes, one row."""
    client, server = (_records(s) for s in follow(*TLS12_STREAM))
    flight = server[:5]
    first = server[0]
    second = bytearray(first)
    second[5 + 4 + 2 + 3] ^= 0xFF
    if where == "after_done_same_record":
        body = flight[-1][5:] + bytes(second[5:])
        data = b"".join(flight[:-1]) + flight[-1][:3] + len(body).to_bytes(2, "big") + body
    elif where == "after_done_next_record":
        data = b"".join(flight) + bytes(second)
    elif where == "before_certificate":
        data = first + bytes(second) + b"".join(flight[1:])
    elif where == "before_certificate_same_record":
        body = first[5:] + bytes(second[5:]) + b"".join(r[5:] for r in flight[1:])
        data = first[:3] + len(body).to_bytes(2, "big") + body
    else:
        data = b""
    segs = [(True, 0, client[0])]
    if data:
        segs.append((False, 0, data))
    else:  # after_done_next_segment
        flight_bytes = b"".join(flight)
        segs += [(False, 0, flight_bytes), (False, len(flight_bytes), bytes(second))]
    segs.append((True, len(client[0]), b"".join(client[1:4])))
    _lanes_on(tmp_path, segs)


def test_recent_chains_never_lend_a_group_to_other_bytes() -> None:
    """The fast lane recognises a repeated certificate list by its bytes under a cheap probe: a list
    with the same probe (length, sampled words) but one other byte must get its own group, the same
    bytes the group their digest gives, and the kept lists stay within their bounds."""
    from tlsdetect.readers.pcap import fastlane

    chains = fastlane._Chains()
    probe = (64, 1, 2, 3)  # the probe is only a hint: force every list into one bucket
    base = bytes(range(64))
    twin = bytearray(base)
    twin[17] ^= 0x01
    a = chains.group(memoryview(base), probe)
    b = chains.group(memoryview(bytes(twin)), probe)
    assert a != b
    assert chains.group(memoryview(bytes(base)), probe) == a  # from the kept bytes
    assert chains._by_digest(bytes(twin)) == b  # the digest path agrees
    many = [bytes([i % 256, i // 256]) * 32 for i in range(2 * fastlane.RECENT_CHAINS)]
    groups = [chains.group(memoryview(m), (i % 7,)) for i, m in enumerate(many)]
    assert len(set(groups)) == len(many)  # distinct bytes, distinct groups, kept or not
    assert [chains.group(memoryview(m), (i % 7,)) for i, m in enumerate(many)] == groups
    assert chains.kept <= fastlane.RECENT_CHAINS
    assert all(len(bucket) <= fastlane.RECENT_PER_PROBE for bucket in chains.recent.values())


def test_a_window_with_no_whole_handshake_is_not_a_crash(tmp_path: Path) -> None:
    """Issue 18 row 4: a first window of hellos whose answers come later left an empty entry in
    the lane's recent keys, and the next window's lookup in it raised IndexError."""
    from .craft import client_hello_body, handshake_message, ipv4_tcp_frame, pcap_file, server_hello_body_tls13

    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    answer = tls_records(handshake_message(2, server_hello_body_tls13()), 1 << 14)[0]
    n = 400  # ~130 KB of ClientHellos before the first ServerHello: two 64 KiB windows
    frames = [ipv4_tcp_frame("10.0.0.1", "10.0.0.2", 20000 + i, 443, 1000, 1, 0x18, hello) for i in range(n)]
    frames += [ipv4_tcp_frame("10.0.0.2", "10.0.0.1", 443, 20000 + i, 1, 1000 + len(hello), 0x18, answer)
               for i in range(n)]
    path = tmp_path / "late-answers.pcap"
    path.write_bytes(pcap_file((1_700_000_000, i, f) for i, f in enumerate(frames)))
    frame, _ = read_pcap(path, window=64 * 1024)
    assert len(frame) == n
    assert frame["sni"].eq("example.com").all()
    assert frame["incomplete"].isna().all()
    _assert_same(path, window=64 * 1024)
