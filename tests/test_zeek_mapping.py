"""ssl.log to table columns: carried JA4, hello lists of ssl-log-ext, unset and empty vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .test_zeek import (
    FOXIO_JA4,
    SSL_FIELDS,
    SSL_TYPES,
    ZEEK,
    _row,
    _tsv_value,
    check_schema,
    needs_samples,
    read,
    ssl_tsv,
)


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


def test_server_side_from_tsv_and_json(tmp_path: Path) -> None:
    """issue 16: ``cipher`` (IANA name) -> ``sh_cipher``, ``resumed``, 1.3's selected version; same in TSV and JSON.

    A name Zeek does not know is ``unknown-<n>``; anything else that is not a suite is missing, not an error.
    """
    fields, types = [*SSL_FIELDS, "resumed"], [*SSL_TYPES, "bool"]
    cases = [("TLSv13", "TLS_AES_256_GCM_SHA384", "T"), ("TLSv12", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "F"),
             ("TLSv12", "unknown-52393", "-"), ("TLSv10", "NO SUCH SUITE", "F"), ("DTLSv13", "-", "T")]
    rows = []
    for i, (version, cipher, resumed) in enumerate(cases):
        row = _row(i) | {"version": version, "cipher": cipher}
        rows.append([*(_tsv_value(row[f]) for f in SSL_FIELDS), resumed])
    tsv = tmp_path / "ssl.log"
    tsv.write_text(ssl_tsv(rows, fields, types))
    records = []
    for i, (version, cipher, resumed) in enumerate(cases):
        rec = _row(i) | {"version": version, "cipher": cipher}
        if cipher == "-":
            del rec["cipher"]
        if resumed != "-":
            rec["resumed"] = resumed == "T"
        records.append(rec)
    js = tmp_path / "ssl.json"
    js.write_text("".join(json.dumps(r) + "\n" for r in records))
    for path in (tsv, js):
        df, letters = read(path)
        check_schema(df)
        assert letters.stats.bad_lines == 0
        assert df["sh_cipher"].tolist() == [0x1302, 0xC02F, 0xCCA9, pd.NA, pd.NA]
        assert df["resumed"].tolist() == [True, False, pd.NA, False, True]
        assert df["sh_selected_version"].tolist() == [0x0304, pd.NA, pd.NA, pd.NA, 0xFEFC]
        assert df["tls_version"].tolist()[:2] == ["TLSv1.3", "TLSv1.2"]
        assert df["sh_version"].isna().all()  # not logged: no JA3S made up without the extensions
        assert df["server_flight_bytes"].isna().all()


@needs_samples
def test_real_logs_carry_cipher_and_resumed() -> None:
    """Every ssl.log sample that logs a cipher gets ``sh_cipher`` on every row, and Zeek's ``resumed``."""
    df, _ = read(ZEEK / "zat_json_ssl.log")
    assert df["sh_cipher"].notna().all()
    assert set(df["sh_cipher"]) <= {0xC027, 0xC02B, 0xC013, 0xC02F, 0xC014, 0xC030, 0xC028, 0xC02C, 0x009C, 0x002F}
    assert df["resumed"].notna().all()
    bro, _ = read(ZEEK / "zat_tsv_ssl_bro22.log")  # Bro 2.2 logs no ``resumed``: missing, not False
    assert bro["sh_cipher"].notna().all()
    assert bro["resumed"].isna().all()
