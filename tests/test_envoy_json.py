"""Envoy JSON lines: Arrow's block parse, bad lines located and dead-lettered when it fails, hostile lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.envoy import json as envoy_json
from tlsdetect.readers.envoy.json import JsonReader
from tlsdetect.readers.json_depth import MAX_DEPTH
from tlsdetect.readers.json_names import MAX_NAMES, TOO_MANY_NAMES
from tlsdetect.readers.logs import DeadLetter

from .test_envoy import read_envoy, record, write


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


def _nested(n: int) -> str:
    """An Envoy record nested ``n`` deep (its object, then arrays)."""
    return '{"downstream_remote_address": "10.9.9.9:1", "x": ' + "[" * (n - 1) + "]" * (n - 1) + "}"


@pytest.mark.parametrize("command", ["fingerprint", "score"])
def test_deeply_nested_line_is_a_dead_letter_not_a_crash(tmp_path: Path, command: str) -> None:
    """Arrow's JSON reader SIGSEGVs on a line nested ~20,000 deep (and takes minutes from ~5,000): the
    CLI runs in a subprocess so that a crash fails this test instead of killing the test run."""
    middle = write(tmp_path, [record(connection_id=1), _nested(20_000), record(connection_id=2)], "middle.log")
    first = write(tmp_path, [_nested(20_000), record(connection_id=3)], "first.log")
    dead = tmp_path / "dead.jsonl"
    res = subprocess.run([sys.executable, "-m", "tlsdetect", command, str(middle), str(first), "--dead-letter",
                          str(dead), "-f", "csv", "--output", str(tmp_path / "out.csv")],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 3
    got = [(Path(r["file"]).name, r["line"], r["reason"].split(":")[0]) for r in map(json.loads, dead.open())]
    assert got == [("middle.log", 2, "JSON nested too deep"), ("first.log", 1, "JSON nested too deep")]


def test_deep_line_keeps_later_line_numbers(tmp_path: Path) -> None:
    lines = [record(connection_id=1), _nested(MAX_DEPTH + 1), record(connection_id=2),
             record(downstream_remote_address="nope"), _nested(MAX_DEPTH), "[1]"]  # fmt: skip
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert list(df["client_ip"]) == ["10.1.2.3", "10.1.2.3", "10.9.9.9"]  # depth MAX_DEPTH is read
    assert (dead.stats.lines, dead.stats.rows, dead.stats.bad_lines) == (6, 3, 3)
    got = [(r["line"], r["reason"].split(":")[0]) for r in map(json.loads, (tmp_path / "dead.jsonl").open())]
    assert sorted(got) == [(2, "JSON nested too deep"), (4, "bad address"), (6, "not a JSON object")]


def test_lines_without_connection_fields_are_dead_letters(tmp_path: Path) -> None:
    lines = [record(connection_id=1), '{"a": [1, 2, 3]}', '{"zz": null}', "{}",
             '{"downstream_remote_address": "-", "requested_server_name": "", "ja3": null, "method": "GET"}',
             record(connection_id=2)]  # fmt: skip
    for fast in (True, False):  # Arrow's block parse, and the line-by-line path a broken line sends it to
        body = lines if fast else [*lines, "{broken"]
        dead = DeadLetter()
        df = read_envoy([write(tmp_path, body, f"{fast}.log")], dead_letter=dead)
        assert list(df["conn_id"]) == ["1", "2"]
        assert dead.stats.reasons["no connection fields"] == 4
        assert dead.stats.bad_lines == 4 + (not fast)


def test_text_line_of_dashes_is_a_dead_letter(tmp_path: Path) -> None:
    fmt = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %TLS_JA3_FINGERPRINT%\n"
    lines = ["[2026-11-26T17:08:00.484Z] 10.1.2.3:4000 a.test abc", "[2026-11-26T17:08:00.484Z] - - -"]
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead, text_format=fmt)
    assert list(df["client_ip"]) == ["10.1.2.3"]
    assert dead.stats.reasons["no connection fields"] == 1


def test_many_distinct_names_make_no_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow builds a column per name it meets: it must only ever be given the mapped names."""
    widest: list[int] = []
    read_json = envoy_json.pj.read_json

    def spy(*args: object, **kwargs: object) -> object:
        table = read_json(*args, **kwargs)  # type: ignore[arg-type]
        widest.append(table.num_columns)
        return table

    monkeypatch.setattr(envoy_json.pj, "read_json", spy)
    lines = [record(connection_id=i) for i in range(20)]  # a clean sample first, then other names
    lines += [json.dumps({f"n{i}_{j}": "v" for j in range(40)}) if i % 3 else record(connection_id=100 + i)
              for i in range(600)]  # fmt: skip
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    assert len(df) == 20 + 200
    assert dead.stats.reasons["no connection fields"] == 400
    assert max(widest) <= len(JsonReader(None).names)  # never 16,000 columns of random names


