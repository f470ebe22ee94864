"""Zeek ssl/x509/conn reader: every shared sample, TSV/JSON equivalence, gzip, directories,
the cross-file certificate cache, dead letters, and a fuzz test that appended junk never raises."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.readers.zeek import read_zeek as _read_zeek

from .conftest import SHARED, needs_shared

SAMPLES = SHARED / "samples"
ZEEK = SAMPLES / "zeek"

needs_samples = needs_shared("samples/zeek/zeek_basic_ssl.log")

FOXIO_JA4 = "q13d0310h3_55b375c5d22e_cd85d2d88918"
GSTATIC_FP = "a580247a25324adf4add5af648de4ac5798030dfd622f26a5f2280d7528ae244"
RDS_LEAF_FP = "297800fb2627e156b3b70cb2dd41c568a8e43e6a689c84d222441f18f608c1a2"


def read_zeek(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """The reader, then the enrichment stage after it, as the registry runs them."""
    return enrich(_read_zeek(paths, **kwargs))
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
def test_foxio_ja4_ssl_carries_ja4() -> None:
    df, letters = read(ZEEK / "foxio_ja4_ssl.log")
    check_schema(df)
    assert len(df) == 20
    assert letters.stats.bad_lines == 0
    first = df.iloc[0]
    assert first["conn_id"] == "CGBsqN2uXmDTPVzDEl"
    assert first["sni"] == "www.facebook.com"
    assert first["client_ip"] == "192.168.1.168"
    assert first["client_port"] == 52166
    assert first["server_port"] == 443
    assert first["tls_version"] == "TLSv1.3"
    assert first["ja4"] == FOXIO_JA4
    assert first["fingerprint_origin"] == "zeek"
    assert first["transport"] == "quic"  # q prefix: QUIC
    assert first["source"] == "zeek"
    assert first["ts"] == pd.Timestamp(1675707161.245230, unit="s", tz="UTC").round("us")
    assert set(df["ja4"]) == {FOXIO_JA4}


@needs_samples
def test_basic_ssl_with_x509_links_by_fingerprint() -> None:
    alone, _ = read(ZEEK / "zeek_basic_ssl.log")
    assert len(alone) == 1
    assert alone.iloc[0]["server_cert_sha256"] == GSTATIC_FP  # Zeek >= 4.1 fps are SHA-256
    assert pd.isna(alone.iloc[0]["server_subject"])
    df, letters = read(ZEEK / "zeek_basic_ssl.log", ZEEK / "zeek_basic_x509.log")
    check_schema(df)
    row = df.iloc[0]
    assert pd.isna(row["ts"])  # masked XXXXXXXXXX.XXXXXX
    assert row["sni"] == "ssl.gstatic.com"
    assert row["tls_version"] == "TLSv1.0"
    assert row["server_subject"] == "CN=*.gstatic.com,O=Google Inc,L=Mountain View,ST=California,C=US"
    assert row["server_issuer"] == "CN=Google Internet Authority,O=Google Inc,C=US"
    assert row["server_cert_sha256"] == GSTATIC_FP
    assert row["server_issuer_key"] is not pd.NA
    chain = json.loads(row["server_chain"])
    assert [c["subject"] for c in chain] == [
        "CN=*.gstatic.com,O=Google Inc,L=Mountain View,ST=California,C=US",
        "CN=Google Internet Authority,O=Google Inc,C=US",
    ]
    assert chain[1]["issuer"] == "OU=Equifax Secure Certificate Authority,O=Equifax,C=US"
    assert pd.isna(row["peer_subject"])  # client_cert_chain_fps is (empty)
    assert letters.stats.bad_lines == 0
    assert letters.stats.files == 2


@needs_samples
def test_validate_certs_three_rows() -> None:
    df, _ = read(ZEEK / "zeek_validate-certs_ssl.log")
    assert len(df) == 3
    assert list(df["tls_version"]) == ["TLSv1.0", "TLSv1.2", "TLSv1.0"]
    assert df.iloc[1]["server_cert_sha256"] == "b2e802a12cf20c0c3ad57e74c489c2cbb569de829c18257795a47fdcefc97ba3"
    assert len(json.loads(df.iloc[1]["server_chain"])) == 3
    assert df["ts"].isna().all()


@needs_samples
def test_vector_escape_sample() -> None:
    df, letters = read(ZEEK / "zeek_cert-request-info_vector-escape_ssl.log")
    assert len(df) == 1
    assert letters.stats.bad_lines == 0
    row = df.iloc[0]
    assert row["client_ip"] == "fd42:496a:d659:bb85::1"
    assert row["server_port"] == 3000
    assert row["tls_version"] == "TLSv1.2"
    assert pd.isna(row["sni"])


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


@needs_samples
def test_bro22_inline_subject_and_conn_extras() -> None:
    df, letters = read(ZEEK / "zat_tsv_ssl_bro22.log", ZEEK / "zat_tsv_conn.log")
    check_schema(df)
    assert letters.stats.bad_lines == 0
    assert len(df) == 37
    row = df.set_index("conn_id").loc["CLp0PF2EcdkpGemkW5"]
    assert row["server_subject"] == "CN=*.cloudfront.net,O=Amazon.com\\, Inc.,L=Seattle,ST=Washington,C=US"
    assert row["server_issuer"] == "CN=DigiCert High Assurance CA-3,OU=www.digicert.com,O=DigiCert Inc,C=US"
    assert pd.isna(row["server_cert_sha256"])  # cert_hash is MD5: never in the sha256 column
    assert row["conn_duration"] == pytest.approx(0.555038)
    assert row["conn_orig_bytes"] == 612
    assert "conn_duration" in df.columns[len(schema.COLUMNS):]


@needs_samples
@pytest.mark.parametrize(
    "name", ["zat_tsv_x509.log", "zeek_aws-rds_escaped-comma_x509.log", "zeek_basic_x509.log", "zat_json_x509.log",
             "foxio_ja4_conn.log", "zat_tsv_conn.log"],
)
def test_partner_logs_alone_give_no_rows(name: str) -> None:
    df, letters = read(ZEEK / name)
    check_schema(df)
    assert len(df) == 0
    assert letters.stats.bad_lines == 0
    assert letters.stats.rows > 0


@needs_samples
def test_escaped_comma_issuer_across_files(tmp_path: Path) -> None:
    ssl = tmp_path / "a.log"
    ssl.write_text(ssl_tsv([["1700000000.5", "Cabc", "10.0.0.1", "5000", "10.0.0.2", "3306", "TLSv12", "X",
                             "db.example", "-", f"{RDS_LEAF_FP},{RDS_CA_FP}", "(empty)", "-"]]))
    df, _ = read(ssl, ZEEK / "zeek_aws-rds_escaped-comma_x509.log")
    row = df.iloc[0]
    assert row["server_issuer"] == RDS_ISSUER  # TSV "\\," decoded to the RFC 2253 "\,"
    assert row["server_cert_sha256"] == RDS_LEAF_FP
    assert json.loads(row["server_chain"])[1]["subject"] == RDS_ISSUER
    assert row["server_issuer_key"] is not pd.NA


@needs_samples
def test_zat_tsv_x509_by_fuid(tmp_path: Path) -> None:
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "cipher", "server_name",
              "cert_chain_fuids", "client_cert_chain_fuids"]
    types = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "vector[string]",
             "vector[string]"]
    ssl = tmp_path / "s"
    ssl.write_text(ssl_tsv([["1491014751.7", "Cx", "10.0.0.1", "5000", "17.0.0.1", "443", "TLSv12", "X",
                             "webcourier.push.apple.com", "FJBNZaRli8YcqlB81,FHSv0UGlPbekNqDh9", "(empty)"]],
                           fields, types))
    df, _ = read(ssl, ZEEK / "zat_tsv_x509.log")
    row = df.iloc[0]
    assert row["server_subject"] == "CN=webcourier.push.apple.com,O=Apple Inc.,L=Cupertino,ST=California,C=US"
    assert row["server_issuer"].startswith("CN=Entrust Certification Authority - L1K,OU=(c) 2012 Entrust\\, Inc.")
    assert pd.isna(row["server_cert_sha256"])


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


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("port", [65536, 99_999_999_999, -1])
def test_port_outside_16_bits_is_a_bad_number_not_a_wrapped_one(tmp_path: Path, as_json: bool, port: int) -> None:
    rows = [_row(i) for i in range(3)]
    rows[1]["id.orig_p"] = port
    path = tmp_path / ("ssl.json" if as_json else "ssl.tsv")
    if as_json:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(ssl_tsv([[_tsv_value(r[f]) for f in SSL_FIELDS] for r in rows]))
    df, letters = read(path)
    assert df["conn_id"].tolist() == ["C0", "C2"]
    assert df["client_port"].tolist() == [40000, 40002]
    assert letters.stats.reasons == {"bad number": 1}


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


def test_ssl_log_ext_lists_recompute_fingerprints(tmp_path: Path) -> None:
    fields = [*SSL_FIELDS, "client_version", "client_ciphers", "ssl_client_exts", "client_curves", "point_formats",
              "orig_alpn", "client_supported_versions", "sigalgs", "hashalgs"]
    types = [*SSL_TYPES, "count", *(["vector[count]"] * 4), "vector[string]", "vector[count]", "vector[count]",
             "vector[count]"]
    base = [_tsv_value(v) for v in _row(0).values()]
    row = [*base, "771", "4865,4866,49195", "0,10,11,13,16,43", "29,23", "0", "h2,http/1.1", "772,771",
           "3,4", "4,8"]
    path = tmp_path / "ext.log"
    path.write_text(ssl_tsv([row], fields, types))
    df, _ = read(path)
    r = df.iloc[0]
    assert r["ch_version"] == 771
    assert r["ch_ciphers"] == (4865, 4866, 49195)
    assert r["ch_groups"] == (29, 23)
    assert r["ch_sig_algs"] == (0x0403, 0x0804)
    assert r["ch_alpn"] == ("6832", "687474702f312e31")
    assert r["fingerprint_origin"] == "computed"
    assert r["ja4"].startswith("t13d0306h2_")
    assert r["ja3"] != "e7d705a3286e19ea42f587b344ee6865"


def test_unset_and_empty_vectors_mean_the_same_in_tsv_and_json(tmp_path: Path) -> None:
    """TSV ``-`` (unset) is JSON's missing key, TSV ``(empty)`` is JSON's ``[]``: same rows either way.

    An unset list used to read as an empty one in TSV only, and a hello with an unset cipher list
    got a JA4 computed from no ciphers.
    """
    fields = [*SSL_FIELDS, "client_version", "client_ciphers", "ssl_client_exts", "client_curves", "point_formats"]
    types = [*SSL_TYPES, "count", *(["vector[count]"] * 4)]
    base = [_tsv_value(v) for v in _row(0).values()]
    rows = [[*base, "771", "-", "0,10", "-", "(empty)"], [*base, "771", "4865", "(empty)", "29", "0"]]
    rows[1][1] = "C1"
    tsv = tmp_path / "ext.log"
    tsv.write_text(ssl_tsv(rows, fields, types))
    records = [_row(0) | {"client_version": 771, "ssl_client_exts": [0, 10], "point_formats": []},
               _row(0) | {"uid": "C1", "client_version": 771, "client_ciphers": [4865], "ssl_client_exts": [],
                          "client_curves": [29], "point_formats": [0]}]
    js = tmp_path / "ext.json"
    js.write_text("".join(json.dumps(r) + "\n" for r in records))
    a, _ = read(tsv)
    b, _ = read(js)
    cols = ["conn_id", "ch_version", "ch_ciphers", "ch_extensions", "ch_groups", "ch_point_formats", "ja4", "ja3"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert pd.isna(a.loc[0, "ja4"])  # no cipher list logged: no fingerprint from nothing
    assert a.loc[1, "ch_extensions"] == ()


# ------------------------------------------------------------------- gzip, directories, errors


@needs_samples
def test_gzip_and_directory(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with gzip.open(folder / "one.gz", "wb") as fh:
        fh.write((ZEEK / "zeek_basic_ssl.log").read_bytes())
    shutil.copy(ZEEK / "zeek_basic_x509.log", folder / "zzz")  # names say nothing: content decides
    df, letters = read(folder)
    assert len(df) == 1
    assert df.iloc[0]["server_issuer"] == "CN=Google Internet Authority,O=Google Inc,C=US"
    assert letters.stats.files == 2


def test_wrong_kind_of_file(tmp_path: Path) -> None:
    http = tmp_path / "http.log"
    http.write_text(HEADER.format(path="http", fields="ts\tuid\tmethod", types="time\tstring\tstring")
                    + "1.0\tC1\tGET\n")
    with pytest.raises(LogFormatError, match="http"):
        read_zeek([http])
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    with pytest.raises(LogFormatError, match="not a Zeek log"):
        read_zeek([text])
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}\n')
    with pytest.raises(LogFormatError):
        read_zeek([other])


@needs_samples
def test_dead_letters_for_corrupted_copy(tmp_path: Path) -> None:
    lines = (ZEEK / "foxio_ja4_ssl.log").read_text().splitlines(keepends=True)
    lines[8] = lines[8].replace("\t", "\t\t", 1)  # wrong field count (first data line is line 9)
    lines[9] = lines[9].replace("1675707152.011673", "16757x7152.0")  # bad number
    lines[10] = lines[10].replace("\t443\t", "\tport\t", 1)  # bad port
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines))
    out = tmp_path / "dead.jsonl"
    with DeadLetter(out) as letters:
        df = read_zeek([bad], dead_letter=letters)
    assert len(df) == 17
    assert letters.stats.bad_lines == 3
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == [9, 10, 11]
    reasons = {r["line"]: r["reason"] for r in records}
    assert reasons[9].startswith("wrong field count")
    assert reasons[10] == "bad number: ts"
    assert reasons[11] == "bad number: id.resp_p"
    assert letters.stats.lines == 20


@needs_samples
def test_dead_letters_for_broken_json(tmp_path: Path) -> None:
    lines = (ZEEK / "zat_json_ssl.log").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:40] + "\n"
    lines[5] = lines[5].replace('"id.resp_p":443', '"id.resp_p":"https"')
    bad = tmp_path / "bad.json"
    bad.write_text("".join(lines))
    letters = DeadLetter()
    df = read_zeek([bad], dead_letter=letters)
    assert len(df) == 48
    assert letters.stats.bad_lines == 2
    assert set(letters.stats.reasons) == {"bad json", "bad number"}


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


def test_json_iso8601_timestamps(tmp_path: Path) -> None:
    row = _row(0) | {"ts": "2023-11-14T22:13:20.250000Z"}
    path = tmp_path / "iso.json"
    path.write_text(json.dumps(row) + "\n")
    df, letters = read(path)
    assert df.iloc[0]["ts"] == pd.Timestamp("2023-11-14 22:13:20.25", tz="UTC")
    assert letters.stats.bad_lines == 0


def test_concatenated_header_blocks(tmp_path: Path) -> None:
    one = ssl_tsv([[_tsv_value(v) for v in _row(0).values()]])
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "server_name"]
    two = ssl_tsv([["1700000001.0", "C9", "10.0.0.9", "1234", "10.0.0.8", "8443", "TLSv11", "other.example"]],
                  fields, ["time", "string", "addr", "port", "addr", "port", "string", "string"])
    path = tmp_path / "cat.log"
    path.write_text(one + two)
    df, letters = read(path)
    assert list(df["conn_id"]) == ["C0", "C9"]
    assert list(df["tls_version"]) == ["TLSv1.3", "TLSv1.1"]
    assert df.iloc[1]["server_port"] == 8443
    assert letters.stats.bad_lines == 0


def test_json_object_without_uid_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_row(0)) + "\n{}\n[1, 2]\n")
    df, letters = read(path)
    assert len(df) == 1
    assert letters.stats.bad_lines == 2
