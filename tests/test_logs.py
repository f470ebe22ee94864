"""Format detection by content and the dead-letter file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tlsdetect.readers.logs import DeadLetter, LogFormatError, detect_format, sniff

from .conftest import PROJECT_PCAPS, SHARED, needs_shared

SAMPLES = SHARED / "samples"


def test_pcaps_are_detected_by_magic() -> None:
    for capture in PROJECT_PCAPS.glob("*.pcap*"):
        assert sniff(capture) == "pcap"


@needs_shared("samples/zeek", "samples/envoy/envoy_access.sample.jsonl")
def test_shared_samples_are_detected_by_content() -> None:
    for log in (SAMPLES / "zeek").iterdir():
        assert sniff(log) == "zeek", log.name
    assert sniff(SAMPLES / "envoy" / "envoy_access.sample.jsonl") == "envoy"


def test_content_not_name_decides(tmp_path: Path) -> None:
    eve = tmp_path / "ssl.log"  # a misleading name
    eve.write_text(json.dumps({"timestamp": "2024-01-01T00:00:00+0000", "flow_id": 1, "event_type": "tls"}) + "\n")
    assert sniff(eve) == "suricata"
    zeek = tmp_path / "eve.json.gz"
    with gzip.open(zeek, "wt") as fh:
        fh.write("#separator \\x09\n#set_separator\t,\n#path\tssl\n#fields\tts\tuid\n#types\ttime\tstring\n")
    assert sniff(zeek) == "zeek"
    assert detect_format([eve, zeek]) == {"suricata": [eve], "zeek": [zeek]}


def test_unknown_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    with pytest.raises(LogFormatError, match=r"notes\.txt: not a capture"):
        detect_format([junk])
    assert detect_format([junk], "envoy") == {"envoy": [junk]}
    with pytest.raises(LogFormatError, match="unknown input format"):
        detect_format([junk], "syslog")


def test_dead_letter_records_file_line_and_reason(tmp_path: Path) -> None:
    out = tmp_path / "dead.jsonl"
    with DeadLetter(out) as letters:
        letters.add("a.log", 7, "bad json: Expecting value", "{nope")
        letters.add("a.log", 9, "bad json: Extra data", b"\xff{}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"file": "a.log", "line": 7, "reason": "bad json: Expecting value", "text": "{nope"}
    assert rows[1]["text"] == "\\xff{}"
    assert letters.stats.bad_lines == 2
    assert letters.stats.reasons["bad json"] == 2


def test_dead_letter_write_and_sync_put_a_record_on_disk_before_close(tmp_path: Path) -> None:
    """The stream writes refused alerts through ``write`` and calls ``sync`` before its checkpoint moves:
    after ``sync`` another reader sees every record, while the file is still open."""
    path = tmp_path / "dead.jsonl"
    letters = DeadLetter(path)
    assert letters.writes
    letters.add("a.log", 7, "bad json: x", b"\xff{")
    letters.write({"file": "a.log", "line": None, "sink": "jsonl:-", "reason": "refused", "text": "{}"})
    letters.sync()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    letters.close()
    assert records == [{"file": "a.log", "line": 7, "reason": "bad json: x", "text": "\\xff{"},
                       {"file": "a.log", "line": None, "sink": "jsonl:-", "reason": "refused", "text": "{}"}]
    assert not DeadLetter(None).writes