def test_a_mapped_name_first_seen_after_the_sample_is_read(tmp_path: Path) -> None:
    """The sample (the block's first lines) decides the schema: a mapped name absent from it, or null
    in it, must still be read where it appears later (a retype), and an unmapped name whose type
    changes (null, then a number) must not cost any row."""
    lines = [record(connection_id=i, bytes_sent=None, downstream_peer_uri_san=None) for i in range(200)]
    lines += [record(connection_id=200 + i, bytes_sent=5, downstream_peer_uri_san="spiffe://a/b",
                     downstream_peer_subject=f"CN=c{i}") for i in range(3)]  # fmt: skip
    dead = DeadLetter()
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    assert dead.stats.bad_lines == 0
    assert len(df) == 203
    assert df["peer_subject"].tail(3).tolist() == ["CN=c0", "CN=c1", "CN=c2"]
    assert df["peer_subject"].head(200).isna().all()
    assert df["peer_uri_san"].notna().sum() == 3


def test_a_line_with_too_many_names_is_a_dead_letter(tmp_path: Path) -> None:
    wide = json.loads(record(connection_id=2))
    wide.update({f"x{i}": i for i in range(MAX_NAMES)})
    lines = [record(connection_id=1), json.dumps(wide), record(connection_id=3)]
    dead = DeadLetter(tmp_path / "dead.jsonl")
    df = read_envoy([write(tmp_path, lines)], dead_letter=dead)
    dead.close()
    assert list(df["conn_id"]) == ["1", "3"]
    (rec,) = map(json.loads, (tmp_path / "dead.jsonl").open())
    assert (rec["line"], rec["reason"]) == (2, TOO_MANY_NAMES)


_NAMES = ["downstream_remote_address", "requested_server_name", "connection_id", "ja3", "response_code",
          "downstream_peer_subject", "bytes_sent", "x", "%START_TIME%"]  # mapped and not  # fmt: skip
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**62), 2**62), st.sampled_from([1.5, 2.0, -0.25]),
                    st.text(max_size=5), st.just({"a": 1}))  # fmt: skip
_LINES = st.lists(st.dictionaries(st.sampled_from(_NAMES) | st.from_regex(r"r[0-9]{1,3}", fullmatch=True),
                                  _VALUES, max_size=6), min_size=1, max_size=40)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_LINES, st.booleans())
def test_every_block_path_reads_what_line_by_line_reads(monkeypatch: pytest.MonkeyPatch,
                                                        objs: list[dict[str, object]], small: bool) -> None:
    """Tiny samples and pieces drive every path (retype, off-sample names, drift, pieces); whatever
    path a block takes, its rows are those of the per-line reference reading."""
    if small:
        monkeypatch.setattr(envoy_json, "_SAMPLE_BYTES", 60)
        monkeypatch.setattr(envoy_json, "_SAMPLE_NAMES", 3)
        monkeypatch.setattr(envoy_json, "_PIECE", 150)
        monkeypatch.setattr(envoy_json, "_RETYPES", 1)
    block = "".join(json.dumps(o) + ("\n\n" if i % 7 == 3 else "\n") for i, o in enumerate(objs)).encode()
    reader = JsonReader(None)
    got = reader._read_block(Path("x"), 10, block, DeadLetter())
    want = reader._line_by_line(Path("x"), 10, block, DeadLetter())
    assert (got.rows, got.lines) == (want.rows, want.lines)
    for col, values in want.columns.items():
        assert (got.columns[col].to_pylist() if col in got.columns else [None] * got.rows) == values.to_pylist()
    assert [got.line_no(i) for i in range(got.rows)] == [want.line_no(i) for i in range(want.rows)]
    assert [got.text(i) for i in range(got.rows)] == [want.text(i) for i in range(want.rows)]
