"""The project's own captures (``pcaps/``): ground truth from the manifest and from tshark; the
sample baseline fitted on them; the README's first command on them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import CAPTURES_MANIFEST, PROJECT_PCAPS, ROOT, needs_tshark

MANIFEST = json.loads(CAPTURES_MANIFEST.read_text())
CAPTURES = sorted(MANIFEST["captures"])
VERSION = {"TLSv1.3": "TLSv1.3", "TLSv1.2": "TLSv1.2"}


def _connections(name: str) -> list[dict[str, Any]]:
    return MANIFEST["captures"][name]["connections"]  # type: ignore[no-any-return]


def test_captures_are_small() -> None:
    total = sum((PROJECT_PCAPS / name).stat().st_size for name in CAPTURES)
    assert total < 1_000_000


@pytest.mark.parametrize("name", CAPTURES)
def test_every_recorded_connection_is_found(name: str) -> None:
    df, stats = read_pcap(PROJECT_PCAPS / name)
    assert not stats.warnings
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    for conn in _connections(name):
        row = rows[conn["client_port"]]
        assert row["server_port"] == conn["server_port"]
        assert row["sni"] == conn["sni"]
        assert row["tls_version"] == VERSION[conn["tls_version_negotiated"]]
        expected_alpn = conn["alpn_offered"][0] if conn["alpn_offered"] else None
        assert row["alpn"] == expected_alpn
    assert len(df) == len(_connections(name))


def test_split_hello_connect_preamble_and_mtls() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "edge_cases.pcapng")
    by_scenario = {c["scenario"]: c for c in _connections("edge_cases.pcapng")}
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    pki = MANIFEST["pki"]
    mtls = rows[next(c for s, c in by_scenario.items() if "mtls" in s)["client_port"]]
    assert mtls["peer_subject"] == pki["client_leaf"]["subject"]
    assert mtls["peer_cert_sha256"] == pki["client_leaf"]["sha256"]
    assert mtls["server_cert_sha256"] == pki["server_leaf"]["sha256"]
    assert mtls["server_issuer"] == pki["intermediate_ca"]["subject"]
    for scenario, conn in by_scenario.items():
        assert rows[conn["client_port"]]["ja4"] is not None, scenario


@needs_tshark
@pytest.mark.parametrize("name", CAPTURES)
def test_ja3_equals_tshark(name: str) -> None:
    """tshark 4.0's own JA3/JA3S is the oracle (DESIGN.md), run live on our captures."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(PROJECT_PCAPS / name), "-Y", "tls.handshake.type==1 || tls.handshake.type==2",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tls.handshake.ja3", "-e",
         "tls.handshake.ja3s"],
        capture_output=True, text=True, check=True,
    ).stdout
    df, _ = read_pcap(PROJECT_PCAPS / name)
    rows = {r["client_port"]: r for r in df.to_dict("records")}
    checked = 0
    for line in out.splitlines():
        sport, dport, ja3, ja3s = line.split("\t")
        if ja3:
            assert rows[int(sport)]["ja3"] == ja3
            checked += 1
        if ja3s:
            assert rows[int(dport)]["ja3s"] == ja3s
            checked += 1
    assert checked == 2 * len(_connections(name))


def _certificate_in_capture(name: str, sha256: str) -> bytes:
    """The DER certificate with this SHA-256, found in the capture's raw bytes (a chain sent on
    loopback sits in one segment), so the expected values do not come from tlsdetect's parser."""
    import hashlib
    import re

    data = (PROJECT_PCAPS / name).read_bytes()
    for m in re.finditer(rb"\x30\x82(..)\x30\x82", data, re.DOTALL):
        der = data[m.start() : m.start() + 4 + int.from_bytes(m.group(1), "big")]
        if hashlib.sha256(der).hexdigest() == sha256:
            return der
    raise AssertionError(f"{sha256} not in {name}")


