"""pin_violation and issuer_policy_violation (tlsdetect.detect.pin_signals): one check for score, stream, serve."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import PROJECT_PCAPS
from tests.test_envoy import record
from tests.test_tls import make_cert
from tlsdetect.detect.pin_signals import Policies
from tlsdetect.detect.scoring import score
from tlsdetect.pins.issuer_policy import parse_issuer_policy
from tlsdetect.pins.policy import read_policies
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.stream.loop import Processor
from tlsdetect.wire.tls import parse_der_certificate

TODAY = dt.date(2026, 12, 7)
INTER_DN = "CN=tlsdetect Sample Intermediate CA,O=tlsdetect"


@pytest.fixture(scope="module")
def sample_policies(tmp_path_factory: pytest.TempPathFactory) -> Policies:
    """Pins and an issuer rule for the sample CA, taken from the clean capture's chain (its intermediate)."""
    df, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    chain = json.loads(str(df["server_chain"].dropna().iloc[0]))
    path = tmp_path_factory.mktemp("p") / "sample.pins"
    path.write_text(f"tlsdetect-pins 1\ndomain sample.tlsdetect.test subdomains\npin ca {chain[1]['spki']}\n")
    issuers = parse_issuer_policy(f"tlsdetect-issuers 1\nname *.sample.tlsdetect.test\nissuer {INTER_DN}\n")
    return Policies(pins=read_policies([path]), issuers=issuers, today=TODAY)


def _codes(scored: pd.DataFrame, code: str) -> list[dict[str, str | None]]:
    return [r for rs in scored["reasons"] for r in rs if r["code"] == code]


def test_mitmproxy_legs_violate_both_policies_clean_traffic_none(sample_policies: Policies) -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "intercepted.pcapng")
    scored = score(df, None, policies=sample_policies)
    pins = _codes(scored, "pin_violation")
    assert len(pins) == 6
    assert all("known interception CA (mitmproxy)" in str(r["detail"]) for r in pins)
    assert all(str(r["observed"]).startswith("leaf:") and str(r["expected"]).startswith("ca:") for r in pins)
    issuers = _codes(scored, "issuer_policy_violation")
    assert len(issuers) == 6
    assert all("O=mitmproxy" in str(r["observed"]) for r in issuers)
    assert (scored.loc[scored["reasons"].map(lambda rs: any(r["code"] == "pin_violation" for r in rs)),
                       "verdict"] == "intercepted").all()
    clean, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    scored = score(clean, None, policies=sample_policies)
    assert _codes(scored, "pin_violation") == []
    assert _codes(scored, "issuer_policy_violation") == []


def test_without_policies_nothing_changes() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "intercepted.pcapng")
    a, b = score(df, None), score(df, None, policies=Policies())
    assert a["score"].tolist() == b["score"].tolist()
    assert _codes(a, "pin_violation") == []


def test_stream_and_rest_flag_what_batch_flags(tmp_path: Path) -> None:
    """An Envoy log line whose upstream leaf is not the pinned key: the stream's Processor, the REST
    scoring function and batch score give the same pin_violation."""
    from tlsdetect.serve.models import connections_frame

    pinned, stranger = make_cert("backend.test", "Good CA"), make_cert("backend.test", "Evil CA")
    pin = parse_der_certificate(pinned.public_bytes(serialization.Encoding.DER)).spki
    path = tmp_path / "p.pins"
    path.write_text(f"tlsdetect-pins 1\ndomain backend.test\npin leaf {pin}\n")
    policies = Policies(pins=read_policies([path]), today=TODAY)
    pem = stranger.public_bytes(serialization.Encoding.PEM).decode()
    line = record(requested_server_name="backend.test", upstream_peer_cert=quote(pem, safe=""))
    scored = Processor(None, policies=policies)(line.encode() + b"\n", 1, "envoy.log")
    assert "pin_violation" in json.dumps(scored.alerts)
    assert scored.rows == 1
    ok = Processor(None, policies=policies)(record(requested_server_name="backend.test", upstream_peer_cert=quote(
        pinned.public_bytes(serialization.Encoding.PEM).decode(), safe="")).encode() + b"\n", 1, "envoy.log")
    assert "pin_violation" not in json.dumps(ok.alerts)
    row = {"sni": "backend.test", "server_spki_sha256": parse_der_certificate(
        stranger.public_bytes(serialization.Encoding.DER)).spki, "server_issuer": "CN=Evil CA"}
    rest = score(connections_frame([row]), None, policies=policies)
    assert [r["code"] for r in rest["reasons"].iloc[0]] == ["pin_violation"]
