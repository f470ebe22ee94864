"""The ``tlsdetect fingerprint`` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import PROJECT_PCAPS, SHARED, needs_shared

SAMPLE = PROJECT_PCAPS / "tls13_stacks.pcapng"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_table_is_the_default_and_shows_whole_fingerprints() -> None:
    code, out, err = _run("fingerprint", str(SAMPLE))
    assert code == 0
    df, _ = read_pcap(SAMPLE)
    for ja4 in df["ja4"]:
        assert ja4 in out
    assert "connections from 1 file(s)" in err


def test_jsonl_rows_carry_the_schema_columns(tmp_path: Path) -> None:
    out_file = tmp_path / "out.jsonl"
    code, _, _ = _run("fingerprint", str(PROJECT_PCAPS), "-f", "jsonl", "-o", str(out_file))
    assert code == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == sum(len(read_pcap(p)[0]) for p in sorted(PROJECT_PCAPS.glob("*.pcap*")))
    for key in ("ts", "client_ip", "client_port", "server_ip", "server_port", "transport", "sni", "tls_version",
                "alpn", "ja3", "ja3_full", "ja3n", "ja3s", "ja4", "ja4_r", "ja4_o", "ja4_ro", "server_subject",
                "server_issuer", "server_cert_sha256"):
        assert key in rows[0]
    assert rows[0]["ts"].endswith("Z")


def test_csv_and_parquet(tmp_path: Path) -> None:
    code, out, _ = _run("fingerprint", str(SAMPLE), "-f", "csv", "--columns", "client_port,ja4")
    assert code == 0
    assert out.splitlines()[0] == "client_port,ja4"
    parquet = tmp_path / "out.parquet"
    code, _, _ = _run("fingerprint", str(SAMPLE), "-f", "parquet", "-o", str(parquet))
    assert code == 0
    table = pq.read_table(parquet).to_pandas()
    df, _ = read_pcap(SAMPLE)
    assert sorted(table["ja4"]) == sorted(df["ja4"])


@pytest.mark.parametrize(
    ("content", "forced", "message"),
    [
        (b"", None, "not a capture, Zeek, Suricata EVE or Envoy log"),
        (b"hello world, not a pcap", None, "not a capture, Zeek, Suricata EVE or Envoy log"),
        (b"hello world, not a pcap", "pcap", "not a pcap or pcapng file"),
        (b"", "pcap", "not a capture file"),
    ],
)
def test_not_a_capture_is_one_line_and_nonzero(
    tmp_path: Path, content: bytes, forced: str | None, message: str
) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    code, _, err = _run("fingerprint", str(bad), *(["--input-format", forced] if forced else []))
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_truncated_capture_is_read_up_to_the_damage(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) - 700])
    code, out, err = _run("fingerprint", str(cut), "-f", "jsonl")
    assert code == 0
    assert "warning:" in err
    assert "read up to the damage" in err
    assert "byte" in err
    assert len(out.splitlines()) >= 1


def test_missing_path_and_parquet_without_output(tmp_path: Path) -> None:
    code, _, err = _run("fingerprint", str(tmp_path / "nope.pcap"))
    assert code != 0
    assert "no such file" in err
    code, _, err = _run("fingerprint", str(SAMPLE), "-f", "parquet")
    assert code != 0
    assert "-o FILE" in err


def test_unknown_column_is_an_error() -> None:
    code, _, err = _run("fingerprint", str(SAMPLE), "--columns", "ja4,nonsense")
    assert code != 0
    assert "nonsense" in err


def test_unknown_column_error_lists_the_valid_names() -> None:
    """issue 14 item 10: ``--columns ja4,bogus`` names the valid columns, on one line."""
    from tlsdetect import schema

    code, _, err = _run("fingerprint", str(SAMPLE), "--columns", "ja4,bogus")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "unknown column(s): bogus; valid columns: " in lines[0]
    listed = lines[0].split("valid columns: ", 1)[1].split(", ")
    assert listed == list(schema.COLUMNS)
    assert "Traceback" not in err


def test_csv_writes_ts_as_jsonl_and_the_table_do(tmp_path: Path) -> None:
    """issue 14 item 9: CSV wrote ``2016-01-28 18:37:10.545976+00:00``, JSON lines ``...T...Z``; now one format."""
    import csv

    code, out, _ = _run("fingerprint", str(PROJECT_PCAPS), "-f", "csv", "--columns", "ts,client_port")
    assert code == 0
    from_csv = [r["ts"] for r in csv.DictReader(out.splitlines())]
    code, out, _ = _run("fingerprint", str(PROJECT_PCAPS), "-f", "jsonl", "--columns", "ts,client_port")
    assert code == 0
    from_jsonl = [json.loads(line)["ts"] for line in out.splitlines()]
    assert from_csv == from_jsonl
    assert from_csv
    assert all(t.endswith("Z") and "T" in t and "+" not in t for t in from_csv)
    code, out, _ = _run("fingerprint", str(PROJECT_PCAPS), "--columns", "ts")
    assert code == 0
    assert set(from_csv) <= {line.strip() for line in out.splitlines()}  # the table shows the same text


SAMPLES = SHARED / "samples"


@needs_shared("samples/zeek")
def test_zeek_logs_are_detected_and_joined(tmp_path: Path) -> None:
    """ssl.log and x509.log given together (names do not matter), detected by their content."""
    ssl, x509 = tmp_path / "a.txt", tmp_path / "b.txt"
    ssl.write_bytes((SAMPLES / "zeek" / "zeek_basic_ssl.log").read_bytes())
    x509.write_bytes((SAMPLES / "zeek" / "zeek_basic_x509.log").read_bytes())
    code, out, err = _run("fingerprint", str(ssl), str(x509), "-f", "jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows
    assert {r["source"] for r in rows} == {"zeek"}
    assert any(r["server_issuer"] for r in rows)


def test_mixed_inputs_and_dead_letter(tmp_path: Path) -> None:
    """A capture and a Suricata log in one call; a broken EVE line goes to the dead-letter file."""
    eve = tmp_path / "eve.json"
    good = {
        "timestamp": "2024-05-01T10:00:00.000000+0000", "flow_id": 1, "event_type": "tls",
        "src_ip": "10.0.0.1", "src_port": 50000, "dest_ip": "10.0.0.2", "dest_port": 443, "proto": "TCP",
        "tls": {"sni": "example.org", "version": "TLS 1.2", "ja3": {"hash": "a" * 32, "string": "771,1,,,"}},
    }
    eve.write_text(json.dumps(good) + "\n{broken\n")
    dead = tmp_path / "dead.jsonl"
    code, out, err = _run("fingerprint", str(SAMPLE), str(eve), "-f", "jsonl", "--dead-letter", str(dead))
    assert code == 0, err
    sources = [json.loads(line)["source"] for line in out.splitlines()]
    assert sources.count("suricata") == 1
    assert sources.count("pcap") == len(read_pcap(SAMPLE)[0])
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["line"], d["text"]) for d in letters] == [(2, "{broken")]
    assert "1 of 2 lines could not be read" in err


# --- issue 14 item 3: every path option, mistyped, is one line and a non-zero exit ---------------------------
_JA4 = "t13d1516h2_8daaf6152771_02713d6af862"


def _path_mistakes(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the error line names) for every command's path options and arguments."""
    pcap, log = str(SAMPLE), str(tmp / "access.log")
    a_file, nob, b = str(tmp / "a_file"), str(tmp / "nowhere" / "x.jsonl"), str(tmp / "b")
    stream = ["stream", "--source", f"envoy:{log}", "--sink", "jsonl:-"]
    return [
        (["fingerprint", ""], "the path is empty"),
        (["fingerprint", pcap, "-o", ""], "the path is empty"),
        (["fingerprint", pcap, "-f", "jsonl", "-o", nob], "no such directory"),
        (["fingerprint", log, "--dead-letter", ""], "the path is empty"),
        (["fingerprint", log, "--dead-letter", nob], "no such directory"),
        (["baseline", "fit", pcap, "-o", ""], "the path is empty"),
        (["baseline", "fit", "", "-o", b], "the path is empty"),
        (["baseline", "fit", pcap, "-o", f"{a_file}/b"], "is a file"),
        (["baseline", "fit", pcap, "-o", b, "--mesh-ca", ""], "--mesh-ca"),
        (["baseline", "fit", pcap, "-o", b, "--mesh-ca", str(tmp)], "a directory, not a PEM"),
        (["baseline", "fit", pcap, "-o", b, "--mesh-ca", a_file], "not a PEM certificate file"),
        (["baseline", "fit", pcap, "-o", b, "--dead-letter", ""], "the path is empty"),
        (["baseline", "show", ""], "the path is empty"),
        (["score", pcap, "--baseline", ""], "the path is empty"),
        (["score", "", "--baseline", b], "the path is empty"),
        (["score", pcap, "--baseline", b, "-o", ""], "the path is empty"),
        (["score", pcap, "--baseline", b, "-o", nob], "no such directory"),
        (["lookup", _JA4, "--baseline", ""], "the path is empty"),
        (["serve", "--baseline", ""], "the path is empty"),
        (["serve", "--baseline", b, "--token-file", ""], "the path is empty"),
        ([*stream, "--state", str(tmp / "st"), "--baseline", ""], "the path is empty"),
        ([*stream, "--state", ""], "the path is empty"),
        ([*stream, "--state", f"{a_file}/st"], "is a file"),
        ([*stream, "--state", str(tmp / "st"), "--dead-letter", ""], "the path is empty"),
        ([*stream, "--state", str(tmp / "st"), "--dead-letter", nob], "no such directory"),
        (["spark", "fit", pcap, "-o", ""], "the path is empty"),
        (["spark", "fit", "", "-o", b], "the path is empty"),
        (["spark", "fit", pcap, "-o", b, "--mesh-ca", ""], "--mesh-ca"),
        (["spark", "score", pcap, "--baseline", "", "-o", b], "the path is empty"),
        (["spark", "score", pcap, "--baseline", b, "-o", ""], "the path is empty"),
    ]