@pytest.mark.parametrize("fast_lane", [True, False])
def test_issuer_akid_is_the_intermediate_ca_key(fast_lane: bool) -> None:
    """TLS 1.2 leaves (server and mTLS client) name the key of the intermediate CA that signed them."""
    from cryptography import x509

    pki = MANIFEST["pki"]
    der = _certificate_in_capture("tls12_stacks.pcap", pki["intermediate_ca"]["sha256"])
    inter = x509.load_der_x509_certificate(der)
    ski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    df, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap", fast_lane=fast_lane)
    tls12 = df[df["tls_version"] == "TLSv1.2"]
    assert len(tls12) > 0
    assert tls12["server_cert_sha256"].eq(pki["server_leaf"]["sha256"]).all()
    assert tls12["server_issuer_akid"].eq(ski).all()
    assert df.loc[df["tls_version"] == "TLSv1.3", "server_issuer_akid"].isna().all()  # certificates encrypted
    assert str(df["server_issuer_akid"].dtype) == "category"
    chain = json.loads(tls12["server_chain"].iloc[0])
    assert [c["sha256"] for c in chain] == [pki["server_leaf"]["sha256"], pki["intermediate_ca"]["sha256"]]
    assert chain[1]["ski"] == chain[0]["akid"] == ski

    edge, _ = read_pcap(PROJECT_PCAPS / "edge_cases.pcapng", fast_lane=fast_lane)
    mtls = edge[edge["peer_cert_sha256"] == pki["client_leaf"]["sha256"]]
    assert len(mtls) == 1
    assert mtls["peer_issuer_akid"].iloc[0] == ski
    assert edge.loc[edge["peer_cert_sha256"].isna(), "peer_issuer_akid"].isna().all()


# --- the interception demo (issue 14 item 6) --------------------------------------------------------


def _rows(name: str) -> dict[int, dict[str, Any]]:
    df, _ = read_pcap(PROJECT_PCAPS / name)
    return {int(r["client_port"]): r for r in df.to_dict("records")}


