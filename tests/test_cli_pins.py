"""``tlsdetect pins lint``: exit codes for CI, table and JSONL output, --days, --observed, --today."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tests.pins_support import DATA, make_cert, openssl_pin
from tlsdetect.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["pins", "lint", *args])
    return result.exit_code, result.stdout, result.stderr


def _safe(tmp_path: Path, expires: str = "2027-06-01") -> Path:
    f = tmp_path / "safe.pins"
    pins = [base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2)]
    f.write_text(f"tlsdetect-pins 1\ndomain a.com expires {expires}\npin ca {pins[0]}\npin ca {pins[1]} backup\n")
    return f


def test_safe_policy_exits_zero(tmp_path: Path) -> None:
    code, out, err = run(str(_safe(tmp_path)), "--today", "2026-12-07")
    assert code == 0
    assert out == ""
    assert "1 rule(s), 2 pin(s): 0 error(s), 0 warning(s)" in err


def test_days_turns_a_far_expiry_into_a_warning_not_an_error(tmp_path: Path) -> None:
    code, out, _ = run(str(_safe(tmp_path)), "--today", "2026-12-07", "--days", "200")
    assert code == 0
    assert out.startswith("warning expiring")
    code, out, _ = run(str(_safe(tmp_path)), "--today", "2027-06-02")
    assert code == 1
    assert "expired on 2027-06-01" in out


def test_seed_errors_exit_one_and_jsonl_parses() -> None:
    seeds = sorted(str(p) for p in DATA.iterdir() if p.is_file())
    code, out, _ = run(*seeds, "--today", "2026-12-07", "--format", "jsonl")
    assert code == 1
    recs = [json.loads(line) for line in out.splitlines()]
    assert {tuple(r) for r in recs} == {("severity", "check", "source", "line", "domain", "message")}
    assert sum(r["severity"] == "error" for r in recs) == 4
    assert all(r["line"] is not None for r in recs)  # the seeds are text: every finding has its line


def test_observed_pem_makes_the_only_pins_no_backup(tmp_path: Path) -> None:
    certs = [make_cert(f"k{i}.example") for i in range(2)]
    pins = [openssl_pin(pem) for _, pem in certs]
    policy = tmp_path / "p.pins"
    policy.write_text(f"tlsdetect-pins 1\ndomain a.com expires 2027-06-01\npin ca {pins[0]}\npin leaf {pins[1]}"
                      " backup\n")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(certs[0][1])
    assert run(str(policy), "--observed", str(chain), "--today", "2026-12-07")[0] == 0
    chain.write_bytes(certs[0][1] + certs[1][1])
    code, out, _ = run(str(policy), "--observed", str(chain), "--today", "2026-12-07")
    assert code == 1
    assert "no_backup" in out
    assert "backup_in_use" in out


def test_unreadable_policy_exits_two_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<!DOCTYPE network-security-config [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                   "<network-security-config/>")
    code, out, err = run(str(bad))
    assert code == 2
    assert out == ""
    assert err.strip() == f"error: {bad}:1: refused: DTDForbidden (no DTD or entities allowed)"
    assert run(str(tmp_path / "missing"))[0] == 2
    assert run(str(_safe(tmp_path)), "--today", "tomorrow")[0] == 2  # click's usage error


def test_the_installed_command_runs_it() -> None:
    """The real entry point, in a process: ``python -m tlsdetect pins lint``."""
    done = subprocess.run([sys.executable, "-m", "tlsdetect", "pins", "lint", str(DATA / "seed.pins"),
                           "--today", "2026-12-07"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "overlap" in done.stdout
