"""Corrupted handshakes inside real captures: the engine never raises and both lanes agree."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import PROJECT_PCAPS

SOURCES = sorted(PROJECT_PCAPS.glob("*.pcap*"))


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c != "conn_id"]
    return df[cols].astype(str).sort_values(["client_ip", "client_port", "ts"]).reset_index(drop=True)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 40))
def test_flipped_bytes_never_crash_and_lanes_agree(tmp_path: Path, source: Path, seed: int, flips: int) -> None:
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    # Past the file header: flips land in record headers, IP/TCP headers and TLS payload alike.
    for _ in range(flips):
        data[rng.randrange(64, len(data))] = rng.randrange(256)
    path = tmp_path / f"fuzz-{seed}{source.suffix}"
    path.write_bytes(bytes(data))
    fast, _ = read_pcap(path)
    slow, _ = read_pcap(path, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
