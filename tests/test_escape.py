"""``sinks/escape.py``: wire text shown safely, reversibly, and once per distinct value (issue 18 rows 3 and 6)."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import sys
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.craft import hypothesis_examples
from tlsdetect.cli import main
from tlsdetect.sinks.escape import UNSAFE, escape_frame, escape_series, escape_text, unescape_text

#: What an attacker puts in an SNI or a DN to steer or fool a terminal, a log viewer or a spreadsheet.
HOSTILE = [
    "a\x1b[2Jb",  # clear screen
    "\x1b]0;owned\x07x",  # OSC: window title
    "\x1b[31mred\x1b[0m",  # colour
    "x\ny",  # a forged row
    "a\rb",  # overwrite the line
    "\u202emoc.elgoog",  # right-to-left override: shows as google.com
    "goo\u200bgle.com",  # zero-width space
    "a\u2028b",  # line separator
    "\x85nel",  # C1 next line
    "\udcff",  # a lone surrogate (text decoded with surrogateescape)
]


def test_the_unsafe_class_holds_every_control_format_and_line_character() -> None:
    """``UNSAFE`` is every Cc, Cf, Zl, Zp and Cs character this Python knows: a newer Unicode that adds
    format characters fails here instead of letting them through."""
    unsafe = re.compile(f"[{UNSAFE}]")
    missing = [hex(cp) for cp in range(sys.maxunicode + 1)
               if unicodedata.category(chr(cp)) in {"Cc", "Cf", "Zl", "Zp", "Cs"} and not unsafe.match(chr(cp))]
    extra = [hex(cp) for cp in range(sys.maxunicode + 1)
             if unsafe.match(chr(cp)) and unicodedata.category(chr(cp)) not in {"Cc", "Cf", "Zl", "Zp", "Cs"}]
    assert missing == []
    assert extra == []


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_shows_no_control_and_comes_back(text: str) -> None:
    shown = escape_text(text)
    assert re.search(f"[{UNSAFE}]", shown) is None
    assert shown.isprintable()  # no control, format or separator character left
    assert unescape_text(shown) == text
    shown.encode("utf-8")  # even a lone surrogate leaves as encodable text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[2Jb", "a\\x{1b}[2Jb"),
        ("x\ny", "x\\x{0a}y"),
        ("\u202emoc", "\\x{202e}moc"),
        ("\U000e0041tag", "\\x{e0041}tag"),
        ("\\x{1b}", "\\x{5c}x{1b}"),  # the text that looks like an escape is not one: its backslash is escaped
        ("a\\\x1b", "a\\\\x{1b}"),  # a backslash before an escaped character stays
        ("O=Example\\, Inc", "O=Example\\, Inc"),  # an RFC 4514 escape reads as before
        ('["O=A\\\\, Inc \\u00e9\\n"]', '["O=A\\\\, Inc \\u00e9\\n"]'),  # so does JSON text
        ("\\xff", "\\xff"),  # and the pcap reader's spelling of a raw byte
        ("[/x]", "[/x]"),  # markup is the table's business (rich Text), not an unsafe character
    ],
)
def test_escapes_are_braced_code_points_and_ordinary_backslashes_stay(text: str, shown: str) -> None:
    assert escape_text(text) == shown
    assert unescape_text(shown) == text


@pytest.mark.parametrize(("text", "shown"), [("=cmd|' /C calc'!A0", "\\x{3d}cmd|' /C calc'!A0"), ("+1", "\\x{2b}1"),
                                             ("-2+3", "\\x{2d}2+3"), ("@SUM(1)", "\\x{40}SUM(1)"), ("a=b", "a=b")])
def test_formula_starts_are_escaped_for_spreadsheets(text: str, shown: str) -> None:
    assert escape_text(text, formula=True) == shown
    assert escape_text(text) == text  # only CSV asks for it
    assert unescape_text(shown) == text


def test_clean_text_is_the_same_object() -> None:
    text = "api.example.test"
    assert escape_text(text) is text
    assert escape_text(text, formula=True) is text


_ALPHABET = st.sampled_from(["\\", "x", "{", "}", "5", "c", "0", "1", "a", "f", "=", "+", "-", "@", "\x1b", "\n",
                             "\x00", "\x7f", "\x9b", "\u202e", "\u2028", "\ufeff", "\udc80", "\U000e0020", "é", " "])


@settings(max_examples=hypothesis_examples(400), deadline=None)
@given(st.one_of(st.text(_ALPHABET, max_size=16), st.text(max_size=16)), st.booleans())
def test_escape_is_reversible_and_leaves_nothing_unsafe(text: str, formula: bool) -> None:
    shown = escape_text(text, formula=formula)
    assert unescape_text(shown) == text
    assert re.search(f"[{UNSAFE}]", shown) is None
    if formula:
        assert shown[:1] not in ("=", "+", "-", "@")


@settings(max_examples=hypothesis_examples(200), deadline=None)
@given(st.text(_ALPHABET, max_size=8), st.text(_ALPHABET, max_size=8))
def test_escape_is_one_to_one(a: str, b: str) -> None:
    """Two values never show the same: what an analyst reads names one value (and categories never merge)."""
    assert (escape_text(a) == escape_text(b)) == (a == b)


def test_series_of_every_text_dtype_is_escaped_per_distinct_value() -> None:
    values = ["ok.example", "a\x1bb", None, "a\x1bb", "ok.example"]
    want = ["ok.example", "a\\x{1b}b", None, "a\\x{1b}b", "ok.example"]
    for dtype in (object, "string", "category"):
        out = escape_series(pd.Series(values, dtype=dtype))
        assert [None if pd.isna(v) else v for v in out] == want, dtype
        before = pd.Series(values, dtype=dtype).dtype
        assert type(out.dtype) is type(before)
        assert (dtype == "category" or out.dtype == before)


def test_series_with_nothing_to_escape_is_returned_as_is() -> None:
    for s in (pd.Series(["a", "b", None], dtype="string"), pd.Series([1, 2, 3]),
              pd.Series(["a", "a"], dtype="category"), pd.Series([("h2",), ("h2",)], dtype=object)):
        assert escape_series(s) is s


def test_series_of_lists_keeps_the_lists() -> None:
    """List cells (the hello lists) are not text: they pass untouched; text cells beside them are escaped."""
    s = pd.Series([["h2", "\x1b"], "x\ny", None], dtype=object)
    out = escape_series(s)
    assert out.iloc[0] == ["h2", "\x1b"]
    assert out.iloc[1] == "x\\x{0a}y"
    assert out.iloc[2] is None


def test_frame_escapes_text_columns_and_leaves_numbers() -> None:
    df = pd.DataFrame({"sni": pd.Series(["=x", "y"], dtype="string"), "port": [1, 2]})
    out = escape_frame(df, formula=True)
    assert list(out["sni"]) == ["\\x{3d}x", "y"]
    assert list(out["port"]) == [1, 2]
    assert list(df["sni"]) == ["=x", "y"]  # the caller's frame is not changed
    clean = pd.DataFrame({"sni": ["a"], "port": [1]})
    assert escape_frame(clean) is clean


# --- end to end: a crafted capture and a crafted Envoy line through the CLI ---------------------------------
SNI = "\x1b]0;owned\x07[bold]x[/bold]\x1b[2J\nnext[/x]"  # OSC title, markup, clear screen, a forged row
ISSUER = "Evil\x1b[31m CA\n[/y]\u202e"  # colour, newline, broken markup, bidi override


def _hostile_pcap(path: Path) -> Path:
    """One TLS 1.2 handshake whose SNI and server-certificate issuer are :data:`SNI` and :data:`ISSUER`."""
    from tests.craft import tcp_conversation
    from tests.test_tls import _ext, certificate_body, client_hello_body, make_cert, record

    sni = SNI.encode()
    sni_ext = _ext(0, struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni)
    hello = record(client_hello_body(extensions=sni_ext))
    server_hello = b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\xc0\x2f" + b"\x00" + b"\x00\x00"
    server = record(server_hello, msg_type=2) + record(certificate_body(make_cert("leaf.test", ISSUER)), msg_type=11)
    path.write_bytes(tcp_conversation(("10.1.2.3", 40000), ("10.9.8.7", 443), [(True, 0, hello), (False, 0, server)]))
    return path


def _run(*args: str) -> tuple[str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def _no_terminal_control(text: str) -> None:
    assert text.replace("\n", "").isprintable(), repr(text)


def test_a_crafted_capture_shows_its_names_escaped_in_table_and_csv_and_exact_in_jsonl(tmp_path: Path) -> None:
    """issue 18 rows 3 and 6, from the wire: the default table no longer raises MarkupError, disguises nothing
    and lets no escape reach the terminal; CSV the same in its cells; JSON lines keeps the bytes' text."""
    pcap = str(_hostile_pcap(tmp_path / "h.pcap"))
    table, _ = _run("fingerprint", "--no-progress", pcap)
    _no_terminal_control(table)
    assert escape_text(SNI) in table
    assert "[bold]x[/bold]" in table  # shown as written, not as bold x
    assert escape_text("CN=" + ISSUER) in table
    assert len([line for line in table.splitlines() if line.strip()]) == 3  # header, rule, one row
    text, _ = _run("fingerprint", "--no-progress", "-f", "csv", "--columns", "sni,server_issuer", pcap)
    _no_terminal_control(text)
    assert [[unescape_text(c) for c in row] for row in csv.reader(io.StringIO(text, newline=""))] == [
        ["sni", "server_issuer"], [SNI, "CN=" + ISSUER]]
    lines, _ = _run("fingerprint", "--no-progress", "-f", "jsonl", pcap)
    row = json.loads(lines)
    assert (row["sni"], row["server_issuer"]) == (SNI, "CN=" + ISSUER)


