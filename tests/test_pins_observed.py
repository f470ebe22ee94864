"""``pins check`` and ``pins suggest`` (tlsdetect.cli.pins_observed) through click, on real captures."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import PROJECT_PCAPS
from tlsdetect.cli.pins_observed import EXIT_UNREADABLE, EXIT_VIOLATIONS, check_cmd, suggest_cmd

CAPTURE = str(PROJECT_PCAPS / "intercepted.pcapng")
CLEAN = str(PROJECT_PCAPS / "tls12_stacks.pcap")


def _suggested(tmp_path: Path) -> Path:
    out = tmp_path / "suggested.pins"
    res = CliRunner().invoke(suggest_cmd, [CLEAN, "--no-progress", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "never invents" in res.stderr
    return out


def test_check_names_the_intercepted_connections_and_exits_1(tmp_path: Path) -> None:
    pins = _suggested(tmp_path)
    res = CliRunner().invoke(check_cmd, [str(pins), "--observed", CAPTURE, "--no-progress", "--today", "2026-12-07"])
    assert res.exit_code == EXIT_VIOLATIONS, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("violation")]
    assert len(lines) == 6
    assert all("O=mitmproxy,CN=mitmproxy" in ln for ln in lines)
    assert res.stdout.count("tls13_encrypted") == 6
    assert "6 violation, 6 hidden" in res.stderr


def test_clean_traffic_exits_0_and_jsonl_holds_every_record(tmp_path: Path) -> None:
    pins = _suggested(tmp_path)
    res = CliRunner().invoke(check_cmd, [str(pins), "--observed", CLEAN, "--no-progress", "-f", "jsonl"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(ln) for ln in res.stdout.splitlines()]
    conns = [r for r in recs if r["record"] == "connection"]
    assert len(conns) == 6
    assert {r["status"] for r in conns} == {"match"}
    assert {r["record"] for r in recs} == {"connection", "domain", "pin"}
    assert all(r["matched"] >= 1 for r in recs if r["record"] == "pin")


def test_unreadable_policy_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pins"
    bad.write_text("tlsdetect-pins 1\ndomain\n")
    res = CliRunner().invoke(check_cmd, [str(bad), "--observed", CLEAN, "--no-progress"])
    assert res.exit_code == EXIT_UNREADABLE
    assert "bad.pins:2" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(check_cmd, [str(bad), "--observed", CLEAN, "--today", "soon"])
    assert res.exit_code == 2
    assert "not a date" in res.output


def test_suggest_table_and_jsonl() -> None:
    res = CliRunner().invoke(suggest_cmd, [CLEAN, "--no-progress", "-f", "jsonl"])
    assert res.exit_code == 0
    recs = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert {r["role"] for r in recs} == {"leaf", "intermediate"}
    res = CliRunner().invoke(suggest_cmd, [str(PROJECT_PCAPS / "tls13_stacks.pcapng"), "--no-progress"])
    assert res.exit_code == 0
    assert "no chain seen for" in res.stderr
    assert not [ln for ln in res.stdout.splitlines() if ln.startswith(("pin ", "domain "))]
