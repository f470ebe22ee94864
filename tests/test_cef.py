"""``sinks/alerts/cef.py``: CEF escaping and the CEF file sink."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.cef import CefFileSink, cef_escape_extension, cef_escape_header, format_cef


def test_cef_escaping() -> None:
    assert cef_escape_header("a|b\\c") == "a\\|b\\\\c"
    assert cef_escape_extension("a=b\\c\nd\re") == "a\\=b\\\\c\\nd\\re"
    rec = format_cef({**ALERT, "reasons": [{"code": "known|bad"}], "sni": "x=y\nz"})
    header = re.split(r"(?<!\\)\|", rec)
    assert header[:4] == ["CEF:0", "tlsdetect", "tlsdetect", header[3]]
    assert header[4] == "known\\|bad"
    assert header[5] == "TLS interception intercepted"
    assert header[6] == "9"
    ext = "|".join(header[7:])  # pipes need no escape in the extension
    assert "\n" not in rec
    pairs = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", ext))
    assert pairs["cs3"] == "x\\=y\\nz"
    assert pairs["cs4"] == cef_escape_extension(ALERT["peer_issuer"])
    assert pairs["externalId"] == ALERT["id"]
    assert pairs["src"] == "10.1.2.3"
    assert pairs["spt"] == "40000"
    assert pairs["rt"] == str(int(dt.datetime(2026, 11, 26, 17, 8, 0, 484000, tzinfo=dt.UTC).timestamp() * 1000))
    assert pairs["cs1Label"] == "JA4"


def test_cef_file_sink(tmp_path: Path) -> None:
    sink = CefFileSink(str(tmp_path / "a.cef"))
    sink.send([ALERT])
    sink.close()
    assert (tmp_path / "a.cef").read_text().startswith("CEF:0|tlsdetect|")

