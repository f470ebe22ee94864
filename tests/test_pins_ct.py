"""``tlsdetect pins ct`` (the command module; the lead registers it in the ``pins`` group)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import PROJECT_PCAPS, REFERENCE, needs_shared
from tlsdetect.cli.pins_ct import ct


def test_clean_sample_traffic_lists_nothing() -> None:
    res = CliRunner().invoke(ct, [str(PROJECT_PCAPS)])
    assert res.exit_code == 0, res.output
    assert "0 leaf/name pair(s) without SCTs: 0 error(s), 0 warning(s)" in res.output


@needs_shared("pcaps/reference")
def test_real_leaves_without_scts() -> None:
    """ssh2.pcapng: a Sophos private root's 2023 leaf for a public name, beside public leaves with SCTs;
    https3-301-get.pcap: a 2013 DigiCert leaf from before CT was required."""
    files = [str(REFERENCE / "ssh2.pcapng"), str(REFERENCE / "https3-301-get.pcap")]
    res = CliRunner().invoke(ct, [*files, "--json"])
    assert res.exit_code == 1  # an error line gates a CI job
    lines = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert [(x["sni"], x["level"], x["public_issuer"]) for x in lines] == [
        ("mcs2-cloudstation-eu-west-1.prod.hydra.sophos.com", "error", False), ("www.github.com", "warning", True)]
    assert lines[0]["not_before"].startswith("2023-03-14")
    text = CliRunner().invoke(ct, files)
    assert text.output.startswith("error: mcs2-cloudstation-eu-west-1.prod.hydra.sophos.com: leaf ")
    assert "1 error(s), 1 warning(s)" in text.output


def test_a_path_that_is_not_there() -> None:
    res = CliRunner().invoke(ct, ["/nonexistent/capture.pcap"])
    assert res.exit_code != 0
    assert "does not exist" in res.output or "no such file" in res.output


@pytest.mark.parametrize("flag", ["--keylog", "--engine"])
def test_it_takes_the_reading_options(flag: str) -> None:
    assert flag in CliRunner().invoke(ct, ["--help"]).output
