"""Envoy text access logs: the format string compiled to one regex, lines matched, custom START_TIME formats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.readers.envoy import compile_text_format
from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.schema import validate

from .test_envoy import ISSUER, read_envoy, write

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
