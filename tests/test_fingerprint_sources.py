"""The per-source fingerprint table: README agrees with the code; which origins share a JA4_c."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from tlsdetect.detect.fingerprint_sources import C_GROUPS, SOURCES, SPEC, c_group, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_the_code_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "### Which source computes which fingerprint how" in readme
    assert markdown_table() in readme


def test_every_origin_a_reader_writes_is_in_the_table() -> None:
    """The constants the readers put in ``fingerprint_origin`` (found in their source) are all described."""
    written: set[str] = set()
    for path in (ROOT / "tlsdetect").rglob("*.py"):
        text = path.read_text()
        written |= set(re.findall(r'"fingerprint_origin"\]? = _constant\("(\w+)"', text))
        written |= set(re.findall(r'"fingerprint_origin": _constant\("(\w+)"', text))
        written |= set(re.findall(r'"fingerprint_origin"\] = schema\.strings_from_codes\(\["(\w+)"\]', text))
    written |= {"computed", "suricata"}  # fingerprint.py's np.where and the Suricata reader's per-row origin
    assert written >= {"computed", "envoy", "zeek"}
    assert written <= {s.origin for s in SOURCES}


def test_envoy_shares_no_ja4_c_with_the_spec_sources() -> None:
    origins = pd.Series(["computed", "zeek", "suricata", "envoy", None, "Envoy", "other-tool"], dtype="string")
    assert c_group(origins).tolist() == [SPEC, SPEC, SPEC, "envoy", SPEC, "envoy", "other-tool"]
    assert C_GROUPS["unknown"] == SPEC


def test_the_table_names_what_differs() -> None:
    envoy = next(s for s in SOURCES if s.origin == "envoy")
    assert "GREASE" in envoy.ja4_c
    assert "GREASE" in envoy.ja3
    assert envoy.ja4_ab.startswith("exact")
    assert "| `envoy` |" in markdown_table()
    assert "`computed`, `zeek`, `suricata` |" in markdown_table()
