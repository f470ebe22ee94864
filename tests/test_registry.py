"""The registry: a reader per sniffed kind, and what a log reader counts reaches both totals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.logs import FORMATS, DeadLetter
from tlsdetect.readers.registry import NativePcapReader, TsharkPcapReader, readers

from .conftest import PROJECT_PCAPS


def test_every_format_has_a_reader_of_its_kind() -> None:
    for engine, pcap in (("native", NativePcapReader), ("tshark", TsharkPcapReader)):
        by_kind = readers(engine)
        assert set(by_kind) == set(FORMATS)
        assert all(r.kind == k for k, r in by_kind.items())
        assert isinstance(by_kind["pcap"], pcap)
    assert readers()["suricata"].dn_order == "x509"
    with pytest.raises(ValueError, match="capture engine"):
        readers("scapy")


def test_native_reader_counts_into_the_stats_given() -> None:
    stats = ReadStats()
    rows = sum(len(c) for c in readers()["pcap"].read([PROJECT_PCAPS / "tls12_stacks.pcap"], stats))
    assert (stats.files, stats.rows) == (1, rows)
    assert stats.counts["packets"] > 0
    assert stats.bytes_read > 0


def test_log_reader_counts_into_the_stats_and_the_dead_letters(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('{"start_time": "2024-01-01T00:00:00Z", "downstream_remote_address": "10.0.0.1:5"}\n{\n')
    letters = DeadLetter()
    letters.stats.lines += 7  # an earlier read's
    stats = ReadStats()
    list(readers(dead_letter=letters)["envoy"].read([log], stats))
    assert stats.counts["bad_lines"] == 1
    assert stats.counts["lines"] == 2
    assert letters.stats.bad_lines == 1
    assert letters.stats.lines == 9
