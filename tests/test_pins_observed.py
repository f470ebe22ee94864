"""``pins check`` and ``pins suggest`` (tlsdetect.cli.pins_observed) through click, on real captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def _get(port: int, sni: str, ca: Path) -> None:
    """One TLS 1.2 HTTPS request with Python's ssl (the client verifies the chain it is given)."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(f"GET /hello.txt HTTP/1.0\r\nHost: {sni}\r\n\r\n".encode())
        while tls.recv(65536):
            pass


@pytest.mark.slow
def test_live_capture_through_mitmproxy(tmp_path: Path) -> None:
    """A fresh PKI, openssl s_server, mitmdump in the path, dumpcap: the pin is the intermediate's SPKI from the
    real openssl pipeline; every connection through mitmproxy is a violation, every direct one a match, and
    mitmproxy's own upstream legs (TLS 1.3) are hidden."""
    import contextlib
    import importlib
    import subprocess
    import sys
    from typing import Any

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    mc: Any = importlib.import_module("make_captures")
    if not mc.MITMDUMP.exists():
        pytest.skip(f"mitmdump not installed at {mc.MITMDUMP} (scripts/setup.sh)")
    pki = mc.make_pki(tmp_path)
    pem = subprocess.run(["openssl", "x509", "-in", str(pki.inter_cert), "-pubkey", "-noout"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pem, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, capture_output=True,
                            check=True).stdout
    pin = subprocess.run(["base64"], input=digest, capture_output=True, check=True).stdout.decode().strip()
    policy = tmp_path / "app.pins"
    policy.write_text(f"tlsdetect-pins 1\ndomain sample.tlsdetect.test subdomains expires 2027-06-30\npin ca {pin}\n")
    confdir = tmp_path / "mitmproxy"
    confdir.mkdir()
    addon = tmp_path / "addon.py"
    addon.write_text(mc.MITM_ADDON.format(log=str(tmp_path / "upstream.jsonl")))
    cap = tmp_path / "live.pcapng"
    names = ["a.sample.tlsdetect.test", "b.sample.tlsdetect.test"]
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(mc.openssl_server(pki, tmp_path, "upstream"))
        opts = ("--set", f"ssl_verify_upstream_trusted_ca={pki.root_cert}", "--set", "http2=false")
        proxy = stack.enter_context(mc.mitmdump(confdir, tmp_path / "mitmdump.log", upstream.port, addon, opts))
        stack.enter_context(mc.packet_capture(cap, [proxy, upstream.port], "dumpcap", "pcapng", tmp_path))
        for sni in names:
            _get(upstream.port, sni, pki.root_cert)  # direct: the real chain
            _get(proxy, sni, confdir / "mitmproxy-ca-cert.pem")  # through mitmproxy: a forged chain
    res = CliRunner().invoke(check_cmd, [str(policy), "--observed", str(cap), "--no-progress", "-f", "jsonl",
                                         "--today", "2026-12-07"])
    assert res.exit_code == EXIT_VIOLATIONS, res.output
    conns = [json.loads(ln) for ln in res.stdout.splitlines() if '"record": "connection"' in ln]
    by = {(int(c["server_port"]), c["status"], c["sni"]) for c in conns}
    assert {(proxy, "violation", n) for n in names} <= by
    assert {(upstream.port, "match", n) for n in names} <= by
    through = [c for c in conns if int(c["server_port"]) == proxy]
    assert len(through) == 2
    assert all(c["status"] == "violation" and "mitmproxy" in c["issuer"] for c in through)
    legs = [c for c in conns if int(c["server_port"]) == upstream.port and c["status"] != "match"]
    assert all(c["status"] == "hidden" and c["reason"] == "tls13_encrypted" for c in legs)
