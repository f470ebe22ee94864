"""Zeek quic.log (``tlsdetect/readers/zeek/quic.py``): read as its own kind, joined to ssl.log by uid.

Sample records follow Zeek's quic.log documentation (the 6.1 example: ``version``, ``client_initial_dcid``,
``server_scid``, ``server_name``, ``client_protocol``, ``history``) and the FoxIO ja4 package's ssl.log
``ja4``/``ja4s`` fields; addresses are documentation ones.
"""
from __future__ import annotations

import json
from pathlib import Path

from tlsdetect.readers.zeek import read_zeek
from tlsdetect.readers.zeek.fields import kind_from_fields, kind_from_record

QUIC = {"ts": 1692198386.837988, "uid": "CA482y1XJVd3d0RYI7", "id.orig_h": "192.0.2.17", "id.orig_p": 53727,
        "id.resp_h": "198.51.100.15", "id.resp_p": 443, "version": "1", "client_initial_dcid": "95412c47018cdfe8",
        "server_scid": "d5412c47018cdfe8", "server_name": "api.example.com", "client_protocol": "h3",
        "history": "ISisH"}
SSL = {"ts": 1692198386.84, "uid": "CA482y1XJVd3d0RYI7", "id.orig_h": "192.0.2.17", "id.orig_p": 53727,
       "id.resp_h": "198.51.100.15", "id.resp_p": 443, "version": "TLSv13", "cipher": "TLS_AES_128_GCM_SHA256",
       "server_name": None, "established": True, "ja4": "q13d0311h3_55b375c5d22e_c183556c78e2"}
TCP = {**SSL, "uid": "C2", "id.orig_p": 53728, "server_name": "www.example.com",
       "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_quic_log_is_its_own_kind_though_it_has_version_and_server_name() -> None:
    assert kind_from_record(QUIC) == "quic"
    assert kind_from_fields(list(QUIC)) == "quic"
    assert kind_from_record(SSL) == "ssl"


def test_ssl_rows_of_quic_uids_become_quic_and_gain_name_alpn_and_version(tmp_path: Path) -> None:
    df = read_zeek([_jsonl(tmp_path / "ssl.log", [SSL, TCP]), _jsonl(tmp_path / "quic.log", [QUIC])])
    assert len(df) == 2  # the quic.log record is joined, not a row of its own
    by = df.set_index("conn_id")
    assert by.loc["CA482y1XJVd3d0RYI7", "transport"] == "quic"
    assert by.loc["CA482y1XJVd3d0RYI7", "sni"] == "api.example.com"  # ssl.log had none
    assert by.loc["CA482y1XJVd3d0RYI7", "alpn"] == "h3"
    assert by.loc["CA482y1XJVd3d0RYI7", "quic_version"] == "1"
    assert by.loc["CA482y1XJVd3d0RYI7", "ja4"] == SSL["ja4"]
    assert by.loc["C2", "transport"] == "tcp"
    assert by.loc["C2", "quic_version"] is None or str(by.loc["C2", "quic_version"]) == "<NA>"


def test_quic_records_without_an_ssl_row_are_rows_of_their_own(tmp_path: Path) -> None:
    v2 = {**QUIC, "uid": "C9", "version": "quicv2", "server_name": "v2.example.com"}
    df = read_zeek([_jsonl(tmp_path / "ssl.log", [TCP]), _jsonl(tmp_path / "quic.log", [QUIC, v2])])
    quic = df[df["transport"] == "quic"].set_index("conn_id")
    assert sorted(quic.index) == ["C9", "CA482y1XJVd3d0RYI7"]
    assert quic.loc["C9", "quic_version"] == "quicv2"
    assert quic.loc["C9", "client_ip"] == "192.0.2.17"
    assert int(quic.loc["C9", "server_port"]) == 443
    assert quic["ja4"].isna().all()


def test_a_tsv_quic_log_alone_is_read(tmp_path: Path) -> None:
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "client_initial_dcid",
              "client_scid", "server_scid", "server_name", "client_protocol", "history"]
    types = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string", "string",
             "string", "string"]
    row = ["1692198386.837988", "CA482y1XJVd3d0RYI7", "192.0.2.17", "53727", "198.51.100.15", "443", "1",
           "95412c47018cdfe8", "-", "d5412c47018cdfe8", "api.example.com", "h3", "ISisH"]
    text = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tquic\n"
            f"#fields\t{chr(9).join(fields)}\n#types\t{chr(9).join(types)}\n{chr(9).join(row)}\n")
    (tmp_path / "quic.log").write_text(text)
    df = read_zeek([tmp_path / "quic.log"])
    assert df[["transport", "sni", "alpn", "quic_version"]].values.tolist() == [["quic", "api.example.com", "h3", "1"]]
