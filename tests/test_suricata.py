"""Suricata EVE ``tls`` reader: field mapping, dead letters, skipped events, robustness.

No Suricata sample ships with the shared corpus, so the lines are crafted here from the field
names in Suricata's documentation and its ``output-json-tls.c`` / ``rust/src/handshake.rs``
(Suricata 8: ``client_handshake`` = ``{version: "TLS 1.3", ciphers: [..], exts: [..],
sig_algs: [..]}``, ``client_alpns`` = list of strings).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.detect.issuers import dn_key
from tlsdetect.fingerprint import add_fingerprints, enrich, ja4, md5_hex
from tlsdetect.readers.logs import DeadLetter, LogFormatError, LogStats
from tlsdetect.readers.suricata import read_suricata as _read_suricata


def read_suricata(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """The reader, then the enrichment stage after it, as the registry runs them."""
    return enrich(_read_suricata(paths, **kwargs), dn_order="x509")


# A Chrome-like hello (GREASE shown, as a build that keeps it would log it).
CIPHERS = [0x0A0A, 4865, 4866, 4867, 49195, 49199]
EXTS = [0x1A1A, 0, 23, 65281, 10, 11, 35, 16, 5, 13, 18, 51, 45, 43, 27, 0x2A2A]
SIGS = [1027, 2052, 1025, 1283, 2053, 1281, 2054, 1537]
ALPNS = ["h2", "http/1.1"]
JA3_STRING = "771,4865-4866-4867-49195-49199,0-23-65281-10-11-35-16-5-13-18-51-45-43-27,29-23-24,0"
ISSUER_X509 = "C=US, O=DigiCert Inc, CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1"
SUBJECT_X509 = (
    "C=US, ST=California, L=Los Angeles, O=Internet\u00a0Corporation for Assigned Names and Numbers, CN=www.example.org"
)


def expected_ja4(ciphers: list[int] = CIPHERS, exts: list[int] = EXTS, alpn: bytes | None = b"h2") -> str:
    return ja4("t", 0x0304, ciphers, exts, alpn, SIGS, (0x0304,)).ja4


def tls_event(**over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "timestamp": "2024-05-01T12:00:00.123456+0200",
        "flow_id": 1676750115612680,
        "in_iface": "eth0",
        "event_type": "tls",
        "src_ip": "192.168.100.237",
        "src_port": 49175,
        "dest_ip": "142.11.240.191",
        "dest_port": 443,
        "proto": "TCP",
        "pkt_src": "wire/pcap",
        "tls": {
            "subject": SUBJECT_X509,
            "issuerdn": ISSUER_X509,
            "serial": "0C:1F:CB:18:45:18:C7:E3:86:67:41:23:6D:6B:73:F1",
            "fingerprint": "31:0d:b7:af:4b:2b:c9:04:0c:83:44:70:1a:ca:08:d0:c6:93:81:e3",
            "sni": "www.example.org",
            "version": "TLS 1.3",
            "notbefore": "2024-01-30T00:00:00",
            "notafter": "2025-03-01T23:59:59",
            "ja3": {"hash": md5_hex(JA3_STRING), "string": JA3_STRING},
            "ja3s": {"hash": md5_hex("771,4865,43-51"), "string": "771,4865,43-51"},
            "ja4": expected_ja4(),
            "client_alpns": ALPNS,
            "server_alpns": ["h2"],
            "client_handshake": {"version": "TLS 1.3", "ciphers": CIPHERS, "exts": EXTS, "sig_algs": SIGS},
            "server_handshake": {"version": "TLS 1.3", "cipher": 4865, "exts": [43, 51]},
        },
        "app_proto": "tls",
    }
    for key, value in over.items():
        if key.startswith("tls_"):
            name = key[4:]
            if value is None:
                event["tls"].pop(name, None)
            else:
                event["tls"][name] = value
        elif value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def write(tmp_path: Path, lines: list[str | dict[str, Any]], name: str = "eve.json") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def read(path: Path) -> tuple[pd.DataFrame, LogStats]:
    dl = DeadLetter()
    return read_suricata([path], dead_letter=dl), dl.stats


def test_every_mapped_field(tmp_path: Path) -> None:
    df, stats = read(write(tmp_path, [tls_event()]))
    schema.validate(df)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["ts"] == pd.Timestamp("2024-05-01T10:00:00.123456Z")
    assert row["source"] == "suricata"
    assert row["conn_id"] == "1676750115612680"
    assert (row["client_ip"], row["client_port"]) == ("192.168.100.237", 49175)
    assert (row["server_ip"], row["server_port"]) == ("142.11.240.191", 443)
    assert row["transport"] == "tcp"
    assert row["sni"] == "www.example.org"
    assert row["tls_version"] == "TLSv1.3"
    assert row["alpn"] == "h2"
    assert row["server_subject"] == SUBJECT_X509
    assert row["server_issuer"] == ISSUER_X509
    assert row["server_issuer_key"] == dn_key(
        "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc,C=US"
    )
    assert row["server_cert_sha1"] == "310db7af4b2bc9040c8344701aca08d0c69381e3"
    assert pd.isna(row["server_cert_sha256"])
    assert row["ja3"] == md5_hex(JA3_STRING)
    assert row["ja3_full"] == JA3_STRING
    sorted_exts = "-".join(str(e) for e in sorted(int(x) for x in JA3_STRING.split(",")[2].split("-")))
    assert row["ja3n"] == md5_hex(",".join([*JA3_STRING.split(",")[:2], sorted_exts, *JA3_STRING.split(",")[3:]]))
    assert row["ja3s"] == md5_hex("771,4865,43-51")
    assert row["ja3s_full"] == "771,4865,43-51"
    assert row["ja4"] == expected_ja4()
    full = ja4("t", 0x0304, CIPHERS, EXTS, b"h2", SIGS, (0x0304,))
    assert (row["ja4_r"], row["ja4_o"], row["ja4_ro"]) == (full.ja4_r, full.ja4_o, full.ja4_ro)
    assert row["fingerprint_origin"] == "suricata"
    assert row["ch_ciphers"] == tuple(CIPHERS)
    assert row["ch_extensions"] == tuple(EXTS)
    assert row["ch_sig_algs"] == tuple(SIGS)
    assert row["ch_alpn"] == (b"h2".hex(), b"http/1.1".hex())
    assert pd.isna(row["ch_version"])  # Suricata logs the highest offered version, not the legacy one
    assert row["ch_groups"] is None
    assert row["ch_point_formats"] is None
    assert row["sh_cipher"] == 4865
    assert row["sh_extensions"] == (43, 51)
    assert pd.isna(row["sh_version"])
    assert (stats.files, stats.lines, stats.rows, stats.bad_lines) == (1, 1, 1, 0)


def test_add_fingerprints_keeps_suricata_values(tmp_path: Path) -> None:
    """Half a hello must not overwrite Suricata's own JA3 with a wrong recomputation."""
    df, _ = read(write(tmp_path, [tls_event()]))
    out = add_fingerprints(df)
    assert out["ja3"].iloc[0] == md5_hex(JA3_STRING)
    assert out["ja4"].iloc[0] == expected_ja4()
    assert out["fingerprint_origin"].iloc[0] == "suricata"


