"""The policy table: dispatch on content, strictness, hostile inputs, and which rule covers a host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pins_support import DATA
from tlsdetect.pins import policy
from tlsdetect.pins.policy import (
    POLICY_COLUMNS,
    PolicyError,
    covers,
    covers_many,
    match_rules,
    most_specific,
    pin_sets,
    read_policies,
)

SEEDS = sorted(p for p in DATA.iterdir() if p.is_file())
FUZZ = sorted((DATA / "fuzz").iterdir())
#: Hostile files that are valid policies all the same (no pins), read quickly.
ACCEPTED = {"deep_elements.xml"}


def test_every_seed_read_by_its_reader_whatever_its_name(tmp_path: Path) -> None:
    formats = {}
    for seed in SEEDS:
        renamed = tmp_path / f"{seed.stem}.txt"  # dispatch on content, not extension
        shutil.copy(seed, renamed)
        df = read_policies([renamed])
        assert tuple(df.columns) == POLICY_COLUMNS
        formats[seed.name] = set(df["format"])
        assert set(df["source"]) == {str(renamed)}
    assert formats == {"android_seed.xml": {"android"}, "envoy_seed.yaml": {"envoy"}, "ios_seed.plist": {"ios"},
                       "okhttp_seed.yaml": {"okhttp"}, "seed.pins": {"tlsdetect"},
                       "trustkit_seed.json": {"trustkit"}}


def test_many_files_one_table_and_their_notes() -> None:
    df = read_policies(SEEDS)
    assert len(df) == sum(len(read_policies([s])) for s in SEEDS)
    assert {n["check"] for n in df.attrs["notes"]} == {"override_pins", "debug_overrides", "client_pins",
                                                       "report_only"}


def test_strict_raises_on_a_malformed_pin_lenient_keeps_it(tmp_path: Path) -> None:
    f = tmp_path / "p.pins"
    f.write_text("tlsdetect-pins 1\ndomain a.com\npin ca c2hvcnQ=\n")
    with pytest.raises(PolicyError, match=r"p.pins:3: pin 'c2hvcnQ=' decodes to 5 bytes"):
        read_policies([f])
    assert read_policies([f], strict=False)["pin"].tolist() == ["c2hvcnQ="]


def test_unreadable_unknown_and_oversized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        read_policies([tmp_path / "missing.xml"])
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(PolicyError, match="not a pin policy"):
        read_policies([tmp_path / "x.json"])
    monkeypatch.setattr(policy, "MAX_BYTES", 10)
    with pytest.raises(PolicyError, match="larger than"):
        read_policies([DATA / "seed.pins"])


@pytest.mark.parametrize("path", FUZZ, ids=[p.name for p in FUZZ])
def test_fuzz_corpus_one_line_errors(path: Path) -> None:
    """XXE, entity and alias bombs, deep nesting, broken plists: a one-line error naming the file, or no pins."""
    if path.name in ACCEPTED:
        assert read_policies([path]).empty
        return
    with pytest.raises(PolicyError) as err:
        read_policies([path])
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_mutated_seeds_never_crash(seed: Path, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    raw = bytearray(seed.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[at:at + data.draw(st.integers(1, 40))]
        else:
            raw[at:at] = raw[at:at + data.draw(st.integers(1, 40))]
    f = tmp_path_factory.mktemp("m") / seed.name
    f.write_bytes(bytes(raw))
    message, columns = None, POLICY_COLUMNS
    try:
        columns = tuple(read_policies([f], strict=False).columns)
    except PolicyError as exc:
        message = str(exc)
    assert message is None or "\n" not in message
    assert columns == POLICY_COLUMNS


@pytest.mark.parametrize(("rule", "subs", "host", "hit"), [
    ("example.com", False, "example.com", True),
    ("example.com", False, "EXAMPLE.com.", True),
    ("example.com", False, "a.example.com", False),
    ("example.com", True, "a.b.example.com", True),
    ("example.com", True, "badexample.com", False),
    ("", True, "anything.org", True),
    ("", False, "anything.org", False),
])
def test_covers(rule: str, subs: bool, host: str, hit: bool) -> None:
    assert covers(rule, subs, host) is hit


@given(st.lists(st.sampled_from(["example.com", "a.example.com", "x.a.example.com", "example.org", "com"]),
                min_size=1, max_size=20), st.booleans())
def test_covers_many_equals_covers_per_row(hosts: list[str], subs: bool) -> None:
    col = pd.Series([*hosts, None])
    got = covers_many("example.com", subs, col)
    assert got.tolist() == [covers("example.com", subs, h) for h in hosts] + [False]


def test_most_specific_rule_wins() -> None:
    rules = pd.DataFrame({"domain": ["example.com", "api.example.com", "api.example.com", ""],
                          "include_subdomains": [True, False, True, True]}, index=[10, 11, 12, 13])
    hosts = pd.Series(["api.example.com", "v1.api.example.com", "www.example.com", "other.net", None])
    assert most_specific(rules, hosts).tolist()[:4] == [11, 12, 10, 13]  # exact beats the same name with subs
    assert pd.isna(most_specific(rules.iloc[:3], hosts).iloc[3])


def test_pin_sets_one_row_per_rule() -> None:
    sets = pin_sets(read_policies([DATA / "seed.pins", DATA / "okhttp_seed.yaml"]))
    assert sets[["domain", "include_subdomains", "format"]].values.tolist() == [
        ["example.com", True, "tlsdetect"], ["static.example.com", False, "tlsdetect"],
        ["example.com", True, "okhttp"], ["api.example.net", False, "okhttp"]]
    assert [len(p) for p in sets["pins"]] == [3, 0, 2, 1]
    assert ("r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E=", "ca") in sets.loc[0, "pins"]


def test_match_rules_most_specific_per_file_union_for_okhttp(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("okhttp:\n  - pattern: '**.a.com'\n    pins: [sha256/" + "A" * 43 + "=]\n"
                  "  - pattern: b.a.com\n    pins: [sha256/" + "B" * 43 + "=]\n")
    sets = pin_sets(read_policies([DATA / "seed.pins", ok]))
    hosts = pd.Series(["static.example.com", "www.example.com", "b.a.com", "c.a.com", "none.org", None,
                       "b.a.com"])
    got = match_rules(sets, hosts)
    by_host = {h: sorted((sets.loc[r, "domain"], sets.loc[r, "format"]) for r in g["rule"])
               for h, g in got.groupby("host")}
    assert by_host == {
        "static.example.com": [("static.example.com", "tlsdetect")],  # the unpinned narrower rule wins
        "www.example.com": [("example.com", "tlsdetect")],
        "b.a.com": [("a.com", "okhttp"), ("b.a.com", "okhttp")],  # OkHttp: both patterns' pins
        "c.a.com": [("a.com", "okhttp")],
    }
