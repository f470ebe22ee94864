"""Cutting a pcap/pcapng byte stream into self-contained capture files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REFERENCE, needs_reference
from tlsdetect.readers.pcap.capture import CaptureError, CaptureReader
from tlsdetect.readers.pcap.splitter import StreamSplitter


def _packets(path: Path) -> list[bytes]:
    out = []
    for batch in CaptureReader(path, reuse_buffer=False):
        for i in range(len(batch)):
            s, n = int(batch.data[i]), int(batch.caplen[i])
            out.append(bytes(batch.buf[s:s + n]))
    return out


def _split(data: bytes, cuts: list[int], every: list[bool], tmp: Path) -> list[Path]:
    sp, files, at = StreamSplitter(), [], 0
    for n, cut in zip(cuts, every, strict=False):
        sp.feed(data[at:at + n])
        at += n
        if cut and (got := sp.cut()) is not None:
            files.append(got)
    sp.feed(data[at:])
    if (got := sp.cut()) is not None:
        files.append(got)
    paths = []
    for i, blob in enumerate(files):
        p = tmp / f"w{i}"
        p.write_bytes(blob)
        paths.append(p)
    return paths


@needs_reference
@pytest.mark.parametrize("name", ["tls12.pcap", "tls-handshake.pcapng"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 3000), max_size=40), every=st.lists(st.booleans(), max_size=40))
def test_windows_hold_every_packet_once_in_order(name: str, cuts: list[int], every: list[bool],
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    src = REFERENCE / name
    tmp = tmp_path_factory.mktemp("w")
    got = [p for f in _split(src.read_bytes(), cuts, every, tmp) for p in _packets(f)]
    assert got == _packets(src)


def test_a_record_cut_by_the_pipe_waits_for_its_rest() -> None:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 1, 0, 4, 4) + b"abcd"
    sp = StreamSplitter()
    sp.feed(head + rec + rec[:7])
    assert sp.cut() == head + rec
    assert sp.cut() is None
    assert sp.pending == 0
    assert sp.buffered == 7  # the record still arriving: not in a file yet
    sp.feed(rec[7:])
    assert sp.buffered == len(rec)
    assert sp.cut() == head + rec
    assert sp.records == 2
    assert sp.buffered == 0


@pytest.mark.parametrize(("data", "words"), [
    (b"GET / HTTP/1.1\r\n", "not a pcap or pcapng stream"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 1 << 30, 4),
     "a record of 1073741824 bytes at stream byte 24"),
    (struct.pack(">I", 0x0A0D0D0A) + struct.pack("<I", 28) + b"\x4d\x3c\x2b\x1a" + bytes(16)
     + struct.pack("<III", 6, 13, 0), "a block of 13 bytes at stream byte 28"),
])  # fmt: skip
def test_damage_is_one_clear_error(data: bytes, words: str) -> None:
    with pytest.raises(CaptureError, match=words):
        StreamSplitter().feed(data)
