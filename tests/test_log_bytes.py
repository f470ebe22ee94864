"""Raw bytes, not text: log lines that are not UTF-8 are dead-lettered by every reader, never a crash.

The readers' other fuzz tests draw Python text, which never holds the lone surrogates that
``surrogateescape`` makes of invalid bytes; a Zeek or Suricata line with a raw ``\\xff`` used to
end in a ``UnicodeEncodeError`` from Arrow. Zeek and Suricata escape such bytes themselves, so a
raw one means a damaged line (dead letter); Envoy lines are decoded with replacement characters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.logs import DeadLetter, LogFormatError
from tlsdetect.readers.suricata import read_suricata
from tlsdetect.readers.zeek import read_zeek

from . import test_envoy, test_suricata, test_zeek

Reader = Callable[[Path, DeadLetter], pd.DataFrame]


def _zeek_tsv() -> bytes:
    return test_zeek._VALID_TSV.encode()


def _zeek_json() -> bytes:
    return test_zeek._VALID_JSON.encode()


def _eve() -> bytes:
    return (json.dumps(test_suricata.tls_event(tls_sni="a.example")) + "\n").encode()


def _envoy() -> bytes:
    return (test_envoy.record() + "\n").encode()


CASES: dict[str, tuple[str, Callable[[], bytes], Reader]] = {
    "zeek-tsv": ("ssl.log", _zeek_tsv, lambda p, d: read_zeek([p], dead_letter=d)),
    "zeek-json": ("ssl.json", _zeek_json, lambda p, d: read_zeek([p], dead_letter=d)),
    "suricata": ("eve.json", _eve, lambda p, d: read_suricata([p], dead_letter=d)),
    "envoy": ("access.log", _envoy, lambda p, d: read_envoy([p], dead_letter=d)),
}


#: The JSON key whose value gets the invalid bytes (a server name: no field a line needs to be read).
KEYS = {"zeek-json": b"server_name", "suricata": b"sni", "envoy": b"requested_server_name"}


def _with_damaged_copy(data: bytes, case: str) -> bytes:
    """The file with a copy of its last record inserted after it, two invalid bytes in one field/value."""
    lines = data.split(b"\n")
    i = max(k for k, line in enumerate(lines) if line and not line.startswith(b"#"))
    line = lines[i]
    at = line.index(b'"', line.index(b'"' + KEYS[case] + b'":') + len(KEYS[case]) + 3) + 1 if case in KEYS else 3
    return b"\n".join([*lines[:i + 1], line[:at] + b"\xff\xfe" + line[at:], *lines[i + 1:]])


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_utf8_line(tmp_path: Path, case: str) -> None:
    name, valid, reader = CASES[case]
    good = valid()
    path = tmp_path / name
    path.write_bytes(_with_damaged_copy(good, case))
    letters = tmp_path / "dead.jsonl"
    with DeadLetter(letters) as dead:
        df = reader(path, dead)
    schema.validate(df)
    if case == "envoy":  # replacement characters: both lines read, one a line per row (no collapse)
        assert (dead.stats.lines, dead.stats.bad_lines, len(df)) == (2, 0, 2)
        assert df["sni"].tolist() == ["a.test", "\ufffd\ufffda.test"]
        return
    assert len(df) == 1
    assert dead.stats.bad_lines == 1
    record = json.loads(letters.read_text())
    assert "utf" in record["reason"].lower()
    assert "\\xff\\xfe" in record["text"]  # the raw bytes shown, not lost


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(list(CASES)), junk=st.lists(st.binary(max_size=60), max_size=4),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0x80, 0xFF)), max_size=3))
def test_arbitrary_bytes_never_crash(tmp_path: Path, case: str, junk: list[bytes],
                                     flips: list[tuple[int, int]]) -> None:
    """A valid line, high bytes flipped into it, then binary junk: a frame or a one-line error."""
    name, valid, reader = CASES[case]
    data = bytearray(valid())
    for at, value in flips:
        data[at % len(data)] = value
    path = tmp_path / name
    path.write_bytes(bytes(data) + b"\n".join(junk) + b"\n")
    dead = DeadLetter()
    try:
        df = reader(path, dead)
    except LogFormatError as exc:
        message = str(exc)
    else:
        schema.validate(df)
        assert dead.stats.bad_lines <= dead.stats.lines
        return
    assert message
    assert "\n" not in message