@pytest.mark.parametrize("case", range(len(_path_mistakes(Path("/t")))),
                         ids=[" ".join(a[:1] + a[-2:]) for a, _ in _path_mistakes(Path("/t"))])
def test_a_mistyped_path_is_one_error_line(case: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 3: ``--mesh-ca ""`` ended in IsADirectoryError, ``-o ""`` wrote a baseline into the current
    directory, ``--baseline ""`` loaded one from it, a missing output directory was a FileNotFoundError."""
    (tmp_path / "a_file").write_text("not a certificate, not a directory\n")
    (tmp_path / "access.log").write_text('{"ja4": "t13d1516h2_8daaf6152771_02713d6af862"}\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args, names = _path_mistakes(tmp_path)[case]
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, SystemExit), result.exception  # not an exception escaping the command
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    assert names in last
    assert list(cwd.iterdir()) == []  # nothing written where the user happened to be



def test_the_imports_are_kept_out_of_the_collectors_full_passes(tmp_path: Path) -> None:
    """``fingerprint`` freezes what exists before reading (imports), so the collector skips it."""
    import gc

    gc.unfreeze()
    try:
        code, _, _ = _run("fingerprint", str(SAMPLE), "-f", "jsonl", "-o", str(tmp_path / "out.jsonl"))
        assert code == 0
        assert gc.get_freeze_count() > 10_000  # pandas and pyarrow alone are far more
    finally:
        gc.unfreeze()
