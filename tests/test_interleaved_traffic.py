"""benchmarks/interleaved_traffic.py and ``make_big_pcap.py --rate``: times, file order, truth."""
from __future__ import annotations

import importlib
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
il: Any = importlib.import_module("interleaved_traffic")


def test_server_pool_is_distinct_and_bounded() -> None:
    pool = il.server_pool(4096)
    assert len(np.unique(pool)) == 4096
    assert not np.any((pool & 0xFF) == 0)
    assert all(ipaddress.IPv4Address(int(a)) in ipaddress.IPv4Network("198.18.0.0/15") for a in pool[[0, -1]])
    with pytest.raises(ValueError, match="--servers"):
        il.server_pool(0)


def test_connection_starts_follow_the_rate() -> None:
    rng = np.random.default_rng(1)
    starts = il.connection_starts(rng, 20_000, 5.0, 50_000)
    assert np.all(np.diff(starts) > 0)
    assert starts[0] > 5.0
    assert np.mean(np.diff(starts)) == pytest.approx(20.0, rel=0.05)  # 1e6 / 50,000 us
    with pytest.raises(ValueError, match="--rate"):
        il.connection_starts(rng, 3, 0.0, 0)


def test_connection_times_add_gaps_from_each_start() -> None:
    gaps = np.array([7.0, 10.0, 5.0, 3.0, 2.0])  # the first gap of each connection is ignored
    conn = np.array([0, 0, 0, 1, 1])
    times = il.connection_times(gaps, np.array([0, 3]), conn, np.array([100.0, 200.0]))
    assert times.tolist() == [100, 110, 115, 200, 202]


def test_packet_gaps_wait_a_round_trip_where_asked() -> None:
    rng = np.random.default_rng(2)
    timing = il.Timing(rate=1000, rtt_us=20_000)
    phase = np.array([0, 1, 3, 2, 4])
    gaps = il.packet_gaps(rng, timing, conn=np.zeros(5, np.int64), rtt=np.array([15_000.0]), phase=phase)
    assert gaps[0] == 0
    assert gaps[1] == 15_000
    assert gaps[2] == 12
    assert gaps[3] > 15_000
    assert gaps[4] > 0


Records = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _records(ts: list[int], tags: list[int], conns: list[int], fill: int) -> Records:
    lengths = np.arange(len(ts), dtype=np.int64) % 3 + 2
    buf = np.concatenate([np.full(n, fill + i, np.uint8) for i, n in enumerate(lengths)])
    return buf, np.array(ts, np.int64), lengths, np.array(tags, np.int64), np.array(conns, np.int64)


def test_writer_merges_batches_in_time_order_and_keeps_offsets() -> None:
    writer = il.TimeOrderedWriter(file_offset=24)
    a = _records([1, 5, 9, 30], [1, 0, 2, 0], [0, 1, 0, 1], fill=10)
    b = _records([6, 12, 40], [1, 2, 0], [2, 2, 2], fill=50)
    first = writer.push(*a, safe_us=6.0)  # records up to t=6 are final; 9 and 30 wait
    assert first.tolist() == [10, 10, 11, 11, 11]
    second = writer.push(*b, safe_us=None)
    # Held 9 (len 4) and 30 (len 2) merged with 6, 12, 40 of the new batch.
    assert second.tolist() == [50, 50] + [12] * 4 + [51] * 3 + [13] * 2 + [52] * 4
    offsets = writer.offsets(3)
    assert offsets[il.TAG_CLIENT_HELLO].tolist() == [24, -1, 24 + 5]
    assert offsets[il.TAG_SERVER_HELLO].tolist() == [24 + 7, -1, 24 + 11]
    assert writer.straddles(8, 3) == 1  # conn 0: 24 and 31 in window 3; conn 2: 29 (3) and 35 (4)


def test_writer_refuses_a_batch_older_than_what_it_released() -> None:
    writer = il.TimeOrderedWriter(file_offset=0)
    writer.push(*_records([10, 20], [0, 0], [0, 0], fill=1), safe_us=25.0)
    with pytest.raises(AssertionError, match="time order"):
        writer.push(*_records([15], [0], [1], fill=5), safe_us=None)


@pytest.mark.slow
def test_generated_interleaved_file_is_timed_and_true(tmp_path: Path) -> None:
    """A small --rate file: timestamps monotonic in file order, every connection's JA3 as the truth says."""
    from tlsdetect.readers.pcap.engine import read_pcap

    out = tmp_path / "il.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"), str(ROOT / "pcaps"), "-o", str(out),
         "--connections", "600", "--target-mb", "3", "--seed", "4", "--rate", "50000", "--servers", "300",
         "--mss", "1448", "--server-split-fraction", "0.2", "--batch", "128", "--quiet"],
        check=True,
    )
    with open(out, "rb") as fh:
        records = [(ts, dpkt.ethernet.Ethernet(frame)) for ts, frame in dpkt.pcap.Reader(fh)]
    ts = np.array([t for t, _ in records])
    assert np.all(np.diff(ts) >= 0)
    manifest = json.loads(Path(str(out) + ".json").read_text())
    assert manifest["packets"] == len(records)
    assert manifest["bytes"] == out.stat().st_size
    assert manifest["split_server_hellos"] > 0
    assert manifest["interleaved"]["mean_concurrent_connections"] > 50  # connections overlap in time
    truth = np.load(str(out) + ".conns.npz")
    servers = {int.from_bytes(e.data.src, "big") for _, e in records if e.data.data.sport == 443}
    assert servers == set(truth["server_ip"].tolist())
    assert len(servers) <= 300
    assert truth["server_hello_split"].sum() == manifest["split_server_hellos"]
    df, _ = read_pcap(out)
    assert len(df) == 600
    got = dict(zip(zip(df["client_ip"].astype(str), df["client_port"].astype(int), strict=True), df["ja3"],
                   strict=True))
    want = {(str(ipaddress.IPv4Address(int(ip))), int(port)): j
            for ip, port, j in zip(truth["client_ip"], truth["client_port"], truth["ja3_md5"], strict=True)}
    assert got == want
    # The ClientHello comes before its ServerHello in the file, both inside it.
    assert np.all(truth["client_hello_offset"] < truth["server_hello_offset"])
    assert truth["server_hello_offset"].max() < out.stat().st_size
