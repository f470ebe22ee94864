"""What the Zeek readers share: the kind of a log from its fields, vector cells, factorised columns."""

from __future__ import annotations

import pandas as pd

from tlsdetect.readers.zeek.fields import codes, kind_from_fields, kind_from_record, split_vector, unescape_one


def test_kind_from_fields_and_records() -> None:
    assert kind_from_fields(["ts", "uid", "version", "cipher"]) == "ssl"
    assert kind_from_fields(["ts", "id", "certificate.subject"]) == "x509"
    assert kind_from_fields(["ts", "fingerprint", "certificate.issuer"]) == "x509"
    assert kind_from_fields(["ts", "uid", "proto", "conn_state"]) == "conn"
    assert kind_from_fields(["ts", "uid", "query"]) is None  # dns.log
    assert kind_from_record({"uid": "C1", "server_name": "a.test"}) == "ssl"
    assert kind_from_record({"fingerprint": "ab", "certificate.subject": "CN=x"}) == "x509"
    assert kind_from_record({"uid": "C1", "proto": "tcp"}) == "conn"
    assert kind_from_record({"uid": "C1", "query": "a.test"}) is None


def test_vector_cells_split_and_unescaped() -> None:
    assert split_vector("") == []
    assert split_vector("a,b\\x2cc,d\\\\e") == ["a", "b,c", "d\\e"]
    assert unescape_one("caf\\xc3\\xa9 \\\\ tab\\x09") == "café \\ tab\t"


def test_codes_of_strings_and_categoricals() -> None:
    s = pd.Series(["b", None, "a", "b"], dtype="string")
    picked, values = codes(s)
    assert [values[c] if c >= 0 else None for c in picked] == ["b", None, "a", "b"]
    cat = pd.Series(pd.Categorical(["x", None, "x"], categories=["x", "unused"]))
    picked, values = codes(cat)
    assert picked.tolist() == [0, -1, 0]
    assert values == ["x", "unused"]
