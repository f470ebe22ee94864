"""Zeek ssl/x509/conn reader: every shared sample, TSV/JSON equivalence, gzip, directories,
the cross-file certificate cache, dead letters, and a fuzz test that appended junk never raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.logs import DeadLetter
from tlsdetect.readers.zeek import read_zeek as _read_zeek

from .conftest import SHARED, needs_shared

SAMPLES = SHARED / "samples"
ZEEK = SAMPLES / "zeek"

needs_samples = needs_shared("samples/zeek/zeek_basic_ssl.log")

FOXIO_JA4 = "q13d0310h3_55b375c5d22e_cd85d2d88918"
GSTATIC_FP = "a580247a25324adf4add5af648de4ac5798030dfd622f26a5f2280d7528ae244"
RDS_LEAF_FP = "297800fb2627e156b3b70cb2dd41c568a8e43e6a689c84d222441f18f608c1a2"
RDS_CA_FP = "c0ff201aeea68f5eac779595305fa277eb06e98c78b83507e0ae945f7678094a"
RDS_ISSUER = "CN=Amazon RDS us-east-1 2019 CA,OU=Amazon RDS,O=Amazon Web Services\\, Inc.,L=Seattle,ST=Washington,C=US"

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n"
    "#fields\t{fields}\n#types\t{types}\n"
)
SSL_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "cipher",
              "server_name", "next_protocol", "cert_chain_fps", "client_cert_chain_fps", "ja3"]
SSL_TYPES = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string",
             "vector[string]", "vector[string]", "string"]


def read_zeek(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """The reader, then the enrichment stage after it, as the registry runs them."""
    return enrich(_read_zeek(paths, **kwargs))


def ssl_tsv(rows: list[list[str]], fields: list[str] = SSL_FIELDS, types: list[str] = SSL_TYPES) -> str:
    head = HEADER.format(path="ssl", fields="\t".join(fields), types="\t".join(types))
    return head + "".join("\t".join(r) + "\n" for r in rows) + "#close\t2024-01-01-00-00-00\n"


def read(*paths: Path) -> tuple[pd.DataFrame, DeadLetter]:
    letters = DeadLetter()
    return read_zeek(list(paths), dead_letter=letters), letters


def check_schema(df: pd.DataFrame) -> None:
    schema.validate(df)
    assert list(df.columns[: len(schema.COLUMNS)]) == list(schema.COLUMNS)


# ------------------------------------------------------------------------------------ samples


@needs_samples
def test_validate_certs_three_rows() -> None:
    df, _ = read(ZEEK / "zeek_validate-certs_ssl.log")
    assert len(df) == 3
    assert list(df["tls_version"]) == ["TLSv1.0", "TLSv1.2", "TLSv1.0"]
    assert df.iloc[1]["server_cert_sha256"] == "b2e802a12cf20c0c3ad57e74c489c2cbb569de829c18257795a47fdcefc97ba3"
    assert len(json.loads(df.iloc[1]["server_chain"])) == 3
    assert df["ts"].isna().all()


@needs_samples
def test_zat_json_links_by_fuid() -> None:
    alone, _ = read(ZEEK / "zat_json_ssl.log")
    assert len(alone) == 50
    df, letters = read(ZEEK / "zat_json_ssl.log", ZEEK / "zat_json_x509.log")
    check_schema(df)
    assert len(df) == 50
    assert letters.stats.bad_lines == 0
    row = df.iloc[0]
    assert row["conn_id"] == "CjcxdU3eOVeFManjLb"
    assert row["sni"] == "mail.aol.com"
    assert row["server_port"] == 443
    assert row["server_subject"] == "CN=*.ycpi.mail.aol.com,O=Oath Inc,L=Sunnyvale,ST=California,C=US"
    assert row["server_issuer"] == "CN=DigiCert SHA2 High Assurance Server CA,OU=www.digicert.com,O=DigiCert Inc,C=US"
    chain = json.loads(row["server_chain"])
    assert len(chain) == 2
    assert chain[0]["sha256"] is None  # zat's x509 has no fingerprint column


# ------------------------------------------------------------------------ crafted equivalence


def _row(i: int) -> dict[str, object]:
    return {
        "ts": 1700000000.25 + i, "uid": f"C{i}", "id.orig_h": "10.1.1.1", "id.orig_p": 40000 + i,
        "id.resp_h": "10.2.2.2", "id.resp_p": 443, "version": "TLSv13", "cipher": "TLS_AES_128_GCM_SHA256",
        "server_name": f"s{i}.example, inc", "next_protocol": "h2", "cert_chain_fps": ["a" * 64, "b" * 64],
        "client_cert_chain_fps": ["c" * 64] if i == 0 else [], "ja3": "e7d705a3286e19ea42f587b344ee6865",
    }


def _tsv_value(v: object) -> str:
    if isinstance(v, list):
        return ",".join(v) if v else "(empty)"
    return str(v).replace(",", "\\x2c") if isinstance(v, str) else str(v)


def _x509_pair(tmp_path: Path) -> tuple[Path, Path]:
    certs = [("a" * 64, "CN=leaf,O=Ex\\, Inc.", "CN=CA"), ("b" * 64, "CN=CA", "CN=Root"),
             ("c" * 64, "CN=client", "CN=Mesh CA")]
    tsv = tmp_path / "x509.tsv"
    tsv.write_text(HEADER.format(path="x509", fields="ts\tfingerprint\tcertificate.subject\tcertificate.issuer",
                                 types="time\tstring\tstring\tstring")
                   + "".join(f"1700000000.0\t{fp}\t{s.replace(chr(92), chr(92) * 2)}\t{i}\n" for fp, s, i in certs))
    js = tmp_path / "x509.json"
    js.write_text("".join(json.dumps({"ts": 1700000000.0, "fingerprint": fp, "certificate.subject": s,
                                      "certificate.issuer": i}) + "\n" for fp, s, i in certs))
    return tsv, js


def test_tsv_and_json_give_the_same_table(tmp_path: Path) -> None:
    rows = [_row(i) for i in range(3)]
    tsv = tmp_path / "ssl.tsv"
    tsv.write_text(ssl_tsv([[_tsv_value(r[f]) for f in SSL_FIELDS] for r in rows]))
    js = tmp_path / "ssl.json"
    js.write_text("".join(json.dumps(r) + "\n" for r in rows))
    x_tsv, x_js = _x509_pair(tmp_path)
    a, _ = read(tsv, x_tsv)
    b, _ = read(js, x_js)
    pd.testing.assert_frame_equal(a, b)
    assert a.iloc[0]["sni"] == "s0.example, inc"
    assert a.iloc[0]["server_subject"] == "CN=leaf,O=Ex\\, Inc."
    assert a.iloc[0]["peer_subject"] == "CN=client"
    assert a.iloc[0]["peer_issuer"] == "CN=Mesh CA"
    assert a.iloc[0]["peer_cert_sha256"] == "c" * 64
    assert pd.isna(a.iloc[1]["peer_subject"])
    assert a.iloc[0]["alpn"] == "h2"
    assert a.iloc[0]["ja3"] == "e7d705a3286e19ea42f587b344ee6865"
    assert a.iloc[0]["fingerprint_origin"] == "zeek"
    assert a.iloc[0]["ts"] == pd.Timestamp("2023-11-14 22:13:20.25", tz="UTC")


# ------------------------------------------------------------------- gzip, directories, errors


# --------------------------------------------------------------------------------- hypothesis


_VALID_TSV = ssl_tsv([[_tsv_value(v) for v in _row(0).values()]])
_VALID_JSON = json.dumps(_row(0)) + "\n"


_LINE = st.one_of(
    st.text(max_size=80),
    st.lists(st.text(max_size=12), min_size=len(SSL_FIELDS), max_size=len(SSL_FIELDS)).map("\t".join),
    st.fixed_dictionaries({"uid": st.text(max_size=5)}, optional={"ts": st.one_of(st.floats(), st.text(max_size=9)),
                                                                 "id.orig_p": st.one_of(st.integers(), st.text())})
    .map(json.dumps),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(_LINE, max_size=4), as_json=st.booleans())
def test_appended_junk_never_raises(tmp_path: Path, junk: list[str], as_json: bool) -> None:
    path = tmp_path / ("fuzz.json" if as_json else "fuzz.log")
    base = _VALID_JSON if as_json else _VALID_TSV
    path.write_text(base + "\n".join(junk) + "\n", encoding="utf-8", errors="surrogatepass")
    letters = DeadLetter()
    df = read_zeek([path], dead_letter=letters)
    check_schema(df)
    assert len(df) >= 1
    assert df.iloc[0]["conn_id"] == "C0"
    assert len(df) - 1 + letters.stats.bad_lines <= letters.stats.lines