def test_captures_and_their_generator_live_apart() -> None:
    """Issue 14 item 7: ``pcaps/`` holds exactly the captures of the manifest; generator and docs are elsewhere."""
    assert sorted(p.name for p in PROJECT_PCAPS.rglob("*") if p.is_file()) == CAPTURES
    assert MANIFEST["generator"] == "scripts/make_captures.py"
    assert (ROOT / MANIFEST["generator"]).is_file()
    assert MANIFEST["captures_dir"] == "pcaps"
    # make_eval_corpus imports make_captures from its new place and reuses its mitmdump driver
    probe = (
        "import json, sys; sys.path.insert(0, 'scripts'); import make_eval_corpus as m; "
        "print(json.dumps([m.mc.__file__, str(m.mc.DEFAULT_MANIFEST), m.mc.CLEAN_CAPTURES, m.mc.mitmdump.__name__]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    generator, manifest, clean_stems, _ = json.loads(out)
    assert Path(generator) == ROOT / "scripts" / "make_captures.py"
    assert Path(manifest) == CAPTURES_MANIFEST
    labels = {name: c["label"] for name, c in MANIFEST["captures"].items()}
    assert {n for n, lab in labels.items() if lab == "clean"} == {n for n in CAPTURES if n.split(".")[0] in clean_stems}
    assert "intercepted" in labels.values()


def test_mitmproxy_client_legs_show_the_forged_issuer() -> None:
    """Issue 14 item 6: every stack went through mitmproxy on TLS 1.2, so its forged certificate is in clear."""
    conns = _connections("intercepted.pcapng")
    rows = _rows("intercepted.pcapng")
    mitm_ca = MANIFEST["pki"]["mitmproxy_ca"]
    client_legs = [c for c in conns if c["scenario"] == "mitmproxy-client-leg"]
    upstream_legs = [c for c in conns if c["scenario"] == "mitmproxy-upstream-leg"]
    assert {c["stack"] for c in client_legs} >= {"openssl", "curl", "python", "gnutls", "node"}
    assert len(upstream_legs) == len(client_legs)
    for conn in client_legs:
        row = rows[conn["client_port"]]
        assert conn["label"] == "intercepted"
        assert row["tls_version"] == "TLSv1.2"
        assert row["server_issuer"] == mitm_ca["subject"]
        assert row["server_issuer_akid"] == mitm_ca["ski"]
        assert row["server_cert_sha256"] != MANIFEST["pki"]["server_leaf"]["sha256"]
    for conn in upstream_legs:
        assert conn["stack"] == "mitmproxy"
        assert rows[conn["client_port"]]["server_port"] != client_legs[0]["server_port"]
    # mitmproxy re-originates every connection with its own hello: one JA4 for all the stacks it relayed
    assert len({rows[c["client_port"]]["ja4"] for c in upstream_legs}) < len({c["stack"] for c in client_legs})


def test_lookalike_client_certificate() -> None:
    """Issue 14 item 6: the impostor's client certificate names the sample root but was signed by another key."""
    pki = MANIFEST["pki"]
    conn = next(c for c in _connections("intercepted.pcapng") if c["scenario"] == "mtls-lookalike-ca")
    row = _rows("intercepted.pcapng")[conn["client_port"]]
    assert pki["lookalike_root_ca"]["subject"] == pki["root_ca"]["subject"]
    assert pki["lookalike_root_ca"]["ski"] != pki["root_ca"]["ski"]
    assert row["tls_version"] == "TLSv1.2"
    assert row["peer_subject"] == pki["client_leaf"]["subject"]  # the known workload's identity
    assert row["peer_cert_sha256"] == pki["impostor_client_leaf"]["sha256"]
    assert row["peer_issuer"] == pki["root_ca"]["subject"]
    assert row["peer_issuer_akid"] == pki["lookalike_root_ca"]["ski"]


# --- the sample baseline ----------------------------------------------------------------------------

SAMPLE = ROOT / "baselines" / "sample"
MESH_CA_PEM = ROOT / MANIFEST["mesh_ca_pem"]


def test_sample_baseline_is_fitted_on_the_clean_captures_with_the_given_mesh_ca() -> None:
    """Issue 14 items 5/6: ``baselines/sample`` learned only the clean captures and was given the sample PKI's CA."""
    from cryptography import x509

    text = MESH_CA_PEM.read_text()
    assert "PRIVATE KEY" not in text
    certs = x509.load_pem_x509_certificates(text.encode())
    pki = MANIFEST["pki"]
    assert [c.subject.rfc4514_string() for c in certs] == [pki["root_ca"]["subject"], pki["intermediate_ca"]["subject"]]
    meta = json.loads((SAMPLE / "meta.json").read_text())
    clean = sum(len(c["connections"]) for c in MANIFEST["captures"].values() if c["label"] == "clean")
    assert meta["summary"]["connections"] == clean
    mesh = meta["summary"]["mesh_cas"]
    assert {m["origin"] for m in mesh} == {"given"}
    assert {m["ski"] for m in mesh} == {pki["root_ca"]["ski"], pki["intermediate_ca"]["ski"]}
    assert "baselines/sample-mesh-ca.pem" in (ROOT / "baselines" / "README.md").read_text()


# --- the README's first command --------------------------------------------------------------------

MAIN_COMMAND = ("score", "pcaps/", "--baseline", "baselines/sample")
VERDICT = re.compile(r"\s(ok|suspicious|intercepted)(?:\s+(\S.*?))?\s*$")


def _tlsdetect(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command line from the repository root, as the README does."""
    exe = ROOT / ".venv" / "bin" / "tlsdetect"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "tlsdetect"]
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_readme_main_command_shows_interception_next_to_clean_traffic() -> None:
    """Issue 14 items 6 and 7: the README's first command flags rows (with reasons) next to ok rows, and
    warns about no skipped file."""
    assert "tlsdetect " + " ".join(MAIN_COMMAND) in (ROOT / "README.md").read_text()
    proc = _tlsdetect(*MAIN_COMMAND)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" not in proc.stderr.lower(), proc.stderr
    verdicts = []
    for line in proc.stdout.splitlines():
        if (m := VERDICT.search(line)) and "pcap" not in line.split()[0]:
            verdicts.append(m.group(1))
            if m.group(1) != "ok":
                assert m.group(2), f"a flagged row without reasons: {line}"
    total = sum(len(c["connections"]) for c in MANIFEST["captures"].values())
    assert len(verdicts) == total, proc.stdout
    assert "intercepted" in verdicts
    assert "ok" in verdicts
    summary = re.search(r"(\d+) connections: (\d+) intercepted, (\d+) suspicious, (\d+) ok", proc.stdout + proc.stderr)
    assert summary is not None
    assert int(summary.group(1)) == total
    assert int(summary.group(2)) >= 1
    assert int(summary.group(4)) >= 1


def test_demo_verdicts_follow_the_ground_truth(tmp_path: Path) -> None:
    """Issue 14 item 6: every connection the manifest labels intercepted is flagged with reasons an analyst can
    read, and every clean one is ok (the sample baseline gives no false alarm on the traffic it learned)."""
    out = tmp_path / "scored.jsonl"
    proc = _tlsdetect(*MAIN_COMMAND, "-f", "jsonl", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    scored = {(int(r["client_port"]), int(r["server_port"])): r for r in map(json.loads, out.read_text().splitlines())}
    expected_codes = {"mitmproxy-client-leg": "interception_ca", "mtls-lookalike-ca": "mesh_ca_lookalike"}
    for name, capture in MANIFEST["captures"].items():
        for conn in capture["connections"]:
            row = scored[(conn["client_port"], conn["server_port"])]
            where = f"{name} tcp_stream {conn['tcp_stream']} ({conn['scenario']}, {conn['stack']})"
            if conn["label"] == "clean":
                assert row["verdict"] == "ok", f"{where}: {row['reasons']}"
                continue
            assert row["verdict"] != "ok", where
            assert row["reasons"], where
            for reason in row["reasons"]:
                assert len(reason["detail"]) > 30, reason
            if conn["scenario"] in expected_codes:
                assert expected_codes[conn["scenario"]] in {r["code"] for r in row["reasons"]}, where
