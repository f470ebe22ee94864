"""The ``tlsdetect fingerprint`` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tlsdetect.cli import main
from tlsdetect.readers.pcap import read_pcap

from .conftest import PROJECT_PCAPS

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
    ("content", "message"),
    [(b"", "not a capture file"), (b"hello world, not a pcap", "not a pcap or pcapng file")],
)
def test_not_a_capture_is_one_line_and_nonzero(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    code, _, err = _run("fingerprint", str(bad))
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
