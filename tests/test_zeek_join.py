"""The x509 join (by fingerprint, by file id, across files, inline Bro 2.2 subjects) and conn.log extras."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect import schema

from .test_zeek import (
    GSTATIC_FP,
    RDS_CA_FP,
    RDS_ISSUER,
    RDS_LEAF_FP,
    ZEEK,
    check_schema,
    needs_samples,
    read,
    ssl_tsv,
)


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
