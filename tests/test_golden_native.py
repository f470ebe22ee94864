"""Golden tests: the native engine against the reference corpus, stream by stream.

Expected JA4 values come from FoxIO/Arkime (spec-corrected where the tools deviate) and JA3/JA3S
from tshark 4.0's own ``tls.handshake.ja3`` fields: both independent of this code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pandas as pd
import pytest

from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import REFERENCE, ja3_streams, ja4_streams, needs_reference, reference_files

pytestmark = needs_reference

#: TCP streams the native engine deliberately does not fingerprint, with the reason.
EXCEPTIONS: dict[tuple[str, int], str] = {
    ("arkime_openvpn_synthetic.pcap", 0): "TLS inside the OpenVPN control channel (opcode/session-id/"
    "packet-id framing); neither tshark nor FoxIO dissect it, only Arkime does",
    ("arkime_openvpn_synthetic.pcap", 1): "TLS inside the OpenVPN control channel (as stream 0)",
}

#: UDP streams (QUIC, DTLS) the native engine deliberately does not fingerprint, with the reason.
UDP_EXCEPTIONS: dict[tuple[str, int], str] = {
    ("arkime_openvpn_synthetic.pcap", 0): "TLS inside the OpenVPN control channel over UDP (Arkime labels it "
    "'q'); neither tshark nor FoxIO dissect it, and it is no QUIC Initial",
    ("arkime_openvpn_synthetic.pcap", 1): "as udp 0, over IPv6",
}

#: Connections the native engine finds that the reference tools do not report.
EXTRA: dict[str, str] = {
    "socks4-https.pcap": "the ClientHello segment was not captured; the server's ServerHello follows the "
    "8-byte SOCKS4 reply out of order, which tshark/FoxIO never dissect as TLS. Only JA3S is known.",
}

JA4_FIELDS = ("ja4", "ja4_r", "ja4_o", "ja4_ro")


@cache
def _rows(name: str) -> dict[tuple[str, int, str, int], dict[str, Any]]:
    df, _ = read_pcap(REFERENCE / name)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    return {(r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]): r for r in rows}


def _udp_cases() -> list[Any]:
    return [
        pytest.param(name, s, id=f"{name}:udp{s['stream']}", marks=[pytest.mark.xfail(
            strict=True, reason=UDP_EXCEPTIONS[(name, s["stream"])])] if (name, s["stream"]) in UDP_EXCEPTIONS else [])
        for name in reference_files()
        for s in ja4_streams(name, "udp")
    ]


def _cases(kind: str) -> list[Any]:
    cases = []
    for name in reference_files():
        streams = ja4_streams(name, "tcp") if kind == "ja4" else ja3_streams(name, "tcp")
        for s in streams:
            if kind == "ja3" and s["proto"] != "tls":
                continue
            marks = []
            if (name, s["stream"]) in EXCEPTIONS:
                marks.append(pytest.mark.xfail(strict=True, reason=EXCEPTIONS[(name, s["stream"])]))
            cases.append(pytest.param(name, s, id=f"{name}:tcp{s['stream']}", marks=marks))
    return cases


@pytest.mark.parametrize(("name", "stream"), _cases("ja4"))
def test_ja4_matches_reference(name: str, stream: dict[str, Any]) -> None:
    row = _rows(name).get(stream["tuple"])
    assert row is not None, f"no connection for {stream['tuple']}"
    for field in JA4_FIELDS:
        if field in stream:
            assert row[field] == stream[field], field
    if stream.get("additional_client_hellos_ja4"):
        assert row["ja4_retry"] == stream["additional_client_hellos_ja4"][0]
        assert row["hello_retry"] is True
    if stream.get("sni"):
        assert row["sni"] == stream["sni"]


@pytest.mark.parametrize(("name", "stream"), _udp_cases())
def test_udp_ja4_matches_reference(name: str, stream: dict[str, Any]) -> None:
    """QUIC Initials (decrypted here) and DTLS hellos: JA4 with ``q``/``d``, JA4S where the reference has it."""
    row = _rows(name).get(stream["tuple"])
    assert row is not None, f"no connection for {stream['tuple']}"
    assert row["transport"] in ("quic", "dtls")
    assert row["ja4"][0] == {"quic": "q", "dtls": "d"}[row["transport"]]
    for field in JA4_FIELDS:
        if field in stream:
            assert row[field] == stream[field], field
    if stream.get("sni"):
        assert row["sni"] == stream["sni"]


def test_every_udp_stream_with_a_fingerprint_is_covered() -> None:
    """Every expected QUIC/DTLS connection is found, none invented: 54 QUIC and 5 DTLS in the corpus."""
    counts = {"quic": 0, "dtls": 0}
    for name in reference_files():
        expected = {s["tuple"] for s in ja4_streams(name, "udp") if (name, s["stream"]) not in UDP_EXCEPTIONS}
        got = {t for t, r in _rows(name).items() if r["transport"] != "tcp"}
        assert got == expected, name
        for t in got:
            counts[_rows(name)[t]["transport"]] += 1
    assert counts == {"quic": 54, "dtls": 5}


@pytest.mark.parametrize(("name", "stream"), _cases("ja3"))
def test_ja3_matches_tshark(name: str, stream: dict[str, Any]) -> None:
    row = _rows(name).get(stream["tuple"])
    assert row is not None, f"no connection for {stream['tuple']}"
    if stream.get("ja3"):
        assert row["ja3"] == stream["ja3"][0]
        assert row["ja3_full"] == stream["ja3_full"][0]
        if len(stream["ja3"]) > 1:  # HelloRetryRequest: tshark lists both hellos
            assert row["ja3_retry"] == stream["ja3"][1]
    if stream.get("ja3s"):
        assert row["ja3s"] == stream["ja3s"][0]
        assert row["ja3s_full"] == stream["ja3s_full"][0]


def test_every_tcp_stream_with_a_fingerprint_is_covered() -> None:
    """No connection the reference knows may be missing, and none may be invented."""
    for name in reference_files():
        expected = {s["tuple"] for s in ja3_streams(name, "tcp") if s["proto"] == "tls"}
        expected |= {s["tuple"] for s in ja4_streams(name, "tcp")}
        expected -= {
            s["tuple"] for s in ja4_streams(name, "tcp") if (name, s["stream"]) in EXCEPTIONS
        }
        got = {t for t, r in _rows(name).items() if r["transport"] == "tcp"}
        assert expected <= got, f"{name}: missing {sorted(expected - got)}"
        extra = got - expected
        if name in EXTRA:
            assert len(extra) == 1, EXTRA[name]
            row = _rows(name)[extra.pop()]
            assert row["ja3"] is None
            assert row["ja3s"] is not None
        # A hello that began and was cut (arkime_synthetic's truncated 69-byte hello): no
        # fingerprint to compare, so the reference skips it; the row must say why it has none.
        cut = {t for t in extra if _rows(name)[t]["incomplete"] is not None}
        assert all(_rows(name)[t]["ja3"] is None for t in cut)
        extra -= cut
        assert not extra, f"{name}: connections the reference does not know: {sorted(extra)}"


def test_negative_control_has_no_tls() -> None:
    df, stats = read_pcap(REFERENCE / "CVE-2018-6794.pcap")
    assert len(df) == 0
    assert stats.counts["packets"] > 0


def test_certificates_in_clear_are_read() -> None:
    """TLS 1.2 server certificates: leaf SHA-256 and issuer of the FoxIO x509 capture."""
    df, _ = read_pcap(REFERENCE / "browsers-x509.pcapng")
    tls12 = df[df["tls_version"] == "TLSv1.2"]
    assert len(tls12) > 0
    assert tls12["server_cert_sha256"].notna().all()
    assert tls12["server_cert_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert tls12["server_issuer"].str.contains("CN=").all()
    assert isinstance(tls12["ts"].dtype, pd.DatetimeTZDtype)


def test_table_passes_the_schema() -> None:
    from tlsdetect.schema import validate

    df, _ = read_pcap(REFERENCE / "tls-handshake.pcapng")
    validate(df)
