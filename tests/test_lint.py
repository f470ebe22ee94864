"""pins lint: each check fires on the pin set made to trip it, and stays quiet on a safe one."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from tests.pins_support import DATA
from tlsdetect.pins.lint import FINDING_COLUMNS, lint, unobserved_pins
from tlsdetect.pins.policy import read_policies

TODAY = dt.date(2026, 12, 7)


def pin(i: int) -> str:
    return base64.b64encode(bytes([i]) * 32).decode()


def _lint(tmp_path: Path, body: str, *, days: int = 30, observed: set[str] | None = None,
          name: str = "p.pins") -> pd.DataFrame:
    f = tmp_path / name
    f.write_text("tlsdetect-pins 1\n" + body)
    return lint(read_policies([f], strict=False), today=TODAY, days=days, observed=observed)


def _checks(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(df["severity"], df["check"], df["domain"], strict=True))


def test_a_safe_pin_set_has_no_findings(tmp_path: Path) -> None:
    df = _lint(tmp_path, f"domain a.com subdomains expires 2027-06-01\npin ca {pin(1)}\npin leaf {pin(2)} backup\n")
    assert tuple(df.columns) == FINDING_COLUMNS
    assert df.empty


@pytest.mark.parametrize(("body", "expected"), [
    (f"domain a.com expires 2027-06-01\npin ca {pin(1)}\n", [("error", "no_backup", "a.com")]),
    (f"domain a.com expires 2027-06-01\npin ca {pin(1)}\npin ca {pin(1)} backup\n",
     [("error", "no_backup", "a.com"), ("error", "duplicate", "a.com")]),
    (f"domain a.com expires 2027-06-01\npin ca {pin(1)}\npin ca c2hvcnQ= backup\n",
     [("error", "no_backup", "a.com"), ("error", "malformed", "a.com")]),
    (f"domain a.com expires 2027-06-01\npin ca {pin(1)}\npin leaf {pin(2)}\n", [("error", "no_backup", "a.com")]),
    (f"domain a.com expires 2026-12-06\npin ca {pin(1)}\npin ca {pin(2)} backup\n", [("error", "expired", "a.com")]),
    (f"domain a.com expires 2027-01-06\npin ca {pin(1)}\npin ca {pin(2)} backup\n",
     [("warning", "expiring", "a.com")]),
    (f"domain a.com expires 2027-01-07\npin ca {pin(1)}\npin ca {pin(2)} backup\n", []),  # 31 days: not yet
    (f"domain a.com\npin ca {pin(1)}\npin ca {pin(2)} backup\n", [("warning", "no_expiry", "a.com")]),
    (f"domain a.com expires 2027-06-01\npin leaf {pin(1)}\npin leaf {pin(2)} backup\n",
     [("warning", "leaf_only", "a.com")]),
])
def test_each_check(tmp_path: Path, body: str, expected: list[tuple[str, str, str]]) -> None:
    assert _checks(_lint(tmp_path, body)) == expected


def test_overlap_when_a_narrower_rule_drops_pins(tmp_path: Path) -> None:
    head = f"domain a.com subdomains expires 2027-06-01\npin ca {pin(1)}\npin ca {pin(2)} backup\n"
    same = f"domain b.a.com expires 2027-06-01\npin ca {pin(1)}\npin ca {pin(2)} backup\n"
    drop = f"domain c.a.com expires 2027-06-01\npin ca {pin(1)}\npin ca {pin(3)} backup\n"
    df = _lint(tmp_path, head + same + drop + "domain d.a.com\ndomain other.com\n")
    overlaps = df[df["check"] == "overlap"]
    assert overlaps["domain"].tolist() == ["c.a.com", "d.a.com"]
    assert overlaps["message"].str.contains("drops 1 of the 2").tolist() == [True, False]
    assert overlaps["line"].tolist() == [9, 11]  # a rule's first pin, or its domain line when it has none


def test_okhttp_unions_so_no_overlap(tmp_path: Path) -> None:
    text = (f"okhttp:\n  - pattern: '**.a.com'\n    pins: [sha256/{pin(1)}, sha256/{pin(2)}]\n"
            f"  - pattern: b.a.com\n    pins: [sha256/{pin(3)}, sha256/{pin(4)}]\n")
    f = tmp_path / "ok.yaml"
    f.write_text(text)
    df = lint(read_policies([f]), today=TODAY)
    assert "overlap" not in set(df["check"])


def test_observed_chains_decide_the_backup(tmp_path: Path) -> None:
    body = f"domain a.com expires 2027-06-01\npin ca {pin(1)}\npin ca {pin(2)} backup\n"
    assert _checks(_lint(tmp_path, body, observed={pin(1)})) == []
    assert _checks(_lint(tmp_path, body, observed={pin(1), pin(2)})) == [
        ("error", "no_backup", "a.com"), ("warning", "backup_in_use", "a.com")]
    assert unobserved_pins({pin(1), pin(2)}, {pin(1)}) == {pin(2)}


def test_seeds_errors_first_and_notes_mapped() -> None:
    df = lint(read_policies(sorted(p for p in DATA.iterdir() if p.is_file())), today=TODAY)
    order = df["severity"].map({"error": 0, "warning": 1, "info": 2})
    assert order.is_monotonic_increasing
    assert set(df.loc[df["check"] == "override_pins", "severity"]) == {"warning"}
    assert set(df.loc[df["check"].isin(["debug_overrides", "client_pins", "report_only"]), "severity"]) == {"info"}
    errors = df[df["severity"] == "error"]
    assert sorted(errors["domain"]) == ["api.example.net", "cdn.example.com", "internal.example.com",
                                        "login.example.net"]  # every single-pin rule, and nothing else
    assert "*" in set(df["domain"])  # the file-wide debug-overrides note


def test_a_file_that_pins_nothing(tmp_path: Path) -> None:
    f = tmp_path / "nsc.xml"
    f.write_text("<network-security-config><base-config/></network-security-config>")
    df = lint(read_policies([f]), today=TODAY)
    assert _checks(df) == [("warning", "no_pins", "*")]
    assert pd.isna(df.loc[0, "line"])
