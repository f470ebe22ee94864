"""``tlsdetect lookup`` as a user reads it: short by default, the long form with ``--verbose`` and in JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.lookup import describe, short_release, short_sources


@pytest.mark.parametrize(("stack", "version", "short"), [
    ("curl", "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.19 zlib/1.2.13 brotli/1.0.9",
     "curl 7.88.1"),
    ("python", "Python 3.11.7 (OpenSSL 3.0.19 27 Jan 2026)", "python 3.11.7"),
    ("openssl", "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)", "openssl 3.0.19"),
    ("node", "node v20.20.2 (OpenSSL 3.0.19)", "node 20.20.2"),
    ("java", 'openjdk version "17.0.15" 2025-04-15; OpenJDK Runtime Environment (build 17.0.15+6)', "java 17.0.15"),
    ("gnutls", "gnutls-cli 3.7.9", "gnutls 3.7.9"),
    ("mitmproxy", "Mitmproxy: 11.0.2", "mitmproxy 11.0.2"),
    ("odd", "no number here", "odd"),
])  # fmt: skip
def test_short_release(stack: str, version: str, short: str) -> None:
    """issue 14 item 11: a stack is named by its name and first version number."""
    assert short_release(stack, version) == short


def test_short_sources() -> None:
    assert short_sources("a.pcap (x); b.pcap (y); c.json") == "a.pcap (x) (+2 more)"
    assert short_sources("only one") == "only one"


def _long_stack() -> dict[str, str]:
    """A knowledge-base stack whose description is the long ``--version`` output (curl's)."""
    stacks = load_knowledge().stacks
    row = stacks[stacks["version"].str.len() > 150].iloc[0]
    return {k: str(row[k]) for k in ("stack", "version", "value", "source")}


def test_lookup_text_is_short_verbose_and_json_are_long() -> None:
    """issue 14 item 11: `lookup FP` printed the 200-character stack description ("curl curl 7.88.1 (...)")."""
    st = _long_stack()
    run = CliRunner()
    short = run.invoke(main, ["lookup", st["value"]])
    assert short.exit_code == 0, short.output
    assert st["version"] not in short.output
    assert re.search(rf"TLS stack {re.escape(st['stack'])} \d+(\.\d+)+; source: ", short.output), short.output
    assert max(len(ln) for ln in short.output.splitlines()) < 200
    verbose = run.invoke(main, ["lookup", st["value"], "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert f"TLS stack {st['stack']} {st['version']}; source: {st['source']}" in verbose.output
    as_json = run.invoke(main, ["lookup", st["value"], "--json"])
    info = json.loads(as_json.output)
    assert st["version"] in [s["version"] for s in info["stacks"]]
    assert any(st["version"] in w and st["source"] in w for w in info["why"])


def _envoy_chromium_ja4() -> str:
    """A real Envoy 1.40 JA4 of Chromium 156 (tests/data/chromium_envoy_ja4.csv): its JA4_c keeps GREASE."""
    import pandas as pd

    data = pd.read_csv(Path(__file__).resolve().parent / "data" / "chromium_envoy_ja4.csv")
    rows = data[(data["log"] == "envoy") & (data["client_id"] == "chromium") & (data["sni"].notna())]
    return str(rows["ja4"].iloc[0])


def test_lookup_of_chromium_as_envoy_prints_it_names_its_ja4_ab() -> None:
    """issue 17: `lookup` of Chromium's JA4 as Envoy logs it answered `unknown` with no hint."""
    value = _envoy_chromium_ja4()
    info = describe(value, None)
    assert info["verdict"] == "unknown"
    hint = next(w for w in info["why"] if w.startswith("JA4_ab of "))
    assert "Chromium" in hint or "chromium" in hint
    assert "Envoy <= 1.40" in hint
    assert "JA4_c differs" in hint
    assert {s["match"] for s in info["similar"]} == {"ja4_ab"}
    out = CliRunner().invoke(main, ["lookup", value])
    assert out.exit_code == 0
    assert "JA4_ab of " in out.output


def test_lookup_of_a_known_stack_without_sni_is_that_stack() -> None:
    st = load_knowledge().stacks
    curl = st[(st["kind"] == "ja4") & (st["value"] == "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6")]
    assert len(curl)
    info = describe("t13i3111h2_e8f1e7e78f70_b26ce05bbdd6", None)
    assert info["verdict"] == "ok"
    assert any("other SNI flag" in w for w in info["why"])
    assert any(s["match"] == "stack" and s["value"] == curl["value"].iloc[0] for s in info["similar"])


def test_lookup_names_a_baseline_client_with_the_same_ja4_ab() -> None:
    import pandas as pd

    from tlsdetect.detect.baseline import Baseline

    rows = pd.DataFrame({"client_id": pd.array(["web-7"] * 3, dtype="string"),
                         "ja4": pd.array(["t13d1999h2_0123456789ab_000000000001"] * 3, dtype="string")})
    info = describe("t13d1999h2_0123456789ab_00000000000f", Baseline(model=False).fit(rows))
    assert any("baseline client web-7" in w and "JA4_ab of" in w for w in info["why"])
    assert info["verdict"] == "unknown"
    none = describe("t13d1999h2_ba9876543210_00000000000f", Baseline(model=False).fit(rows))
    assert none["similar"] == []
    assert not any("JA4_ab of" in w for w in none["why"])
