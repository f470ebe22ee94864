"""Renewals: certificates seen in clear, learned with their message size; a new one from a known issuer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.detect.renewals import CERT_TABLE_COLUMNS, clear_certs, renewal_deltas, same_servers, unseen_certs
from tlsdetect.detect.server_profiles import server_rows

from .detect_data import population
from .test_server_profiles import with_flights


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return add_issuer_keys(with_flights(population(repeat=4)))


def _certs(df: pd.DataFrame) -> pd.DataFrame:
    return clear_certs(df, server_rows(df), df["ts"])


def test_tls12_full_handshakes_teach_their_certificate_message(train: pd.DataFrame) -> None:
    certs = _certs(train)
    assert list(certs.columns) == CERT_TABLE_COLUMNS
    clear = train[train["tls_version"] != "TLSv1.3"]
    assert set(certs["family"]) == set(clear["ja4"].str.slice(0, 10))  # no TLS 1.3 family: nothing in clear
    assert set(certs["cert_bytes"]) == {int(f[0]) for f in clear["server_flight"]}
    chain = len(json.loads(str(clear["server_chain"].iloc[0])))
    assert set(certs["chain"].astype(int)) == {chain}
    by_name = certs[certs["scope"] == "sni"]
    assert by_name["count"].sum() == len(clear)
    row = clear.iloc[0]
    mine = by_name[(by_name["server"] == row["sni"]) & (by_name["family"] == row["ja4"][:10])]
    assert int(mine["rest_bytes"].iloc[0]) == min(
        int(b) - int(f[0]) for b, f, j, s in zip(clear["server_flight_bytes"], clear["server_flight"], clear["ja4"],
                                                 clear["sni"], strict=True) if j[:10] == row["ja4"][:10]
        and s == row["sni"])
    assert certs.loc[0, "issuer_key"] == str(clear["server_issuer_key"].iloc[0])


def test_resumed_and_certificateless_rows_teach_nothing(train: pd.DataFrame) -> None:
    df = train.copy()
    df["resumed"] = pd.array([True] * len(df), dtype="boolean")
    assert len(_certs(df)) == 0
    assert len(_certs(train.drop(columns=["server_cert_sha256"]))) == 0


def test_the_baseline_keeps_and_saves_the_table(train: pd.DataFrame, tmp_path: object) -> None:
    b = Baseline(model=False).fit(train)
    assert len(b.server_certs_) == len(_certs(train))
    b.partial_fit(train)
    assert b.server_certs_["count"].sum() == 2 * _certs(train)["count"].sum()
    path = b.save(str(tmp_path) + "/b")
    loaded = Baseline.load(path)
    pd.testing.assert_frame_equal(loaded.server_certs_, b.server_certs_)


def _new_cert(certs: pd.DataFrame, grow: int, **change: object) -> pd.DataFrame:
    out = certs.copy()
    out["cert"] = "renewed"
    out["cert_bytes"] = out["cert_bytes"] + grow
    for k, v in change.items():
        out[k] = v
    return out


def test_a_new_certificate_from_a_known_issuer_is_a_renewal_with_its_delta(train: pd.DataFrame) -> None:
    known = _certs(train)
    seen = _new_cert(known, 300)
    seen["rest_bytes"] = seen["rest_bytes"] + 70  # an RSA key now: a longer ServerKeyExchange signature
    d = renewal_deltas(known, seen)
    assert set(d["delta"]) == {370.0}
    assert set(d["dchain"]) == {0.0}
    assert set(zip(d["scope"], d["server"], strict=True)) == set(zip(known["scope"], known["server"], strict=True))
    # a certificate the server already had is no renewal
    assert len(renewal_deltas(known, known)) == 0
    # a longer chain is said
    longer = _new_cert(known, 300, chain=known["chain"] + 1)
    assert set(renewal_deltas(known, longer)["dchain"]) == {1.0}


def test_a_new_issuer_or_another_issuing_key_is_no_renewal(train: pd.DataFrame) -> None:
    known = _certs(train)
    assert len(renewal_deltas(known, _new_cert(known, 300, issuer_key="cn=corporate inspection ca"))) == 0
    assert len(renewal_deltas(known, _new_cert(known, 300, issuer_akid="ab" * 20))) == 0
    assert len(renewal_deltas(known, _new_cert(known, 300, issuer_akid=None))) == 0
    # an old certificate without AKID: the issuer's name is all there is to compare
    no_akid = known.assign(issuer_akid=pd.array([None] * len(known), dtype="string"))
    assert len(renewal_deltas(no_akid, _new_cert(known, 300))) > 0
    assert np.all(renewal_deltas(known.iloc[:0], _new_cert(known, 300)).columns
                  == ["scope", "server", "delta", "dchain", "first_seen"])


def test_scoring_reads_only_the_servers_whose_flight_changed(train: pd.DataFrame) -> None:
    rows = server_rows(train)
    one = np.zeros(len(train), dtype=bool)
    one[int(np.flatnonzero((train["sni"] == "curl.sample.tlsdetect.test").to_numpy())[0])] = True
    keep = same_servers(rows, one)
    # every row to that name, and every row to its address
    port = train["server_port"].to_numpy()[one][0]
    expected = ((train["sni"] == "curl.sample.tlsdetect.test") | (train["server_port"] == port)).to_numpy()
    assert 0 < keep.sum() < len(train)
    assert (keep == expected).all()
    nameless = train.assign(sni=pd.array([None] * len(train), dtype="string"),
                            server_port=pd.array(np.where(train["sni"] == "curl.sample.tlsdetect.test", 1, 2),
                                                 dtype="Int32"))
    keep = same_servers(server_rows(nameless), one)
    assert keep.sum() == (train["sni"] == "curl.sample.tlsdetect.test").sum()
    assert not same_servers(rows, np.zeros(len(train), dtype=bool)).any()
    certs = clear_certs(train, rows, train["ts"], keep=~rows.flight.astype(bool))  # no row kept
    assert len(certs) == 0


def test_only_certificates_the_baseline_never_saw_are_read(train: pd.DataFrame) -> None:
    known = _certs(train)
    assert not unseen_certs(train, known).any()
    renewed = train.copy()
    sha = renewed["server_cert_sha256"].astype(object).to_numpy(copy=True)
    sha[5] = "renewed"
    renewed["server_cert_sha256"] = pd.Series(sha, index=renewed.index).astype("category")
    assert np.flatnonzero(unseen_certs(renewed, known)).tolist() == [5]
    assert unseen_certs(renewed, known.iloc[:0]).sum() == renewed["server_cert_sha256"].notna().sum()
