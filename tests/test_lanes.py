"""The fast (numpy) lane and the reassembling lane must give identical rows for every handshake."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.readers.pcap import iter_pcap, read_pcap

from .conftest import INTERCEPTION, PROJECT_PCAPS, REFERENCE, ROOT

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
    assert slow_stats.fast_lane_connections == 0
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    return fast_stats.fast_lane_connections


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
