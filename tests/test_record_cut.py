"""The record-boundary finder of :mod:`tlsdetect.readers.pcap.record_cut`: true boundaries, and guesses it must not trust."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.craft import hypothesis_examples, pcap_file, pcap_record
from tlsdetect.readers.pcap.capture import MAX_PACKET
from tlsdetect.readers.pcap.record_cut import boundary_in, confirm, find_boundary


def _starts(records: list[tuple[int, int, bytes]]) -> list[int]:
    out, at = [], 24
    for _, _, data in records:
        out.append(at)
        at += 16 + len(data)
    return out


_records = st.lists(
    st.tuples(st.integers(1_600_000_000, 1_600_000_100), st.integers(0, 999_999), st.binary(min_size=1, max_size=300)),
    min_size=1, max_size=120,
)


@settings(max_examples=hypothesis_examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records, little=st.booleans(), where=st.floats(0, 1))
def test_finds_the_first_true_boundary_at_or_after_the_offset(records: list[tuple[int, int, bytes]], little: bool,
                                                               where: float) -> None:
    raw = pcap_file(records, little=little)
    starts = _starts(records)
    near = 24 + int(where * (len(raw) - 24))
    got = boundary_in(raw[near:], little=little, nanosecond=False, max_packet=MAX_PACKET, at_eof=True)
    following = [s for s in starts if s >= near]
    # Random payload could fake a chain only by luck (64 plausible headers, or fewer ending exactly at the
    # end); what the finder returns must then still be a true boundary, or nothing when none follows.
    if got is None:
        assert not following
    else:
        assert near + got in starts
        assert near + got == following[0]


def test_a_run_of_zero_bytes_is_not_a_chain_of_empty_records(tmp_path: Path) -> None:
    records = [(1_600_000_000, i, b"\x00" * 4000) for i in range(100)]
    raw = pcap_file(records)
    path = tmp_path / "zeros.pcap"
    path.write_bytes(raw)
    cut = find_boundary(str(path), len(raw) // 2 + 7, little=True, nanosecond=False, max_packet=MAX_PACKET)
    assert cut is not None
    assert cut in _starts(records)
    assert confirm(str(path), cut, little=True, max_packet=MAX_PACKET)


def test_a_payload_faking_a_chain_fools_the_guess_but_not_the_exact_walk(tmp_path: Path) -> None:
    fake = b"".join(pcap_record(1_600_000_000, 5, b"\x01" * 20) for _ in range(80))
    records = [(1_600_000_000, i, b"\x02" * 100) for i in range(10)]
    records.append((1_600_000_001, 0, fake))  # a packet whose bytes are 80 plausible records
    records += [(1_600_000_002, i, b"\x03" * 100) for i in range(100)]
    raw = pcap_file(records)
    path = tmp_path / "fake.pcap"
    path.write_bytes(raw)
    inside = _starts(records)[10] + 16 + 3  # within the hostile packet's bytes
    cut = find_boundary(str(path), inside, little=True, nanosecond=False, max_packet=MAX_PACKET)
    assert cut is not None
    assert cut not in _starts(records)  # the guess lands on a fake record
    assert not confirm(str(path), cut, little=True, max_packet=MAX_PACKET)
    true_cut = _starts(records)[12]
    assert confirm(str(path), true_cut, little=True, max_packet=MAX_PACKET)


def test_lying_lengths_and_bad_fields_are_no_boundary() -> None:
    bad_sub = struct.pack("<IIII", 1_600_000_000, 1_000_000, 10, 10) + b"x" * 10
    bad_len = struct.pack("<IIII", 1_600_000_000, 1, MAX_PACKET + 1, MAX_PACKET + 1)
    short_orig = struct.pack("<IIII", 1_600_000_000, 1, 10, 9) + b"x" * 10
    for raw in (bad_sub * 70, bad_len + b"\xff" * 64, short_orig * 70):
        assert boundary_in(raw, little=True, nanosecond=False, max_packet=MAX_PACKET) is None


def test_the_exact_walk_refuses_a_damaged_record(tmp_path: Path) -> None:
    records = [(1_600_000_000, i, b"\x02" * 100) for i in range(10)]
    raw = bytearray(pcap_file(records))
    starts = _starts(records)
    struct.pack_into("<I", raw, starts[3] + 8, MAX_PACKET + 1)  # a lying length before the cut
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(raw))
    assert not confirm(str(path), starts[6], little=True, max_packet=MAX_PACKET)
    assert confirm(str(path), starts[2], little=True, max_packet=MAX_PACKET)
