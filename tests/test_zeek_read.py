"""read_zeek's file handling: gzip, directories, files of the wrong kind, partner logs without ssl."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tlsdetect.readers.logs import LogFormatError

from .test_zeek import HEADER, ZEEK, check_schema, needs_samples, read, read_zeek


@needs_samples
@pytest.mark.parametrize(
    "name", ["zat_tsv_x509.log", "zeek_aws-rds_escaped-comma_x509.log", "zeek_basic_x509.log", "zat_json_x509.log",
             "foxio_ja4_conn.log", "zat_tsv_conn.log"],
)
def test_partner_logs_alone_give_no_rows(name: str) -> None:
    df, letters = read(ZEEK / name)
    check_schema(df)
    assert len(df) == 0
    assert letters.stats.bad_lines == 0
    assert letters.stats.rows > 0


@needs_samples
def test_gzip_and_directory(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with gzip.open(folder / "one.gz", "wb") as fh:
        fh.write((ZEEK / "zeek_basic_ssl.log").read_bytes())
    shutil.copy(ZEEK / "zeek_basic_x509.log", folder / "zzz")  # names say nothing: content decides
    df, letters = read(folder)
    assert len(df) == 1
    assert df.iloc[0]["server_issuer"] == "CN=Google Internet Authority,O=Google Inc,C=US"
    assert letters.stats.files == 2


def test_wrong_kind_of_file(tmp_path: Path) -> None:
    http = tmp_path / "http.log"
    http.write_text(HEADER.format(path="http", fields="ts\tuid\tmethod", types="time\tstring\tstring")
                    + "1.0\tC1\tGET\n")
    with pytest.raises(LogFormatError, match="http"):
        read_zeek([http])
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    with pytest.raises(LogFormatError, match="not a Zeek log"):
        read_zeek([text])
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}\n')
    with pytest.raises(LogFormatError):
        read_zeek([other])
