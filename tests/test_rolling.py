"""One engine over a capture cut into ring files gives the rows of the capture read whole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REFERENCE, needs_reference
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.rolling import RollingEngine
from tlsdetect.readers.pcap.splitter import StreamSplitter
from tlsdetect.stream.live_capture import QUIET_NS

COLS = ["ja3", "ja4", "ja3s", "sni", "server_issuer", "incomplete", "client_port"]
#: and the flight columns, which depend most on where a window ends
FLIGHT_COLS = [*COLS, "server_flight", "client_flight", "resumed", "truncated", "ch_records"]
#: corpus captures with TLS 1.3 flights, split hellos, TCP fragmentation, many connections
CUT_FILES = ["tls-handshake.pcapng", "s2n-tls_tcp_fragmentation.pcap", "arkime_tls13.pcap",
             "arkime_tls-split-client-hello.pcap", "browsers-x509.pcapng"]
_WHOLE: dict[str, pd.DataFrame] = {}


def _key(df: pd.DataFrame, cols: list[str] = COLS) -> list[str]:
    return sorted(map(repr, df[cols].astype(str).to_numpy().tolist()))


def _cut(data: bytes, at: list[int]) -> list[bytes]:
    """The capture cut at the record boundaries at or after the byte offsets ``at`` (the pipe's splitter)."""
    sp, files, pos = StreamSplitter(), [], 0
    for cut in sorted(set(at)):
        sp.feed(data[pos:cut])
        pos = cut
        if (got := sp.cut()) is not None:
            files.append(got)
    sp.feed(data[pos:])
    if (got := sp.cut()) is not None:
        files.append(got)
    return files


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


@needs_reference
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(CUT_FILES), cuts=st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_rows_of_the_cut_files_equal_the_rows_of_the_whole_file(name: str, cuts: list[float], tmp_path: Path) -> None:
    """Ring files are pieces of one capture: wherever they are cut, the live engine (with its
    capture-time quiet rule) gives the rows ``tlsdetect fingerprint`` gives for the whole file."""
    src = REFERENCE / name
    data = src.read_bytes()
    if name not in _WHOLE:
        _WHOLE[name] = read_pcap(src)[0]
    whole = _WHOLE[name]
    eng = RollingEngine("live", quiet_ns=QUIET_NS)
    parts = []
    for i, blob in enumerate(_cut(data, [int(c * len(data)) for c in cuts])):
        path = tmp_path / f"ring_{i:05d}.pcap"
        path.write_bytes(blob)
        parts.append(eng.feed(path))
    parts.append(eng.finish())
    rolled = enrich(pd.concat([p for p in parts if len(p)], ignore_index=True))
    assert len(rolled) == len(whole) > 0
    assert _key(rolled, FLIGHT_COLS) == _key(whole, FLIGHT_COLS)
    assert rolled["conn_id"].is_unique
