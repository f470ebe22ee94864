"""The anomaly ledger: what it writes and counts for a table and a read's skips, and through the CLI
(``--weird FILE`` and the summary line) on a crafted capture the engine gives up on in two ways."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from tlsdetect import schema
from tlsdetect.cli import main
from tlsdetect.readers.base import ReadStats
from tlsdetect.sinks.weird import EVENT_FIELDS, TRUNCATED, WeirdLog, event_counts

from .craft import (
    client_hello_body,
    handshake_message,
    ipv4_tcp_frame,
    pcap_file,
    server_hello_body_tls13,
    tcp_conversation,
    tls_records,
)


def _table(reasons: list[str | None], truncated: list[str | None] | None = None) -> pd.DataFrame:
    df = pd.DataFrame({
        "ts": pd.to_datetime([1_700_000_000_000_000_000 + i for i in range(len(reasons))], utc=True),
        "source": "pcap", "conn_id": [f"x#{i}" for i in range(len(reasons))], "client_ip": "10.0.0.1",
        "client_port": [40000 + i for i in range(len(reasons))], "server_ip": "10.0.0.2", "server_port": 443,
        "incomplete": reasons, "truncated": truncated or [None] * len(reasons),
    })
    return schema.conform(df)


def test_events_are_the_incomplete_rows_with_their_tuple(tmp_path: Path) -> None:
    path = tmp_path / "weird.jsonl"
    ledger = WeirdLog(path)
    ledger.observe(_table([None, "hello_cut", None, "depth_exceeded"]))
    ledger.observe(_table([None]))
    ledger.observe(_table(["hello_cut"]))
    stats = ReadStats()
    stats.skipped["unsupported link type 105 (IEEE 802.11)"] = 7
    ledger.finish(stats)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["name"] for e in lines] == ["hello_cut", "depth_exceeded", "hello_cut",
                                          "unsupported link type 105 (IEEE 802.11)"]
    assert list(lines[0]) == list(EVENT_FIELDS)
    assert (lines[1]["conn_id"], lines[1]["client_port"], lines[1]["server_port"]) == ("x#3", 40003, 443)
    assert lines[0]["ts"] == "2023-11-14T22:13:20.000000Z"
    assert lines[3] == {"name": "unsupported link type 105 (IEEE 802.11)", "count": 7}
    assert ledger.counts == {"hello_cut": 2, "depth_exceeded": 1, "unsupported link type 105 (IEEE 802.11)": 7}
    assert ledger.summary() == (f"weird: 10 events: unsupported link type 105 (IEEE 802.11) 7, hello_cut 2, "
                                f"depth_exceeded 1; see {path}")


def test_a_truncated_flight_is_an_event_that_says_where(tmp_path: Path) -> None:
    """A row whose hellos were whole but a later flight was cut: ``record_truncated`` with the 4-tuple and
    ``where``; a row both incomplete and truncated is one event of each, counted alike in the summary."""
    path = tmp_path / "weird.jsonl"
    ledger = WeirdLog(path)
    table = _table([None, "overlap_conflict", None], ["server_flight", "server_chain", None])
    ledger.observe(table)
    ledger.finish(ReadStats())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["name"], e["client_port"], e.get("where")) for e in lines] == [
        ("overlap_conflict", 40001, None), (TRUNCATED, 40000, "server_flight"), (TRUNCATED, 40001, "server_chain")]
    assert list(lines[1]) == [*EVENT_FIELDS, "where"]
    assert ledger.counts == event_counts(table) == {"record_truncated": 2, "overlap_conflict": 1}
    assert ledger.summary() == f"weird: 3 events: record_truncated 2, overlap_conflict 1; see {path}"


def test_nothing_given_up_is_no_line_and_no_summary(tmp_path: Path) -> None:
    ledger = WeirdLog(tmp_path / "w.jsonl")
    ledger.observe(_table([None, None]))
    ledger.observe(_table([]).drop(columns=["incomplete"]))
    ledger.finish(ReadStats())
    assert (tmp_path / "w.jsonl").read_text() == ""
    assert ledger.summary() is None
    counting = WeirdLog()
    counting.observe(_table(["hello_cut"]))
    assert counting.summary() == "weird: 1 events: hello_cut 1 (add --weird FILE for each one)"


def _capture(tmp_path: Path) -> Path:
    """Two connections: a hello cut by the capture's end, one past the reassembly depth."""
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    deep = b"".join(tls_records(handshake_message(1, client_hello_body(padding=60_000)), 1))
    cut = tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), [(True, 0, hello[:100])])
    frames = [ipv4_tcp_frame("10.0.0.3", "10.0.0.2", 40001, 443, 1 + i, 1, 0x18, deep[i : i + 1400])
              for i in range(0, len(deep), 1400)]
    path = tmp_path / "weird.pcap"
    path.write_bytes(cut + pcap_file((1_700_000_100, i, f) for i, f in enumerate(frames))[24:])
    return path


def test_cli_writes_the_ledger_and_says_so(tmp_path: Path) -> None:
    capture, ledger = _capture(tmp_path), tmp_path / "weird.jsonl"
    for command in (["fingerprint", "-f", "jsonl"], ["score", "-f", "jsonl"]):
        result = CliRunner().invoke(main, [*command, "--no-progress", "--weird", str(ledger), "-o",
                                           str(tmp_path / "out"), str(capture)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        events = sorted((e["name"], e["client_ip"]) for e in map(json.loads, ledger.read_text().splitlines()))
        assert events == [("depth_exceeded", "10.0.0.3"), ("hello_cut", "10.0.0.1")]
        assert f"weird: 2 events: depth_exceeded 1, hello_cut 1; see {ledger}" in result.output


def test_cli_ledger_has_a_flight_cut_by_the_capture(tmp_path: Path) -> None:
    """A TLS 1.3 connection whose server flight the capture cuts: not incomplete (its row scores like any
    other), but a ``record_truncated`` event with where it was cut, in the file and the summary."""
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    server = tls_records(handshake_message(2, server_hello_body_tls13()), 1 << 14)[0]
    flight = server + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x05\xdc" + bytes(600)  # a 1500-byte record, cut
    capture, ledger = tmp_path / "cut.pcap", tmp_path / "weird.jsonl"
    segments = [(True, 0, hello), (False, 0, flight)]
    capture.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), segments))
    for command in (["fingerprint", "-f", "jsonl"], ["score", "-f", "jsonl"]):
        result = CliRunner().invoke(main, [*command, "--no-progress", "--weird", str(ledger), "-o",
                                           str(tmp_path / "out"), str(capture)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert [(e["name"], e["where"], e["client_port"], e["server_port"]) for e in events] == [
            ("record_truncated", "server_flight", 40000, 443)]
        assert f"weird: 1 events: record_truncated 1; see {ledger}" in result.output
    scored = json.loads((tmp_path / "out").read_text().splitlines()[0])
    assert scored["verdict"] == "ok"
