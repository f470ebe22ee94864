"""The fast lane's flight columns: session-ID echo in numpy, and both lanes equal on real captures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.records import Sizes, as_tuples, flight_cut, group_starts, tls13_flights
from tlsdetect.readers.pcap.window_flights import (
    _direction,
    quiet_at_window_end,
    session_id_echoed,
    tls13_window_flights,
)

from .conftest import PROJECT_PCAPS, ROOT
from .craft import (
    client_hello_body,
    handshake_message,
    ipv4_tcp_frame,
    pcap_file,
    server_hello_body_tls13,
    tls_records,
)
from .test_fastlane import _canonical

PCAPS = Path(__file__).resolve().parent.parent / "pcaps"
FLIGHT = ["sh_session_id_echoed", "resumed", "server_flight", "server_flight_bytes", "client_flight",
          "client_flight_bytes"]


def _hello(sid: bytes, version: bytes = b"\x03\x03") -> bytes:
    return version + bytes(32) + bytes([len(sid)]) + sid + b"\x00" * 8


def test_session_id_echoed() -> None:
    pairs = [(b"a" * 32, b"a" * 32, True), (b"a" * 32, b"b" * 32, False), (b"", b"", False), (b"ab", b"a", False)]
    c = np.frombuffer(b"".join(_hello(x) for x, _, _ in pairs), dtype=np.uint8)
    s = np.frombuffer(b"".join(_hello(y) for _, y, _ in pairs), dtype=np.uint8)
    c_at = np.cumsum([0] + [len(_hello(x)) for x, _, _ in pairs[:-1]]).astype(np.int64)
    s_at = np.cumsum([0] + [len(_hello(y)) for _, y, _ in pairs[:-1]]).astype(np.int64)
    assert session_id_echoed(c, c_at, s, s_at).tolist() == [want for _, _, want in pairs]


@pytest.mark.parametrize("name", ["tls12_stacks.pcap", "tls13_stacks.pcapng", "intercepted.pcapng"])
def test_both_lanes_fill_the_same_flights(name: str) -> None:
    path = PCAPS / name
    key = ["client_ip", "client_port", "server_ip", "server_port"]
    fast = read_pcap(path)[0].sort_values(key, ignore_index=True)
    slow = read_pcap(path, fast_lane=False)[0].sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(fast[FLIGHT], slow[FLIGHT])
    assert fast["server_flight"].notna().all()
    assert fast["server_flight_bytes"].gt(0).all()
    assert fast["client_flight_bytes"].notna().all()


def _bench() -> ModuleType:
    """benchmarks/bench_pcap.py as a module (its ``hellos_only`` shape is what is tested here)."""
    spec = importlib.util.spec_from_file_location("bench_pcap", ROOT / "benchmarks" / "bench_pcap.py")
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_lanes_agree_when_every_connection_stops_after_the_hellos(tmp_path: Path) -> None:
    """A capture that stops after the hellos (the benchmark's ``hellos-only`` shape): the fast lane
    carries the TLS 1.3 handshakes whose flights are undecided to the capture's end and takes them
    there with their flights missing, and every row equals the reassembling lane's."""
    full, cut = tmp_path / "full.pcap", tmp_path / "hellos.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"), str(PROJECT_PCAPS), "-o", str(full),
         "--connections", "2000", "--target-mb", "12", "--seed", "3", "--quiet"],
        check=True,
    )
    kept, total = _bench().hellos_only(full, cut)
    assert 0 < kept < total
    fast, stats = read_pcap(cut)
    slow, _ = read_pcap(cut, fast_lane=False)
    assert len(fast) == 2000
    taken = stats.counts["fast_lane_connections"]
    tls13 = fast["tls_version"] == "TLSv1.3"
    assert tls13.sum() > 200
    # TLS 1.3 ones taken too, not all handed over (the slow lane held every one of them before)
    assert taken == len(fast)
    assert fast.loc[tls13, "client_flight"].isna().all()  # the client's Finished was never captured
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))


# --- the early-stopping walk of tls13_window_flights against the whole walk ---------------------


