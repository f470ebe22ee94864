"""``--keylog`` end to end: a capture of real ``openssl s_client -keylogfile`` connections to ``openssl s_server``
(a root CA -> intermediate -> leaf made for the test), read by both capture engines.

Per connection the TLS 1.3 chains the native engine decrypts equal the ones tshark decrypts (and the
certificates the server was given), for AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305, an mTLS client
certificate included; a TLS 1.3 connection the key log does not cover is ``no_key``, a key log of another run
``decrypt_failed``, and a TLS 1.2 connection keeps its chain from clear with a null ``keylog``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import ROOT
from tlsdetect import schema
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tshark import read_pcap_tshark
from tlsdetect.wire.keylog import read_keylog

pytestmark = pytest.mark.slow

SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
SUITE_IDS = {"TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302, "TLS_CHACHA20_POLY1305_SHA256": 0x1303}
CERT_COLUMNS = ("server_subject", "server_issuer", "server_cert_sha256", "server_chain", "server_issuer_akid",
                "peer_subject", "peer_issuer", "peer_cert_sha256")


def _client(port: int, sni: str, args: list[str]) -> None:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni, "-ign_eof", *args]
    done = subprocess.run(cmd, input=b"GET /hello.txt HTTP/1.0\r\n\r\n", capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode()[-500:]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("dumpcap") is None or shutil.which("tshark") is None:
        pytest.skip("dumpcap/tshark not installed (Debian tshark)")
    sys.path.insert(0, str(ROOT / "scripts"))
    mc: Any = importlib.import_module("make_captures")
    work = tmp_path_factory.mktemp("keylog")
    pki = mc.make_pki(work)
    cap, keys, other = work / "keylog.pcapng", work / "keys.log", work / "other.log"
    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(mc.openssl_server(pki, work, "plain"))
        mtls = stack.enter_context(mc.openssl_server(pki, work, "mtls", mtls=True))
        stack.enter_context(mc.packet_capture(cap, [plain.port, mtls.port], "dumpcap", "pcapng", work))
        for suite in SUITES:
            _client(plain.port, "kl.tlsdetect.test", ["-tls1_3", "-ciphersuites", suite, "-keylogfile", str(keys)])
        _client(mtls.port, "mtls.tlsdetect.test", ["-tls1_3", "-keylogfile", str(keys), "-cert", str(pki.client_cert),
                                                   "-key", str(pki.client_key), "-cert_chain", str(pki.inter_cert)])
        _client(plain.port, "nokey.tlsdetect.test", ["-tls1_3"])
        _client(plain.port, "tls12.tlsdetect.test", ["-tls1_2", "-keylogfile", str(keys)])
        _client(plain.port, "other.tlsdetect.test", ["-tls1_3", "-keylogfile", str(other)])
        # a public name answered by the test's private CA without SCTs: what a forged leaf looks like
        _client(plain.port, "www.example.com", ["-tls1_3", "-keylogfile", str(keys)])
    # the last connection's secrets replaced by another run's: same randoms, wrong secrets
    lines = other.read_text().splitlines()
    flipped = [ln[:-2] + ("00" if not ln.endswith("00") else "11") if ln and not ln.startswith("#") else ln
               for ln in lines]
    wrong = work / "wrong.log"
    wrong.write_text("\n".join(flipped) + "\n")
    combined = work / "combined.log"
    combined.write_text(keys.read_text() + wrong.read_text())
    return {"cap": cap, "keys": combined, "pki": pki, "mc": mc}


def _by_sni(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in CERT_COLUMNS:
        out[c] = schema.as_text(out[c])
    return out.set_index(out["sni"].astype(str)).sort_values("ts")


def test_both_engines_decrypt_the_same_chains(capture: dict[str, Any]) -> None:
    keylog = read_keylog(capture["keys"])
    native, n_stats = read_pcap(capture["cap"], keylog=keylog)
    slow, _ = read_pcap(capture["cap"], keylog=keylog, fast_lane=False)
    wire, t_stats = read_pcap_tshark(capture["cap"], keylog=keylog)
    a, b, c = _by_sni(native), _by_sni(slow), _by_sni(wire)
    assert len(a) == len(c) == 8
    for col in (*CERT_COLUMNS, "keylog", "tls_version", "sh_cipher", "ja4", "ja3s"):
        assert a[col].astype(str).to_dict() == c[col].astype(str).to_dict(), col
        assert a[col].astype(str).to_dict() == b[col].astype(str).to_dict(), col
    mc, pki = capture["mc"], capture["pki"]
    leaf, inter = mc.describe_cert(pki.server_cert), mc.describe_cert(pki.inter_cert)
    for sni, suite in zip(("kl.tlsdetect.test",) * 3, SUITES, strict=True):
        rows = a[(a.index == sni) & (a["sh_cipher"] == SUITE_IDS[suite])]
        assert len(rows) == 1, suite
        row = rows.iloc[0]
        assert row["keylog"] == "decrypted"
        assert row["server_cert_sha256"] == leaf["sha256"]
        assert [c["sha256"] for c in json.loads(row["server_chain"])] == [
            leaf["sha256"], inter["sha256"]]
    m = a.loc["mtls.tlsdetect.test"]
    assert m["keylog"] == "decrypted"
    assert m["peer_cert_sha256"] == mc.describe_cert(pki.client_cert)["sha256"]
    assert a.loc["nokey.tlsdetect.test", "keylog"] == "no_key"
    assert pd.isna(a.loc["nokey.tlsdetect.test", "server_chain"]) or a.loc["nokey.tlsdetect.test", "server_chain"] \
        in ("None", "<NA>", "nan")
    assert a.loc["other.tlsdetect.test", "keylog"] == "decrypt_failed"
    assert pd.isna(a.loc["tls12.tlsdetect.test", "keylog"])
    assert a.loc["tls12.tlsdetect.test", "server_cert_sha256"] == leaf["sha256"]
    for stats in (n_stats, t_stats):
        assert stats.counts["keylog_decrypted"] == 5
        assert stats.skipped["keylog_no_key"] == 1
        assert stats.skipped["keylog_decrypt_failed"] == 1


def test_without_a_key_log_nothing_changes(capture: dict[str, Any]) -> None:
    native, _ = read_pcap(capture["cap"])
    assert native["keylog"].isna().all()
    tls13 = (native["tls_version"] == "TLSv1.3").to_numpy(dtype=bool)
    assert tls13.sum() == 7
    assert native.loc[tls13, "server_chain"].isna().all()


def test_the_cli_reads_it(capture: dict[str, Any], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlsdetect.cli import main

    out = tmp_path / "rows.jsonl"
    for engine in ("native", "tshark"):
        res = CliRunner().invoke(main, ["fingerprint", str(capture["cap"]), "--keylog", str(capture["keys"]),
                                        "--engine", engine, "-f", "jsonl", "-o", str(out)])
        assert res.exit_code == 0, res.output
        rows = pd.read_json(out, lines=True)
        assert (rows["keylog"] == "decrypted").sum() == 5, engine
        assert "TLS 1.3 server handshake secrets" in res.output


def test_a_decrypted_chain_is_checked_for_ct(capture: dict[str, Any]) -> None:
    """The CT signal needs the leaf: with the key log the forged-looking TLS 1.3 leaf is seen and judged."""
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.inputs import Inputs

    for keylog, engine in ((read_keylog(capture["keys"]), "native"), (read_keylog(capture["keys"]), "tshark"),
                           (None, "native")):
        scored = score(Inputs([str(capture["cap"])], engine=engine, keylog=keylog).read_all(), None)
        row = scored[scored["sni"] == "www.example.com"].iloc[0]
        codes = {r["code"] for r in row["reasons"]}
        assert ("public_name_no_sct" in codes) is (keylog is not None), engine
        if keylog is not None:
            assert row["server_sct_count"] == 0
            assert row["verdict"] == "suspicious"
        others = scored[scored["sni"] != "www.example.com"]
        assert not any(r["code"] == "public_name_no_sct" for rs in others["reasons"] for r in rs)  # .test names
