"""``sinks/alerts/cef.py``: CEF escaping and the CEF file sink."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.cef import CefFileSink, cef_escape_extension, cef_escape_header, format_cef
from tlsdetect.sinks.escape import escape_text, unescape_text


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
    assert pairs["cs3"] == "x\\=y\\\\x{0a}z"  # the newline as wire text shows it (sinks.escape), then CEF's escapes
    assert pairs["cs4"] == cef_escape_extension(escape_text(ALERT["peer_issuer"]))
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



def _cef_unescape(value: str) -> str:
    """What a CEF parser makes of an extension value."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def test_cef_wire_text_reaches_no_terminal_and_comes_back() -> None:
    """issue 18 rows 3 and 6: an SNI, DN, User-Agent or client id with ESC, OSC, CR/LF, a bidi override or
    markup is one CEF line with no control character; parsed as CEF and unescaped, each value is what was sent."""
    hostile = {
        "sni": "\x1b]0;owned\x07a=b\\c\nd", "peer_issuer": "CN=\u202egoogle\r\nx|y", "user_agent": "[/x]\x1b[2J",
        "client_id": "spiffe://a\x85b", "server_issuer": "O=A\\, Inc \u2028",
    }
    rec = format_cef({**ALERT, **hostile})
    assert rec.isprintable()  # no C0/C1 control, bidi, separator or other invisible character anywhere
    pairs = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", rec.split("|", 7)[7]))
    got = {k: unescape_text(_cef_unescape(pairs[key])) for k, key in
           [("sni", "cs3"), ("peer_issuer", "cs4"), ("user_agent", "requestClientApplication"), ("client_id", "suser"),
            ("server_issuer", "cs5")]}
    assert got == hostile
