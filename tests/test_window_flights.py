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

from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.window_flights import session_id_echoed

from .conftest import PROJECT_PCAPS, ROOT
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
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_lanes_agree_when_every_connection_stops_after_the_hellos(tmp_path: Path) -> None:
    """A capture that stops after the hellos (the benchmark's ``hellos-only`` shape): the fast lane
    takes the TLS 1.3 handshakes quiet at the window's end with their flights missing, follows
    the rest in the slow lane, and every row equals the reassembling lane's."""
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
    assert taken > (~tls13).sum() + tls13.sum() // 4  # those in the last SETTLE_MARGIN packets are not
    assert fast.loc[tls13, "client_flight"].isna().all()  # the client's Finished was never captured
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
