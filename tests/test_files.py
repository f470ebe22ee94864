"""The connections table's writers (:mod:`tlsdetect.sinks.files`): table, JSON lines, CSV and Parquet agree on
every value; ``ts`` is one ISO 8601 text; Parquet keeps one schema over chunks and round-trips the hello lists."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tlsdetect.sinks.files as sinks
from tlsdetect import schema
from tlsdetect.fingerprint import add_fingerprints, client_fingerprints
from tlsdetect.sinks.escape import escape_text, unescape_text
from tlsdetect.wire.tls import ClientHello


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s"])
def test_iso_utc_is_the_text_jsonl_writes(unit: str) -> None:
    """issue 14 item 9: CSV's vectorised ``ts`` text equals JSON lines' per value (ISO 8601 UTC, ``Z``)."""
    import pandas as pd

    from tlsdetect.sinks.files import _plain, iso_utc

    times = pd.Series(pd.to_datetime([
        "2016-01-28T18:37:10.545976Z", "2016-01-28T18:37:10Z", "2016-01-28T18:37:10.545976123Z",
        "2016-01-28T18:37:10.5Z", "1960-01-01T00:00:00.25Z", "1969-12-31T23:59:59.999999999Z", None,
    ], format="ISO8601", utc=True)).dt.as_unit("ns")
    times = times.dt.floor({"ns": "ns", "us": "us", "ms": "ms", "s": "s"}[unit]).dt.as_unit(unit)
    got = iso_utc(times).tolist()
    assert got == [_plain(t) for t in times]
    assert got[-1] is None
    assert all(t.endswith("Z") and " " not in t for t in got[:-1])


def test_parquet_round_trip_recomputes_the_same(tmp_path: object) -> None:
    """List columns come back from Parquet as arrays; fingerprints must not change."""
    import pyarrow.parquet as pq

    import tlsdetect.sinks.files as sinks

    hello = ClientHello(0x0303, (0x1301, 0xC02F), (0, 10, 16), alpn=(b"h2",), groups=(29,), sig_algs=(0x0403,))
    df = pd.DataFrame(
        {
            "transport": ["tcp"],
            "ch_version": [hello.legacy_version],
            "ch_ciphers": [hello.ciphers],
            "ch_extensions": [hello.extensions],
            "ch_groups": [hello.groups],
            "ch_point_formats": [()],
            "ch_sig_algs": [hello.sig_algs],
            "ch_supported_versions": [()],
            "ch_alpn": [("6832",)],
        }
    )
    first = add_fingerprints(schema.conform(df))
    path = f"{tmp_path}/t.parquet"
    sinks.write(first, "parquet", path=path)
    back = pq.read_table(path).to_pandas()
    again = add_fingerprints(schema.conform(back))
    assert again["ja4"].iloc[0] == first["ja4"].iloc[0] == client_fingerprints("t", hello).ja4
    assert again["ja3"].iloc[0] == first["ja3"].iloc[0]


def test_parquet_chunks_with_more_certificates_than_the_first(tmp_path: object) -> None:
    """Certificate columns are categoricals whose codes widen with their categories (int8 -> int16):
    a later chunk knowing 300 issuers must still fit the file's schema, and read back the same."""
    import pyarrow.parquet as pq

    import tlsdetect.sinks.files as sinks

    few = schema.conform(pd.DataFrame({"server_issuer": ["CN=a", None, "CN=b"]}))
    many = schema.conform(pd.DataFrame({"server_issuer": [f"CN=issuer {i}" for i in range(300)]}))
    assert few["server_issuer"].cat.codes.dtype != many["server_issuer"].cat.codes.dtype
    path = f"{tmp_path}/t.parquet"
    sink = sinks.Sink("parquet", path=path)
    sink.write(few)
    sink.write(many)
    sink.close()
    back = schema.conform(pq.read_table(path).to_pandas())
    schema.validate(back)
    assert back["server_issuer"].astype("string").tolist() == [
        "CN=a", pd.NA, "CN=b", *(f"CN=issuer {i}" for i in range(300))]


