"""The ``ccore`` fuzz target (fuzz/ccore_target.py): real captures pass, and a C core that differs from
the numpy core in any array is a finding (MismatchError), not a silent pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fuzz import ccore_target
from fuzz.ccore_target import MismatchError
from tlsdetect.readers.pcap import ccore
from tlsdetect.readers.pcap.capture import CaptureReader

from .conftest import PROJECT_PCAPS

pytestmark = pytest.mark.skipif(not ccore.enabled(), reason=f"the C core does not run here: {ccore.status()}")

PCAP = PROJECT_PCAPS / "tls12_stacks.pcap"
PCAPNG = PROJECT_PCAPS / "tls13_stacks.pcapng"


@pytest.mark.parametrize("path", [PCAP, PCAPNG], ids=lambda p: p.name)
def test_a_capture_passes_with_every_packet_counted(path: Path) -> None:
    packets = sum(len(b) for b in CaptureReader(path, reuse_buffer=False))
    assert sum(ccore_target.run(path.read_bytes())) == packets > 0


@pytest.mark.parametrize("data", [b"", b"\x00" * 15, b"\xff" * 16, bytes(range(256)) * 3])
def test_raw_bytes_pass(data: bytes) -> None:
    assert ccore_target.run(data) == []


def test_a_walker_that_drops_a_record_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ccore.walk_pcap

    def drops_last(*args: object) -> tuple[np.ndarray, int]:
        starts, nxt = real(*args)  # type: ignore[arg-type]
        return starts[:-1], nxt

    monkeypatch.setattr(ccore, "walk_pcap", drops_last)
    with pytest.raises(MismatchError):
        ccore_target.run(PCAP.read_bytes())


def test_a_decoder_off_by_one_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ccore.decode

    def longer(*args: object) -> ccore.DecodedArrays:
        got = real(*args)  # type: ignore[arg-type]
        got.rows[ccore.DecodedArrays.FIELDS.index("payload_len")] += 1
        return got

    monkeypatch.setattr(ccore, "decode", longer)
    with pytest.raises(MismatchError, match="payload_len"):
        ccore_target.run(PCAPNG.read_bytes())


def test_pcap_fields_reading_past_its_check_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccore, "pcap_fields", lambda buf, starts, little, nano: (
        np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=np.int64)))
    with pytest.raises(MismatchError, match="pcap_fields"):
        ccore_target.run(b"\x01" * 40)


def test_a_flight_walk_that_loses_a_cut_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 4 holds ccore.tls13_walk to the numpy walk: a C walk that never says cut is caught on a
    window whose server record runs past its bytes."""
    real = ccore.tls13_walk

    def uncut(*args: object) -> object:
        s, c = real(*args)  # type: ignore[arg-type]
        return (*s[:4], np.zeros_like(s[4])), c

    monkeypatch.setattr(ccore, "tls13_walk", uncut)
    # the first 24 bytes are the cut points (0, 65, 128, 193 of 256) and, by their low bits, the segments'
    # directions (client, server, client, server); the server's second record claims 255 bytes
    data = bytearray(256)
    data[:4] = bytes([0, 65, 128, 193])
    data[4:24] = bytes([193] * 20)
    data[65:74] = b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"  # the ServerHello's record ...
    data[74:79] = b"\x17\x03\x03\x00\xff"  # ... then one that runs past the window
    with pytest.raises(MismatchError, match="tls13_walk"):
        ccore_target._as_window(bytes(data))