@pytest.mark.parametrize(
    ("printed", "expected"),
    [("TLS 1.2", "TLSv1.2"), ("TLS 1.3", "TLSv1.3"), ("TLS 1.1", "TLSv1.1"), ("TLSv1", "TLSv1.0"),
     ("SSLv3", "SSLv3"), ("TLS 1.3 draft-28", "TLSv1.3"), ("UNDETERMINED", None)],
)
def test_versions(tmp_path: Path, printed: str, expected: str | None) -> None:
    df, _ = read(write(tmp_path, [tls_event(tls_version=printed)]))
    value = df["tls_version"].iloc[0]
    assert (pd.isna(value) and expected is None) or value == expected


def test_pre_suricata8_event_without_handshake_or_ja4(tmp_path: Path) -> None:
    event = tls_event(tls_ja4=None, tls_client_handshake=None, tls_client_alpns=None, tls_server_handshake=None)
    df, _ = read(write(tmp_path, [event]))
    row = df.iloc[0]
    assert pd.isna(row["ja4"])
    assert pd.isna(row["ja4_r"])
    assert row["ch_ciphers"] is None
    assert row["ch_alpn"] is None
    assert pd.isna(row["alpn"])
    assert row["fingerprint_origin"] == "suricata"  # JA3 and JA3S still come from the log


