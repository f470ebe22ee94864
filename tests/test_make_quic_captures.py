"""scripts/make_quic_captures.py's output in tests/data/quic: the captures hold what the manifest says.

The expected fingerprints there are the tshark engine's; here they are checked again by an independent
decryption of the QUIC Initials (benchmarks/quic_protect.py), so the native engine is measured against
values two readers agree on.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from tests.conftest import ROOT, needs_tshark

sys.path.insert(0, str(ROOT / "benchmarks"))
mq: Any = importlib.import_module("make_quic_pcap")
qp: Any = importlib.import_module("quic_protect")
DATA = ROOT / "tests" / "data" / "quic"
MANIFEST = json.loads((DATA / "MANIFEST.json").read_text())


def _conns(capture: str) -> list[dict[str, Any]]:
    return list(MANIFEST["captures"][capture]["connections"])


def test_manifest_has_every_stack_and_case() -> None:
    quic, dtls = _conns("quic"), _conns("dtls")
    assert Counter(c["stack"] for c in quic) == {"chromium": 3, "aioquic": 2}
    assert {c["transport"] for c in quic} == {"quic"}
    assert {c["transport"] for c in dtls} == {"dtls"}
    assert all(c["ja4"].startswith("q13d") for c in quic)
    assert sorted(c["tls_version"] for c in dtls) == ["DTLSv1.0", "DTLSv1.2", "DTLSv1.2"]
    # every DTLS hello was sent twice (HelloVerifyRequest cookie): the second is recorded
    assert all(c["ja4_retry"] == c["ja4"] for c in dtls)
    assert {c["ja4"][:4] for c in dtls} == {"dd2d", "dd1d"}


def test_independent_decryption_gives_the_manifest_ja4() -> None:
    pairs = mq.extract_pairs(DATA / "quic.pcapng")
    found = Counter(mq.expected_fingerprints(p)[0] for p in pairs)
    assert found == Counter(c["ja4"] for c in _conns("quic"))
    assert {p.version for p in pairs} == {qp.V1, qp.V2}
    # Chromium's ML-KEM hello does not fit one Initial: the reader must reassemble across packets
    assert max(len(p.client_hello) for p in pairs) > 1200


def test_the_retry_case_has_a_retry_and_a_token_bearing_initial() -> None:
    kinds = Counter[str]()
    for *_, data in mq._udp_payloads(DATA / "quic.pcapng"):
        for start, _end, ptype in mq._safe_packets(data):
            version = int.from_bytes(data[start + 1:start + 5], "big")
            if version != qp.V1:
                continue
            dcid_end = start + 6 + data[start + 5]
            token_len = data[dcid_end + 1 + data[dcid_end]]  # after the SCID; < 64, one byte
            kinds["retry" if ptype == 3 else "initial with token" if ptype == 0 and token_len else "other"] += 1
    assert kinds["retry"] >= 1
    assert kinds["initial with token"] >= 1


@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("capture", ["quic", "dtls"])
def test_tshark_engine_still_gives_the_manifest(capture: str) -> None:
    res = subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "--engine", "tshark",
                          str(DATA / f"{capture}.pcapng"), "-f", "jsonl", "--no-progress"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    rows = {(r["server_port"], r["client_port"]): r for r in map(json.loads, res.stdout.splitlines())}
    for c in _conns(capture):
        row = rows[(c["server_port"], c["client_port"])]
        assert {k: row[k] for k in ("sni", "ja4", "ja3", "ja3s", "ja4_retry")} == {
            k: c[k] for k in ("sni", "ja4", "ja3", "ja3s", "ja4_retry")}
