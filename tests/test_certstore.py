"""The run's certificate store (tlsdetect.readers.certstore): a fingerprint-only row gets its certificate's pin."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import PROJECT_PCAPS
from tests.test_envoy import record
from tlsdetect import schema
from tlsdetect.readers.certstore import CertStore
from tlsdetect.readers.inputs import Inputs
from tlsdetect.readers.pcap.engine import read_pcap


def test_a_capture_gives_a_fingerprint_only_log_its_pins(tmp_path: Path) -> None:
    """An Envoy log that names the upstream certificate by SHA-256 only, read in one run with the capture that
    showed that certificate: the log's rows get the pin, and a certificate the run never showed stays missing."""
    df, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    leaf_sha, leaf_pin = str(df["server_cert_sha256"].iloc[0]), str(df["server_spki_sha256"].iloc[0])
    log = tmp_path / "envoy.jsonl"
    log.write_text(record(upstream_peer_fingerprint_256=leaf_sha) + "\n"
                   + record(connection_id=8, upstream_peer_fingerprint_256="ab" * 32) + "\n")
    table = Inputs([str(log), str(PROJECT_PCAPS / "tls12_stacks.pcap")]).read_all()
    envoy = table[table["source"].astype(str) != table["source"].astype(str).iloc[-1]]
    assert len(envoy) == 2
    assert envoy["server_spki_sha256"].iloc[0] == leaf_pin
    assert pd.isna(envoy["server_spki_sha256"].iloc[1])
    assert str(table["server_spki_sha256"].dtype) == "category"


def test_intermediates_are_learned_and_present_pins_are_kept() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "tls12_stacks.pcap")
    store = CertStore()
    store.learn(df)
    assert len(store.pins) == 2  # one leaf and one intermediate behind six connections
    inter_sha = next(s for s in store.pins if s != str(df["server_cert_sha256"].iloc[0]))
    rows = schema.conform(pd.DataFrame({"server_cert_sha256": [inter_sha, inter_sha],
                                        "server_spki_sha256": [None, "kept" + "=" * 40]}))
    out = store.fill(rows)
    assert out["server_spki_sha256"].astype(str).tolist() == [store.pins[inter_sha], "kept" + "=" * 40]
    assert store.filled == 1
    assert rows["server_spki_sha256"].isna().iloc[0]  # the caller's table is not changed
