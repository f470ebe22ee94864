"""Spark's read tasks (:mod:`tlsdetect.spark.read`), run without Spark: splits and the shared read path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS


def test_split_size_follows_sparks_rule() -> None:
    from tlsdetect.spark.read import DEFAULT_SPLIT_BYTES, OPEN_COST_BYTES, split_size

    mb = 1024 * 1024
    assert split_size(172 * mb, 2) == 86 * mb  # two cores, two even tasks (not 128 + 44 MB)
    assert split_size(10_000 * mb, 2) == DEFAULT_SPLIT_BYTES  # never above the cap
    assert split_size(mb, 8) == OPEN_COST_BYTES  # never below Spark's open cost
    assert split_size(10 * mb, 2, split_bytes=2048) == 2048  # an explicit small split wins


def test_split_ranges_cover_every_line_once(tmp_path: Path) -> None:
    from tlsdetect.spark.read import _range_bytes

    data = b"".join(f"line {i} {'x' * (i % 13)}\n".encode() for i in range(500))
    f = tmp_path / "log"
    f.write_bytes(data)
    for size in (1, 7, 64, 1000, len(data)):
        got = b"".join(_range_bytes(f, s, min(s + size, len(data))) for s in range(0, len(data), size))
        assert got == data


def test_read_task_reads_and_enriches_as_the_cli_does() -> None:
    """A capture task goes through the registry's reader and the same enrichment stage as Inputs."""
    from tlsdetect.spark.read import ReadTask, read_task

    path = PROJECT_PCAPS / "tls12_stacks.pcap"
    got = pd.concat(list(read_task(ReadTask(0, 0, "pcap", str(path), 0, -1, []))), ignore_index=True)
    local = Inputs([str(path)]).read_all()
    for col in ("conn_id", "ja3", "ja4", "ja3s", "fingerprint_origin", "server_issuer_key"):
        assert got[col].astype(object).tolist() == local[col].astype(object).tolist(), col