@st.composite
def _window(draw: st.DrawFn) -> tuple[list[tuple[int, bytes]], list[int], list[int]]:
    """Segments of a few TLS 1.3-like connections in capture order: (flow key, payload) each;
    flows 2c (client) and 2c + 1 (server). Records of random types and sizes (0-RTT data before
    the ServerHello, CCS, encrypted records, junk, a lying length), some split over segments,
    the two sides interleaved at random; a connection may stop at any point."""
    n = draw(st.integers(1, 3))
    events: list[tuple[int, bytes]] = []
    for c in range(n):
        conn: list[tuple[int, bytes]] = [(2 * c, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")]
        server: list[tuple[int, bytes]] = [(2 * c + 1, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")]
        client: list[tuple[int, bytes]] = []
        for _ in range(draw(st.integers(0, 12))):
            side = draw(st.booleans())
            kind = draw(st.sampled_from([23, 23, 23, 20, 21, 0]))
            if kind == 0:
                body = draw(st.binary(min_size=1, max_size=6))
            else:
                size = draw(st.integers(1, 60))
                claim = size if draw(st.integers(0, 9)) else size + draw(st.integers(1, 100))
                body = bytes([kind, 3, 3]) + claim.to_bytes(2, "big") + b"\xaa" * size
            cut = draw(st.integers(0, len(body)))
            pieces = [p for p in (body[:cut], body[cut:]) if p]
            (server if side else client).extend((2 * c + side, p) for p in pieces)
        # Interleave: the ServerHello comes after the ClientHello, everything else at random.
        rest = server[1:] + client
        order = draw(st.permutations(list(range(len(rest)))))
        merged = [rest[i] for i in order]
        # each direction keeps its own byte order (a TCP stream), only the two are interleaved
        queues = {2 * c: [p for k, p in rest if k == 2 * c], 2 * c + 1: [p for k, p in rest if k == 2 * c + 1]}
        at_sh = draw(st.integers(0, len(merged)))
        seq = [k for k, _ in merged]
        seq.insert(at_sh, -1)
        for k in seq:
            conn.append(server[0] if k == -1 else (k, queues[k].pop(0)))
        events.append(conn)  # type: ignore[arg-type]
    # Connections interleave too, each keeping its order.
    flat: list[tuple[int, bytes]] = []
    cursors = [0] * n
    for pick in draw(st.permutations([c for c in range(n) for _ in events[c]])):  # type: ignore[arg-type]
        flat.append(events[pick][cursors[pick]])  # type: ignore[index]
        cursors[pick] += 1
    clients = [next(i for i, (k, _) in enumerate(flat) if k == 2 * c) for c in range(n)]
    servers = [next(i for i, (k, _) in enumerate(flat) if k == 2 * c + 1) for c in range(n)]
    return flat, clients, servers


def _full_walk_flights(
    args: tuple[object, ...], client: np.ndarray, server: np.ndarray
) -> tuple[Sizes, Sizes, np.ndarray, np.ndarray]:
    """tls13_flights over every record each direction has in the window (no early stop), and
    which flights are missing because their direction was cut."""
    buf, keys, seq, payload, plen, by_key, base = args
    walks = []
    for hello in (server, client):
        walk = _direction(buf, keys, seq, payload, plen, by_key, keys[hello], seq[hello], base)  # type: ignore[index,arg-type]
        while walk.step():
            pass
        rec = walk.records()
        walks.append((rec, group_starts(rec.owner, len(client)), walk.cut))
    (s_rec, s_start, s_cut), (c_rec, c_start, c_cut) = walks
    s, c = tls13_flights(s_rec, c_rec, s_start + 1, c_start + 1, base + server)  # type: ignore[operator]
    return s, c, flight_cut(s, s_cut), flight_cut(c, c_cut)


@settings(max_examples=300, deadline=None)
@given(_window(), st.integers(0, 1000))
def test_early_stop_gives_the_whole_walks_flights(
    window: tuple[list[tuple[int, bytes]], list[int], list[int]], base: int
) -> None:
    """Stopping each direction once its flight is decided changes no flight, and no answer to
    whether a missing one was cut: equal to the rules applied to everything the window holds, for
    every connection at once."""
    flat, clients, servers = window
    keys = np.array([k + 1 for k, _ in flat], dtype=np.uint64)
    plen = np.array([len(p) for _, p in flat], dtype=np.int64)
    payload = np.concatenate([[0], np.cumsum(plen)[:-1]]).astype(np.int64)
    offset: dict[int, int] = {}
    seq_list = []
    for k, p in flat:
        seq_list.append(1000 * k + offset.get(k, 0))
        offset[k] = offset.get(k, 0) + len(p)
    seq = np.array(seq_list, dtype=np.int64)
    buf = np.frombuffer(b"".join(p for _, p in flat) + b"\0" * 8, dtype=np.uint8)
    by_key = np.argsort(keys, kind="stable")
    client, server = np.array(clients, dtype=np.int64), np.array(servers, dtype=np.int64)
    got = tls13_window_flights(buf, keys, seq, payload, plen, by_key, base, client, server)
    want = _full_walk_flights((buf, keys, seq, payload, plen, by_key, base), client, server)
    for g, w in zip((got.server, got.client), want[:2], strict=True):
        for a, b in zip(as_tuples(g), as_tuples(w), strict=True):
            assert a.tolist() == b.tolist()
    assert got.server_cut.tolist() == want[2].tolist()
    assert got.client_cut.tolist() == want[3].tolist()


def test_quiet_at_window_end_counts_capture_time_not_packets() -> None:
    """Flows 0/1 (one connection) last spoke at 100 ms, flows 2/3 at 900 ms, then flow 9's bulk to 1 s:
    with 500 ms the first is quiet, the second is not, however many packets came after it."""
    keys = np.array([0, 1, 2, 3, 1, 3, *[9] * 50], dtype=np.uint64)
    ts = np.array([0, 10, 0, 10, 100, 900, *range(901, 951)], dtype=np.int64) * 1_000_000
    ts[-1] = 1_000_000_000
    by_key = np.argsort(keys, kind="stable")
    client, server = np.array([0, 2]), np.array([1, 3])
    assert quiet_at_window_end(ts, keys, by_key, client, server, 500_000_000).tolist() == [True, False]
    assert quiet_at_window_end(ts, keys, by_key, client, server, 50_000_000).tolist() == [True, True]
    assert quiet_at_window_end(ts, keys, by_key, client, server, 950_000_000).tolist() == [False, False]


# --- rows must not depend on where the capture's windows fall ------------------------------------


def _tls13_conversation(c: int, gaps: tuple[int, int]) -> list[tuple[int, bytes]]:
    """One TLS 1.3 connection as (filler packets before it, frame): ClientHello; ServerHello,
    CCS and the encrypted server flight; after ``gaps[0]`` filler packets the client's CCS and
    Finished and a request; after ``gaps[1]`` the server's response and the client's next record."""
    client, server, cport = f"10.1.0.{c + 1}", f"10.2.0.{c + 1}", 40000 + c
    ch = tls_records(handshake_message(1, client_hello_body(f"s{c}.example")), 16384)[0]
    sh = tls_records(handshake_message(2, server_hello_body_tls13()), 16384)[0]
    ccs = b"\x14\x03\x03\x00\x01\x01"

    def app(n: int) -> bytes:
        return b"\x17\x03\x03" + n.to_bytes(2, "big") + bytes(n)

    steps = [(0, True, ch), (0, False, sh + ccs + app(30) + app(900) + app(80) + app(50)),
             (gaps[0], True, ccs + app(50) + app(200)), (gaps[1], False, app(300)), (0, True, app(120))]
    off = {True: 0, False: 0}
    out = []
    for before, from_client, data in steps:
        src, dst, sp, dp = (client, server, cport, 443) if from_client else (server, client, 443, cport)
        seq = (0x10000001 if from_client else 0x70000001) + off[from_client]
        out.append((before, ipv4_tcp_frame(src, dst, sp, dp, seq, 1, 0x18, data)))
        off[from_client] += len(data)
    return out


def _capture_with_quiet_gaps(path: Path, gaps: list[tuple[int, int]]) -> None:
    """Connections one after another, each waiting ``gaps`` filler packets (a bulk flow of small
    non-TLS segments, as other traffic between a handshake's round trips) between its flights."""
    frames: list[bytes] = []
    filler_seq = 1
    for c, g in enumerate(gaps):
        for before, frame in _tls13_conversation(c, g):
            for _ in range(before):
                frames.append(ipv4_tcp_frame("10.9.9.9", "10.8.8.8", 5000, 80, filler_seq, 1, 0x10, b"x" * 10))
                filler_seq += 10
            frames.append(frame)
    path.write_bytes(pcap_file((1_700_000_000 + i // 100_000, (i % 100_000) * 10, f) for i, f in enumerate(frames)))


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(gaps=st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 6000)), min_size=1, max_size=3),
       window=st.sampled_from([64 * 1024, 256 * 1024, 512 * 1024, 1024 * 1024]))
@example(gaps=[(5000, 100), (3000, 6000), (6000, 10)], window=512 * 1024)
def test_flights_do_not_depend_on_the_window_size(tmp_path_factory: pytest.TempPathFactory,
                                                   gaps: list[tuple[int, int]], window: int) -> None:
    """A handshake quiet for thousands of packets (a round trip of busy traffic) around a window's
    end has the flights of a one-window read: found on 50,000 connections/s captures, where 16 MiB
    windows lost ~6% of the flights (missing, and not said truncated)."""
    path = tmp_path_factory.mktemp("quiet") / "quiet.pcap"
    _capture_with_quiet_gaps(path, gaps)
    whole, _ = read_pcap(path)
    assert len(whole) == len(gaps)
    assert whole["server_flight"].notna().all()
    assert whole["client_flight"].notna().all()
    small, stats = read_pcap(path, window=window)
    pd.testing.assert_frame_equal(_canonical(whole), _canonical(small))
    assert stats.counts["fast_lane_connections"] == len(gaps)  # followed by the carry, not handed over
