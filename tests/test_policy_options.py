"""--pins and --issuer-policy (tlsdetect.cli.policy_options) on score, stream and serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import PROJECT_PCAPS
from tlsdetect.cli.policy_options import load_policies
from tlsdetect.cli.score import score_cmd
from tlsdetect.cli.serve import serve
from tlsdetect.cli.stream import stream
from tlsdetect.serve.holder import Settings
from tlsdetect.serve.holder import load_policies as settings_policies


@pytest.fixture
def policy_files(tmp_path: Path) -> tuple[Path, Path]:
    from tlsdetect.readers.pcap.engine import read_pcap

    clean, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    inter = json.loads(str(clean["server_chain"].iloc[0]))[1]
    pins = tmp_path / "p.pins"
    pins.write_text(f"tlsdetect-pins 1\ndomain sample.tlsdetect.test subdomains\npin ca {inter['spki']}\n")
    issuers = tmp_path / "issuers.txt"
    issuers.write_text(f"tlsdetect-issuers 1\nname *.sample.tlsdetect.test\nissuer {inter['subject']}\n")
    return pins, issuers


def test_score_flags_the_intercepted_legs(policy_files: tuple[Path, Path]) -> None:
    pins, issuers = policy_files
    res = CliRunner().invoke(score_cmd, [str(PROJECT_PCAPS / "intercepted.pcapng"), "--no-progress", "-f", "jsonl",
                                         "--pins", str(pins), "--issuer-policy", str(issuers)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.stdout.splitlines()]
    flagged = [r for r in rows if any(x["code"] == "pin_violation" for x in r["reasons"])]
    assert len(flagged) == 6
    assert all(any(x["code"] == "issuer_policy_violation" for x in r["reasons"]) for r in flagged)
    assert all(r["server_port"] == 36095 for r in flagged)  # mitmproxy's port: the forged legs only


def test_a_bad_policy_stops_every_command_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pins"
    bad.write_text("tlsdetect-pins 1\npin leaf nonsense\n")
    for cmd, args in ((score_cmd, [str(PROJECT_PCAPS / "tls12_stacks.pcap")]),
                      (stream, ["--source", str(tmp_path / "none.log"), "--state", str(tmp_path / "s"),
                                "--sink", f"file:{tmp_path / 'alerts.jsonl'}"]),
                      (serve, ["--baseline", str(tmp_path)])):
        res = CliRunner().invoke(cmd, [*args, "--pins", str(bad)])
        assert res.exit_code == 2, (cmd.name, res.output)
        assert "bad.pins" in res.output
        assert "Traceback" not in res.output


def test_serve_settings_carry_the_files_to_every_worker(policy_files: tuple[Path, Path]) -> None:
    pins, issuers = policy_files
    settings = Settings(baseline_dir=Path("."), pins=(str(pins),), issuer_policy=(str(issuers),))
    again = Settings.from_json(settings.to_json())  # how a worker process receives them
    assert again.pins == (str(pins),)
    loaded = settings_policies(again)
    assert loaded is not None
    assert len(loaded.pins) == 1
    assert len(loaded.issuers) == 1
    assert settings_policies(Settings(baseline_dir=Path("."))) is None
    assert load_policies((), ()) is None
