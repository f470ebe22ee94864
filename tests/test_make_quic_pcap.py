"""benchmarks/make_quic_pcap.py: real encrypted Initials, same seed same bytes, tshark agrees."""
from __future__ import annotations

import importlib
import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_tshark

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
mq: Any = importlib.import_module("make_quic_pcap")


def _sources() -> list[str]:
    """The project's own capture (the default): Chromium and aioquic, v1 and v2, one Retry."""
    return [str(p) for p in mq.default_sources()]


def test_source_pairs_are_decrypted_from_the_initials() -> None:
    pairs = [p for s in _sources() for p in mq.extract_pairs(Path(s))]
    assert len(pairs) == 5
    assert all(p.client_hello[0] == 1 for p in pairs)
    assert {p.version for p in pairs} == {1, 0x6B3343CF}
    # after a Retry the server's Initial is under keys from the Retry's CID: this tool does not follow
    assert sum(p.server_hello is not None for p in pairs) == 4
    assert all(mq.expected_fingerprints(p)[0].startswith("q13d") for p in pairs)


def test_same_seed_same_bytes_and_the_counts_asked(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    for out in (a, b):
        assert mq.main([*_sources(), "-o", str(out), "--connections", "120", "--seed", "7"]) == 0
    assert a.read_bytes() == b.read_bytes()
    man = json.loads(Path(f"{a}.json").read_text())
    assert man["connections"] == 120
    assert sum(man["expected_ja4"].values()) == 120
    assert man["packets"] > man["quic_packets"] > 120  # other UDP traffic around the QUIC


@pytest.mark.slow
@needs_tshark
def test_tshark_engine_finds_every_connection_with_the_expected_fingerprints(tmp_path: Path) -> None:
    out = tmp_path / "q.pcap"
    assert mq.main([*_sources(), "-o", str(out), "--connections", "150", "--shuffle-fraction", "0.5"]) == 0
    man = json.loads(Path(f"{out}.json").read_text())
    res = subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "--engine", "tshark", str(out),
                          "-f", "jsonl", "--no-progress"], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert Counter(r["transport"] for r in rows) == {"quic": 150}
    assert Counter(r["ja4"] for r in rows) == man["expected_ja4"]
    assert Counter(r["ja3s"] for r in rows if r["ja3s"]) == man["expected_ja3s"]


def test_target_size_is_reached_without_overshooting_by_a_batch_and_time_runs_forward(tmp_path: Path) -> None:
    out = tmp_path / "s.pcap"
    assert mq.main(["-o", str(out), "--connections", "5", "--target-mb", "1"]) == 0
    data = out.read_bytes()
    assert 1_000_000 <= len(data) < 1_300_000
    man = json.loads(Path(f"{out}.json").read_text())
    assert man["bytes"] == len(data)
    stamps, pos = [], 24
    while pos < len(data):
        sec, usec, incl = struct.unpack_from("<III", data, pos)
        stamps.append(sec * 1_000_000 + usec)
        pos += 16 + incl
    assert pos == len(data)
    assert len(stamps) == man["packets"]
    assert stamps == sorted(stamps)