def test_ja4_computed_when_suricata_did_not_log_it(tmp_path: Path) -> None:
    event = tls_event(tls_ja4=None, tls_ja3=None, tls_ja3s=None)
    df, _ = read(write(tmp_path, [event]))
    assert df["ja4"].iloc[0] == expected_ja4()
    assert df["fingerprint_origin"].iloc[0] == "computed"


def test_ja4_not_computed_without_alpn_list(tmp_path: Path) -> None:
    """The ALPN extension is offered but client_alpns was not logged: JA4 cannot be recomputed."""
    df, _ = read(write(tmp_path, [tls_event(tls_ja4=None, tls_client_alpns=None)]))
    assert pd.isna(df["ja4"].iloc[0])
    assert pd.isna(df["ja4_r"].iloc[0])


def test_ja4_mismatch_keeps_suricata_value_and_warns(tmp_path: Path) -> None:
    df, stats = read(write(tmp_path, [tls_event(tls_ja4="t13d0516h2_000000000000_000000000000")]))
    assert df["ja4"].iloc[0] == "t13d0516h2_000000000000_000000000000"
    assert pd.isna(df["ja4_r"].iloc[0])
    assert any("differs" in w for w in stats.warnings)


def test_mtls_client_certificate(tmp_path: Path) -> None:
    client = {"subject": "CN=client-1", "issuerdn": "O=Mesh, CN=Mesh CA", "fingerprint": "00" + ":00" * 19}
    df, _ = read(write(tmp_path, [tls_event(tls_client=client)]))
    row = df.iloc[0]
    assert (row["peer_subject"], row["peer_issuer"]) == ("CN=client-1", "O=Mesh, CN=Mesh CA")
    assert row["peer_issuer_key"] == dn_key("CN=Mesh CA,O=Mesh")
    assert row["peer_cert_sha1"] == "0" * 40


def test_udp_quic_transport(tmp_path: Path) -> None:
    df, _ = read(write(tmp_path, [tls_event(proto="UDP", app_proto="quic")]))
    assert df["transport"].iloc[0] == "quic"
    assert df["ja4"].iloc[0] == expected_ja4()  # Suricata's own value kept ...
    assert pd.isna(df["ja4_r"].iloc[0])  # ... and its t-prefixed recomputation not passed off as q


def test_server_cipher_logged_as_text_is_read_not_a_crash(tmp_path: Path) -> None:
    """A 16-bit value as digits (``"cipher": "4865"``) is the number; anything else is missing."""
    events = [tls_event(tls_server_handshake={"cipher": c}) for c in ("4865", 4866, "x", 70000, True)]
    df, _ = read(write(tmp_path, events))
    assert df["sh_cipher"].tolist() == [4865, 4866, pd.NA, pd.NA, pd.NA]


def test_selected_version_and_resumed(tmp_path: Path) -> None:
    """issue 16: TLS 1.3 gives ``sh_selected_version``; ``session_resumed`` (written only when true) gives
    ``resumed`` True, and its absence (or a value that is not ``true``) leaves it missing, never False."""
    events: list[str | dict[str, Any]] = [
              tls_event(tls_version="TLS 1.3"), tls_event(tls_version="TLS 1.2", tls_session_resumed=True),
              tls_event(tls_version="TLS 1.3 draft-28", tls_session_resumed="yes"), tls_event(tls_version=None)]
    df, _ = read(write(tmp_path, events))
    assert df["sh_selected_version"].tolist() == [0x0304, pd.NA, 0x0304, pd.NA]
    assert df["resumed"].tolist() == [pd.NA, True, pd.NA, pd.NA]
    assert df["resumed"].dtype == "boolean"
    assert df["sh_version"].isna().all()  # not logged


