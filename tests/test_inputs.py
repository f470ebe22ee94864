"""Inputs: PATHs to enriched chunks, with every reader's stats merged into one."""

from __future__ import annotations

from pathlib import Path

from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS


def test_inputs_merge_every_readers_stats_and_enrich(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a capture\n")
    log = tmp_path / "access.log"
    log.write_text('{"start_time": "2024-01-01T00:00:00Z", "downstream_remote_address": "10.0.0.1:5"}\n{\n')
    inputs = Inputs([str(PROJECT_PCAPS / "tls12_stacks.pcap"), str(tmp_path)])
    df = inputs.read_all()
    assert inputs.stats.files == 2  # the capture and the log
    assert inputs.stats.counts["packets"] > 0
    assert inputs.stats.counts["bad_lines"] == 1
    assert inputs.stats.rows == len(df)
    assert inputs.warnings is inputs.stats.warnings
    assert any("notes.txt" in w for w in inputs.warnings)
    assert df["ja3"].notna().any()
    assert df["server_issuer_key"].notna().any()