def test_a_crafted_envoy_line_shows_its_names_escaped_in_cef_and_the_summary(tmp_path: Path) -> None:
    """Log text (SNI, User-Agent, client-certificate issuer) takes the same path: table, CEF and the stderr
    summary of ``score`` hold no control character; CSV no formula."""
    from tests.conftest import ROOT, require_shared

    line = json.loads(require_shared("samples/envoy/envoy_access.sample.jsonl").read_text().splitlines()[0])
    ua = "=cmd|' /C calc'!A0\u202e"
    line.update(requested_server_name=SNI, user_agent=ua, downstream_peer_issuer="CN=" + ISSUER,
                downstream_peer_subject="CN=\x1b[8mhidden\n,O=x")
    log = tmp_path / "h.jsonl"
    log.write_text(json.dumps(line) + "\n")
    table, _ = _run("fingerprint", "--no-progress", "--columns", "sni,user_agent,peer_issuer,client_id", str(log))
    _no_terminal_control(table)
    assert escape_text(ua) in table
    text, _ = _run("fingerprint", "--no-progress", "-f", "csv", "--columns", "user_agent", str(log))
    assert text.splitlines()[1] == escape_text(ua, formula=True)
    cef, summary = _run("score", "--no-progress", "--baseline", str(ROOT / "baselines" / "sample"), "-f", "cef",
                        str(log))
    assert cef.startswith("CEF:0|")  # the sample baseline flags the unknown issuer: an alert to render
    _no_terminal_control(cef)
    _no_terminal_control(summary)
    subject = "CN=\x1b[8mhidden\n,O=x"  # the client id: its newline would forge a summary line
    assert f"top flagged clients: {escape_text(subject)} (1)\n" in summary
    assert len(summary.splitlines()) == 3
    assert "cs3=" + escape_text(SNI).replace("\\", "\\\\") in cef


def test_escape_series_of_text_with_lone_surrogates() -> None:
    # a Zeek or Suricata byte decoded with surrogateescape: Arrow strings cannot hold it, object columns can
    s = pd.Series(["ok", "bad\udcff", "x\x1b[2J", None, "bad\udcff"], dtype=object, name="sni")
    got = escape_series(s)
    assert got.tolist() == ["ok", "bad\\x{dcff}", "x\\x{1b}[2J", None, "bad\\x{dcff}"]
    assert (got.dtype, got.name) == (s.dtype, "sni")
    assert [unescape_text(v) for v in got.tolist()[:3]] == s.tolist()[:3]
    text = pd.Series(["ok", "x\x1b[2J", None], dtype="string")
    assert str(escape_series(text).dtype) == "string"