# --- JSON lines and CSV: the same values, cell for cell ----------------------------------------------------
#: Any text but lone surrogates (not UTF-8: string columns cannot hold them).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_ROW = st.fixed_dictionaries({
    "ts": st.one_of(st.none(), st.integers(-(2**62), 2**62)),  # nanoseconds since 1970
    "sni": st.one_of(st.none(), _TEXT),
    "client_port": st.one_of(st.none(), st.integers(0, 65535)),
    "hello_retry": st.one_of(st.none(), st.booleans()),
    "server_issuer": st.one_of(st.none(), _TEXT),
    "ch_ciphers": st.one_of(st.none(), st.lists(st.integers(0, 65535), max_size=4).map(tuple)),
    "ch_alpn": st.one_of(st.none(), st.lists(_TEXT, max_size=3).map(tuple)),
})


_ROW_COLUMNS = ("ts", "sni", "client_port", "hello_retry", "server_issuer", "ch_ciphers", "ch_alpn")


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in _ROW_COLUMNS})
    df["ts"] = pd.to_datetime(pd.Series([r["ts"] for r in rows], dtype="Int64"), unit="ns", utc=True)
    return schema.conform(df)[list(_ROW_COLUMNS)]


def _as_csv_text(value: Any) -> str:
    """What a CSV cell holds for a JSON lines value: missing is empty, a list is its JSON, the rest its text
    (wire text escaped: sinks.escape)."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list) else escape_text(str(value), formula=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ROW, min_size=1, max_size=5))
def test_jsonl_and_csv_write_the_same_values(rows: list[dict[str, Any]]) -> None:
    """Whatever the text (commas, quotes, new lines, any script), CSV and JSON lines hold one value per cell:
    JSON lines the exact value, CSV the same value escaped (no control character, no formula start)."""
    df = _frame(rows)
    jl, cs = io.StringIO(), io.StringIO()
    sinks.write(df, "jsonl", jl)
    sinks.write(df, "csv", cs)
    from_jsonl = [json.loads(line) for line in jl.getvalue().split("\n")[:-1]]  # not splitlines: U+2028 is text
    from_csv = list(csv.DictReader(io.StringIO(cs.getvalue(), newline="")))
    assert len(from_jsonl) == len(from_csv) == len(df)
    for j, c in zip(from_jsonl, from_csv, strict=True):
        assert list(c) == list(j) == list(_ROW_COLUMNS)
        assert c == {k: _as_csv_text(v) for k, v in j.items()}


def test_csv_escapes_a_carriage_return() -> None:
    """A name from the wire may hold a CR (``"a\\rb"``): Python's CSV writer leaves a bare CR unquoted, so a reader
    would split the row there (an injected row). CSV shows it escaped, in its cell."""
    buf = io.StringIO()
    sinks.write(schema.conform(pd.DataFrame({"sni": ["a\rb", "c"]}))[["sni"]], "csv", buf)
    assert "\r" not in buf.getvalue().replace("\r\n", "")
    assert list(csv.reader(io.StringIO(buf.getvalue(), newline=""))) == [["sni"], ["a\\x{0d}b"], ["c"]]


def test_csv_of_no_rows_is_the_header_alone() -> None:
    buf = io.StringIO()
    sink = sinks.Sink("csv", buf, columns=["ts", "ja4"])
    sink.write(schema.empty().iloc[:0])
    sink.close()
    assert buf.getvalue() == "ts,ja4\n"


# --- the table ----------------------------------------------------------------------------------------------
def _table(values: list[str]) -> str:
    buf = io.StringIO()
    sinks.write(schema.conform(pd.DataFrame({"sni": values})), "table", buf, columns=["sni"])
    return buf.getvalue()


def test_table_shows_whole_cells_and_missing_as_blank() -> None:
    """A fingerprint is never folded, whatever the width asked for."""
    ja4 = "t13d1516h2_8daaf6152771_02713d6af862"
    buf = io.StringIO()
    df = schema.conform(pd.DataFrame({"ja4": [ja4, None], "sni": ["a.example", None]}))
    sinks.write(df, "table", buf, columns=["sni", "ja4"], width=10)
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["sni", "ja4"]
    assert lines[2].split() == ["a.example", ja4]
    assert lines[3].strip() == ""


@pytest.mark.parametrize("text", ["[/x]", "[bold]x[/bold]", "a\x1b[31mred\x1b[0m"])
def test_table_writes_text_as_text_and_no_terminal_control(text: str) -> None:
    """A name from the wire (SNI, issuer) is attacker-chosen: it must show as written and not steer the terminal."""
    out = _table([text])
    assert "\x1b" not in out
    assert text.replace("\x1b", "\\x{1b}") in out


def test_unknown_format_and_missing_targets_are_errors(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        sinks.Sink("xml", io.StringIO())
    with pytest.raises(ValueError, match="parquet output needs a file"):
        sinks.Sink("parquet")
    with pytest.raises(ValueError, match="jsonl output needs a stream"):
        sinks.Sink("jsonl")


def test_csv_rows_with_and_without_a_carriage_return_keep_their_order_and_values() -> None:
    """Rows holding a CR or LF stay one row each, in order: read back and unescaped, every row is as it was."""
    values = ["a", "b\rc", "d", "e\r", "\rf\ng", "h"]
    buf = io.StringIO()
    frame = schema.conform(pd.DataFrame({"sni": values, "server_port": range(len(values))}))
    sinks.write(frame[["sni", "server_port"]], "csv", buf)
    assert len(buf.getvalue().splitlines()) == 1 + len(values)
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert [[unescape_text(c) for c in row] for row in rows] == [
        ["sni", "server_port"], *([v, str(i)] for i, v in enumerate(values))
    ]


def test_table_keeps_one_line_per_row_whatever_the_name_holds() -> None:
    """A newline or CR in an SNI is shown escaped: it cannot split a row or overwrite the line before it."""
    out = _table(["x\ny", "a\rb", "ok"])
    body = [line for line in out.splitlines() if line.strip() and set(line.strip()) != {"─"}][1:]
    assert [line.strip() for line in body] == ["x\\x{0a}y", "a\\x{0d}b", "ok"]


# --- wire text: escaped in the table and CSV, exact in JSON lines and Parquet (issue 18 rows 3 and 6) --------
#: Names built to steer a terminal, forge a row, fool a reader or run in a spreadsheet.
HOSTILE = ["\x1b]0;owned\x07t", "a\x1b[2Jb", "x\ny", "a\rb", "\u202emoc.elgoog", "goo\u200bgle", "l\u2028s",
           "[bold]x[/bold]", "[/x]", ":smile:", "=cmd|' /C calc'!A0", "-2+3", "O=A\\, Inc", "\\x{1b}", "\x85"]


def _hostile_frame() -> pd.DataFrame:
    n = len(HOSTILE)
    return schema.conform(pd.DataFrame({
        "sni": HOSTILE, "server_issuer": HOSTILE[::-1], "user_agent": HOSTILE, "client_id": HOSTILE[::-1],
        "ch_alpn": [(v,) for v in HOSTILE], "server_port": range(n),
    }))


def test_table_shows_every_name_escaped_on_its_own_line() -> None:
    """No control, bidi or separator character reaches the terminal; markup and emoji codes show as written;
    each row is one line; unescaped, each cell is the value."""
    buf = io.StringIO()
    cols = ["sni", "server_issuer", "server_port"]
    sinks.write(_hostile_frame(), "table", buf, columns=cols)
    out = buf.getvalue()
    assert out.replace("\n", "").isprintable()
    lines = [line for line in out.split("\n") if line.strip() and set(line.strip()) != {"─"}]
    header, body = lines[0], lines[1:]
    assert len(body) == len(HOSTILE)
    at = [header.index(c) for c in cols]  # cells are left-aligned under their heading
    for i, line in enumerate(body):
        sni, issuer, port = (line[a:b].rstrip() for a, b in zip(at, [*at[1:], None], strict=True))
        assert (unescape_text(sni), unescape_text(issuer), port) == (HOSTILE[i], HOSTILE[::-1][i], str(i))


def test_csv_cells_hold_no_control_and_no_formula_and_unescape_to_the_value() -> None:
    buf = io.StringIO()
    sinks.write(_hostile_frame(), "csv", buf)
    text = buf.getvalue()
    assert text.replace("\n", "").isprintable()
    assert len(text.split("\n")) == 1 + len(HOSTILE) + 1  # a line per row, and the last newline
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for i, row in enumerate(rows):
        assert all(cell[:1] not in ("=", "+", "-", "@") for cell in row.values())
        assert unescape_text(row["sni"]) == HOSTILE[i]
        assert unescape_text(row["user_agent"]) == HOSTILE[i]
        assert unescape_text(row["client_id"]) == HOSTILE[::-1][i]
        assert json.loads(row["ch_alpn"]) == [HOSTILE[i]]  # a list is JSON text, escaped by JSON


def test_jsonl_and_parquet_keep_the_exact_values(tmp_path: Any) -> None:
    """Their formats escape what they must: the value read back is the wire value, never escaped twice."""
    import pyarrow.parquet as pq

    df = _hostile_frame()
    buf = io.StringIO()
    sinks.write(df, "jsonl", buf)
    rows = [json.loads(line) for line in buf.getvalue().split("\n")[:-1]]
    assert [r["sni"] for r in rows] == HOSTILE
    assert [r["server_issuer"] for r in rows] == HOSTILE[::-1]
    assert [r["ch_alpn"] for r in rows] == [[v] for v in HOSTILE]
    sinks.write(df, "parquet", path=str(tmp_path / "h.parquet"))
    back = pq.read_table(tmp_path / "h.parquet").to_pydict()
    assert back["sni"] == HOSTILE
    assert back["server_issuer"] == HOSTILE[::-1]
    assert back["client_id"] == HOSTILE[::-1]


def _table_per_row(df: pd.DataFrame, columns: list[str], width: int | None) -> str:
    """The table as it was written before issue 19: a record per row (the oracle of the columnar cells)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tlsdetect.sinks.escape import escape_frame

    cols = [c for c in columns if c in df.columns]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in cols:
        table.add_column(c, no_wrap=True)
    widest = {c: len(c) for c in cols}
    for rec in sinks.to_records(escape_frame(df[cols])):
        cells = ["" if rec[c] is None else str(rec[c]) for c in cols]
        for c, cell in zip(cols, cells, strict=True):
            widest[c] = max(widest[c], len(cell))
        table.add_row(*(Text(cell) for cell in cells))
    buf = io.StringIO()
    Console(file=buf, width=max(width or 0, sum(widest.values()) + 3 * len(cols)), soft_wrap=False,
            highlight=False).print(table)
    return buf.getvalue()


@pytest.mark.parametrize("columns", [list(sinks.TABLE_COLUMNS), ["sni", "ch_ciphers", "ch_alpn", "server_port",
                                                                 "hello_retry", "ts", "user_agent"]])
def test_table_cells_are_those_of_a_record_per_row(columns: list[str]) -> None:
    """The table formats each distinct value once; what it shows is what a record per row showed."""
    from tests.conftest import PROJECT_PCAPS
    from tlsdetect.readers.inputs import Inputs

    for df in (Inputs([str(PROJECT_PCAPS)]).read_all(), _hostile_frame()):
        buf = io.StringIO()
        sinks.write(df, "table", buf, columns=columns, width=80)
        assert buf.getvalue() == _table_per_row(df, columns, 80)
