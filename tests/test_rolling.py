"""One engine over a capture cut into ring files gives the rows of the capture read whole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REFERENCE, needs_reference
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.rolling import RollingEngine

COLS = ["ja3", "ja4", "ja3s", "sni", "server_issuer", "incomplete", "client_port"]


def _key(df: pd.DataFrame) -> list[str]:
    return sorted(map(repr, df[COLS].astype(str).to_numpy().tolist()))


@needs_reference
@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (tshark's package) is not installed")
@pytest.mark.parametrize("packets", [3, 7])
def test_handshakes_spanning_ring_files_are_joined(packets: int, tmp_path: Path) -> None:
    src = REFERENCE / "tls-handshake.pcapng"
    subprocess.run(["editcap", "-c", str(packets), str(src), str(tmp_path / "r.pcapng")], check=True)
    files = sorted(tmp_path.glob("r_*.pcapng"))
    assert len(files) > 10
    eng = RollingEngine("live")
    parts = [eng.feed(f) for f in files] + [eng.finish()]
    whole, _ = read_pcap(src)
    rolled = enrich(pd.concat([p for p in parts if len(p)], ignore_index=True))
    assert len(rolled) == len(whole) == 79
    assert _key(rolled) == _key(whole)
    assert eng.stats.files == len(files)
    assert eng.stats.counts["packets"] > 0


@needs_reference
def test_settle_ends_quiet_handshakes_by_the_clock_given(tmp_path: Path) -> None:
    eng = RollingEngine("live")
    first = eng.feed(REFERENCE / "tls12.pcap")
    last = eng.last_packet_ns
    assert last > 0
    early = eng.settle(last + 10_000_000, 1_000_000_000)  # quiet for 10 ms: nothing settled that was not
    late = eng.settle(last + 2_000_000_000, 1_000_000_000)
    assert len(first) + len(early) + len(late) == 1
    assert len(eng.finish()) == 0