def test_non_tls_events_skipped_and_counted(tmp_path: Path) -> None:
    lines: list[str | dict[str, Any]] = [
        tls_event(),
        {"timestamp": "2024-05-01T12:00:01+0000", "flow_id": 1, "event_type": "flow", "src_ip": "1.2.3.4"},
        {"timestamp": "2024-05-01T12:00:01+0000", "event_type": "stats", "stats": {"uptime": 3}},
        {"timestamp": "2024-05-01T12:00:01+0000", "flow_id": 2, "event_type": "alert", "src_ip": "1.2.3.4",
         "alert": {"signature_id": 1}},
        tls_event(flow_id=99),
    ]
    df, stats = read(write(tmp_path, lines))
    assert df["conn_id"].tolist() == ["1676750115612680", "99"]
    assert stats.reasons["not-tls"] == 3
    assert stats.bad_lines == 0
    assert (stats.lines, stats.rows) == (5, 2)


def test_bad_lines_dead_lettered(tmp_path: Path) -> None:
    lines: list[str | dict[str, Any]] = [
        tls_event(),
        '{"timestamp": "2024-05-01T12:00:00+0000", "event_type": "tls", "tls": {',  # truncated
        "[1, 2, 3]",
        '{"no_event_type": true}',
        tls_event(src_ip=None),
        tls_event(dest_port="https"),
        tls_event(timestamp="yesterday"),
        tls_event(timestamp="0001-01-01T00:00:00.000000+0100"),  # outside the table's ns range
        "",
        tls_event(flow_id=7),
    ]
    path = write(tmp_path, lines)
    letters = tmp_path / "dead.jsonl"
    with DeadLetter(letters) as dl:
        df = read_suricata([path], dead_letter=dl)
    assert df["conn_id"].tolist() == ["1676750115612680", "7"]
    assert dl.stats.bad_lines == 7
    assert dl.stats.lines == 9  # blank lines are not counted
    assert dl.stats.rows == 2
    assert set(dl.stats.reasons) >= {"bad-json", "not-an-object", "no-event-type", "missing-flow-keys", "bad-timestamp"}
    records = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [r["line"] for r in records] == [2, 3, 4, 5, 6, 7, 8]
    assert all(r["file"] == str(path) for r in records)


def test_not_eve_file_raises(tmp_path: Path) -> None:
    path = write(tmp_path, ["#separator \\x09", "#fields\tts\tuid", "1.0\tCabc"])
    letters = tmp_path / "dead.jsonl"
    with DeadLetter(letters) as dl, pytest.raises(LogFormatError):
        read_suricata([path], dead_letter=dl)
    assert (dl.stats.files, dl.stats.lines, dl.stats.bad_lines) == (0, 0, 0)  # rejected as a whole
    assert letters.read_text() == ""
    with pytest.raises(LogFormatError):
        read_suricata([write(tmp_path, ['{"ts": 1, "uid": "C1"}'], name="zeek.json")])


def test_empty_file_and_several_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    gz = tmp_path / "eve.json.gz"
    gz.write_bytes(gzip.compress((json.dumps(tls_event(flow_id=5)) + "\n").encode()))
    dl = DeadLetter()
    df = read_suricata([empty, write(tmp_path, [tls_event(flow_id=4)]), gz], dead_letter=dl)
    assert df["conn_id"].tolist() == ["4", "5"]
    assert (dl.stats.files, dl.stats.rows) == (3, 2)
    schema.validate(read_suricata([empty]))


