"""read_envoy's file handling: format check on the first lines, empty and gzip files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.schema import validate

from .test_envoy import SAMPLE, needs_sample, read_envoy, write


@needs_sample
def test_sample_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "access.log.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    assert len(read_envoy([gz])) == 10


def test_not_an_envoy_file(tmp_path: Path) -> None:
    eve = json.dumps({"event_type": "tls", "src_ip": "1.2.3.4", "flow_id": 1})
    with pytest.raises(LogFormatError, match="not an Envoy"):
        read_envoy([write(tmp_path, [eve] * 3)])
    with pytest.raises(LogFormatError):
        read_envoy([write(tmp_path, ["garbage"] * 3, "g.log")], text_format="%DOWNSTREAM_REMOTE_ADDRESS% x")


def test_empty_file(tmp_path: Path) -> None:
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, [])], dead_letter=dead, collapse=True)
    validate(df)
    assert len(df) == 0
    assert dead.stats.files == 1
