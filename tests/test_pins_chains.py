"""Observed chains as pin facts (tlsdetect.pins.chains): parsed once, leaf-only logs, why a chain is hidden."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import PROJECT_PCAPS
from tlsdetect import schema
from tlsdetect.pins.chains import chain_facts, hidden_reason, host_names
from tlsdetect.readers.pcap.engine import read_pcap


def test_each_distinct_chain_once_from_a_capture() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "intercepted.pcapng")
    facts = chain_facts(df)
    seen = df["server_chain"].notna().to_numpy()
    assert ((facts.codes >= 0) == seen).all()
    assert len(facts.chains) == len(set(df["server_chain"].dropna().astype(str)))
    for code, text in zip(facts.codes[seen], df["server_chain"][seen].astype(str), strict=True):
        assert list(facts.chains[code].spkis) == [c["spki"] for c in json.loads(text)]
    assert hidden_reason(df)[~seen].tolist() == ["tls13_encrypted"] * int((~seen).sum())


def test_leaf_only_logs_and_broken_json() -> None:
    df = schema.conform(pd.DataFrame({
        "sni": ["A.example.", "b.example", None],
        "server_chain": [None, "not json", None],
        "server_spki_sha256": ["x" * 43 + "=", None, None],
        "server_issuer": ["CN=Issuer", None, None],
        "resumed": [False, False, True],
    }))
    facts = chain_facts(df)
    assert facts.codes.tolist() == [0, -1, -1]
    assert facts.chains[0].partial
    assert facts.chains[0].leaf_issuer == "CN=Issuer"
    assert hidden_reason(df).tolist()[1:] == ["not_in_source", "resumed"]
    assert host_names(df).tolist() == ["a.example", "b.example", None]