def test_issuer_without_escaping_keeps_comma_in_value(tmp_path: Path) -> None:
    """x509-parser (Suricata) does not escape a comma inside a value."""
    event = tls_event(tls_issuerdn="C=US, O=Amazon Web Services, Inc., OU=Amazon RDS, CN=Amazon RDS CA")
    df, _ = read(write(tmp_path, [event]))
    assert df["server_issuer_key"].iloc[0] == dn_key(
        "CN=Amazon RDS CA,OU=Amazon RDS,O=Amazon Web Services\\, Inc.,C=US"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "tls"]
)
tls_names = st.sampled_from(
    ["subject", "issuerdn", "fingerprint", "sni", "version", "ja3", "ja3s", "ja4", "client_alpns",
     "client_handshake", "server_handshake", "client"]
)


timestamps = st.sampled_from(
    ["0001-01-01T00:00:00+0000", "9999-12-31T23:59:59.999999+1400", "2024-02-30T00:00:00+0000",
     "2024-05-01T12:00:00Z", "2024-05-01 12:00:00", "", "1714564800"]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> str:
    event = tls_event()
    if draw(st.booleans()):
        event["timestamp"] = draw(timestamps)
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            event[draw(field_names)] = draw(json_values)
        elif isinstance(event.get("tls"), dict):
            event["tls"][draw(tls_names)] = draw(json_values)
    return json.dumps(event)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.text(max_size=40), mutated_events()), min_size=1, max_size=5))
def test_arbitrary_lines_never_crash(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    dl = DeadLetter()
    try:
        df = read_suricata([path], dead_letter=dl)
    except LogFormatError:
        return
    schema.validate(df)
    assert dl.stats.rows == len(df)
    assert dl.stats.rows + dl.stats.bad_lines + dl.stats.reasons["not-tls"] == dl.stats.lines


def test_deeply_nested_line_is_bad_json_and_the_rest_read(tmp_path: Path) -> None:
    deep = '{"event_type": "tls", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    shallow = json.dumps({**tls_event(flow_id=9), "x": [[[1]]]})
    path = write(tmp_path, [tls_event(flow_id=4), deep, shallow, tls_event(flow_id=5)])
    dl = DeadLetter()
    df = read_suricata([path], dead_letter=dl)
    assert df["conn_id"].tolist() == ["4", "9", "5"]
    assert (dl.stats.bad_lines, dl.stats.reasons["bad-json"]) == (1, 1)
    # a line past the bound is bad whether or not the file's bulk parse succeeds
    mid = json.dumps({**tls_event(flow_id=6), "x": json.loads("[" * 500 + "]" * 500)})
    for extra in ([], ["{broken"]):
        dl = DeadLetter()
        read_suricata([write(tmp_path, [tls_event(flow_id=4), mid, *extra], name="m.json")], dead_letter=dl)
        assert dl.stats.bad_lines == 1 + len(extra)


def test_logged_chain_gives_spki_pins(tmp_path: Path) -> None:
    """``tls.chain`` (``custom: [chain]``): each certificate's SPKI pin in ``server_chain``, the leaf's in a column;
    a chain that is not base64 certificates leaves those cells missing and the row kept."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from tests.test_tls import make_cert
    from tlsdetect.wire.tls import parse_der_certificate

    ders = [make_cert("www.example.org", "Inter").public_bytes(serialization.Encoding.DER),
            make_cert("Inter", "Root").public_bytes(serialization.Encoding.DER)]
    chain = [base64.b64encode(d).decode() for d in ders]
    df, stats = read(write(tmp_path, [tls_event(tls_chain=chain), tls_event(tls_chain=["%%%"]), tls_event()]))
    assert len(df) == 3
    assert stats.bad_lines == 0
    logged = json.loads(str(df["server_chain"].iloc[0]))
    assert [c["spki"] for c in logged] == [parse_der_certificate(d).spki for d in ders]
    assert df["server_spki_sha256"].iloc[0] == logged[0]["spki"]
    assert df["server_cert_sha256"].iloc[0] == hashlib.sha256(ders[0]).hexdigest()
    assert df[["server_chain", "server_spki_sha256"]].iloc[1:].isna().all().all()
    assert df["server_subject"].iloc[1] == SUBJECT_X509  # the logged fields stay
