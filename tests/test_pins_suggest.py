"""Pin suggestions (tlsdetect.pins.suggest) from real captures: what they hold, and that they read back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from tests.conftest import PROJECT_PCAPS
from tlsdetect import schema
from tlsdetect.pins.check import check
from tlsdetect.pins.policy import read_policies
from tlsdetect.pins.suggest import BACKUP_REMINDER, pinfile_text, suggest
from tlsdetect.readers.pcap.engine import read_pcap


def test_leaf_and_intermediate_per_name_and_a_file_that_reads_back(tmp_path: Path) -> None:
    df, _ = read_pcap([PROJECT_PCAPS / "tls12_stacks.pcap", PROJECT_PCAPS / "tls13_stacks.pcapng"])
    pins, unseen = suggest(df)
    names = set(schema.as_text(df["sni"]).dropna())
    assert set(pins["domain"]) == names  # every name: its TLS 1.2 connection showed the chain
    assert len(unseen) == 0
    assert set(pins["role"]) == {"leaf", "intermediate"}
    assert pins.groupby("domain").size().eq(2).all()
    inter = pins[pins["role"] == "intermediate"]
    assert inter["subject"].str.contains("Intermediate CA").all()
    path = tmp_path / "suggested.pins"
    path.write_text(pinfile_text(pins, dt.date(2027, 3, 1)))
    assert BACKUP_REMINDER in path.read_text()
    policy = read_policies([path])
    assert policy["backup"].isin([False]).all()  # never a backup pin
    assert (policy["expiry"] == dt.date(2027, 3, 1)).all()
    report = check(policy, df, today=dt.date(2026, 12, 7))
    assert report.violations == 0
    statuses = report.connections["status"].value_counts().to_dict()
    assert statuses == {"match": 6, "hidden": 6}


def test_only_hidden_chains_suggest_nothing() -> None:
    df, _ = read_pcap(PROJECT_PCAPS / "tls13_stacks.pcapng")
    pins, unseen = suggest(df)
    assert len(pins) == 0
    assert unseen["connections"].sum() == len(df)


def test_a_name_that_is_no_host_name_stays_out_of_the_file() -> None:
    pins = pd.DataFrame({"domain": ["evil\nname", "ok.test"], "kind": ["leaf", "leaf"], "role": ["leaf", "leaf"],
                         "pin": ["a" * 43 + "=", "b" * 43 + "="], "subject": ["CN=x", "CN=y"], "connections": [1, 1]})
    text = pinfile_text(pins, dt.date(2027, 1, 1))
    assert "domain ok.test" in text
    assert "evil" not in text
