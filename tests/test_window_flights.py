"""The fast lane's flight columns: session-ID echo in numpy, and both lanes equal on real captures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.window_flights import session_id_echoed

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
