"""Bound identities learned from a baseline: identity names, networks, certificates, and the saved table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.identities import _network, _networks, identity_of, learn_identities, networks_of

SPIFFE = "spiffe://mesh.test/ns/shop/sa/orders"


def _rows(**cols: Any) -> pd.DataFrame:
    return schema.conform(pd.DataFrame(cols))


def test_identity_is_the_spiffe_id_else_the_subject() -> None:
    df = _rows(peer_subject=["CN=orders", "CN=orders", "CN=billing", None, None],
               client_id=[None, SPIFFE, None, "10.0.0.9", None],
               peer_cert_sha256=["aa", "aa", "bb", None, "cc"])
    df["peer_uri_san"] = pd.Series([f"dns:x,{SPIFFE}", None, None, SPIFFE, None], dtype="string")
    got = identity_of(df).tolist()
    # URI SAN first, then a SPIFFE client_id, then the subject; no certificate: no identity; a digest alone
    # has no name to bind (missing, not the digest)
    assert got[:3] == [SPIFFE, SPIFFE, "CN=billing"]
    assert pd.isna(got[3])
    assert pd.isna(got[4])


def test_networks_are_v4_slash_24_and_v6_slash_64() -> None:
    ips = pd.Series(["10.1.2.3", "10.1.2.200", "2001:db8:1:2:3::9", "fe80::1%eth0", "not-an-ip", None],
                    dtype="string")
    assert networks_of(ips).tolist()[:4] == ["10.1.2.0/24", "10.1.2.0/24", "2001:db8:1:2::/64", "fe80::/64"]
    assert networks_of(ips).isna().tolist()[4:] == [True, True]


_OCTETS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "010", "-1", "", "1a", " 1"]))


@given(st.lists(st.one_of(st.lists(_OCTETS, min_size=3, max_size=5).map(".".join), st.ip_addresses().map(str),
                          st.text(max_size=12)), max_size=30))
def test_vectorised_networks_equal_ipaddress(values: list[str]) -> None:
    # the vectorised IPv4 path must accept and reject exactly what ipaddress does (leading zeros, 256, blanks)
    got = _networks(np.array(values, dtype=object)).tolist()
    assert got == [_network(v) for v in values]


def test_learn_counts_certificates_and_networks() -> None:
    ts = pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], utc=True)
    df = _rows(ts=ts, peer_subject=["CN=orders"] * 3 + [None],
               client_ip=["10.0.0.1", "10.0.0.2", "10.9.0.1", "10.0.0.1"],
               peer_cert_sha256=["AA", "aa", None, None], peer_serial=["01", "01", "0F", None],
               peer_issuer=["CN=Mesh CA,O=t"] * 3 + [None], peer_issuer_akid=["k1", None, "k1", None],
               peer_not_after=pd.to_datetime(pd.Series(["2026-02-01", "2026-02-01", "2026-03-01", None]), utc=True))
    t = learn_identities(df, df["ts"])
    certs = t[t["kind"] == "cert"].set_index("value")
    # one certificate by digest (case folded), one by serial only; the row without a certificate is not learned
    assert certs["count"].to_dict() == {"aa": 2, "serial:0f": 1}
    assert certs.loc["aa", "akid"] == "k1"  # the first key logged, though the second line lacked it
    assert certs.loc["aa", "not_after"] == pd.Timestamp("2026-02-01", tz="UTC")
    assert certs.loc["aa", "first_seen"] == ts[0]
    assert certs.loc["aa", "last_seen"] == ts[1]
    keys = certs["issuer_key"].tolist()
    assert keys[0] == keys[1]
    assert isinstance(keys[0], str)
    nets = t[t["kind"] == "network"].set_index("value")["count"].to_dict()
    assert nets == {"10.0.0.0/24": 2, "10.9.0.0/24": 1}
    assert set(t["identity"]) == {"CN=orders"}


def test_no_client_certificates_learn_nothing() -> None:
    df = _rows(ts=pd.to_datetime(["2026-01-01"], utc=True), client_ip=["10.0.0.1"])
    assert len(learn_identities(df, df["ts"])) == 0


def test_baseline_saves_and_folds_the_table(tmp_path: Path) -> None:
    def part(day: str, ip: str) -> pd.DataFrame:
        return _rows(ts=pd.to_datetime([day], utc=True), peer_subject=["CN=orders"], client_ip=[ip],
                     peer_cert_sha256=["aa"], ja4=["t13d1516h2_8daaf6152771_02713d6af862"])

    b = Baseline(model=False).fit(part("2026-01-01", "10.0.0.1")).partial_fit(part("2026-01-05", "10.0.1.1"))
    t = b.identities_
    cert = t[t["kind"] == "cert"].iloc[0]
    assert (cert["count"], cert["first_seen"].day, cert["last_seen"].day) == (2, 1, 5)
    assert sorted(t.loc[t["kind"] == "network", "value"]) == ["10.0.0.0/24", "10.0.1.0/24"]
    b.save(tmp_path / "b")
    loaded = Baseline.load(tmp_path / "b")
    pd.testing.assert_frame_equal(loaded.identities_, b.identities_)
    # a baseline written before the table: it loads empty
    (tmp_path / "b" / "identities.parquet").unlink()
    meta = (tmp_path / "b" / "meta.json")
    import json

    data = json.loads(meta.read_text())
    data["files"] = {k: v for k, v in data["files"].items() if "identities" not in k}
    meta.write_text(json.dumps(data))
    try:
        old = Baseline.load(tmp_path / "b")
    except Exception as exc:  # pragma: no cover - the message says what is wrong
        pytest.fail(f"an old baseline without the identities table did not load: {exc}")
    assert len(old.identities_) == 0
    assert list(old.identities_.columns) == list(b.identities_.columns)
