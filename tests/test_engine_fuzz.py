"""Corrupted handshakes inside real captures: the engine never raises and both lanes agree."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.engine import read_pcap

from .conftest import PROJECT_PCAPS

SOURCES = sorted(PROJECT_PCAPS.glob("*.pcap*"))


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in df.columns if c != "conn_id"]
    return df[cols].astype(str).sort_values(["client_ip", "client_port", "ts"]).reset_index(drop=True)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 40))
def test_flipped_bytes_never_crash_and_lanes_agree(tmp_path: Path, source: Path, seed: int, flips: int) -> None:
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    # Past the file header: flips land in record headers, IP/TCP headers and TLS payload alike.
    for _ in range(flips):
        data[rng.randrange(64, len(data))] = rng.randrange(256)
    path = tmp_path / f"fuzz-{seed}{source.suffix}"
    path.write_bytes(bytes(data))
    fast, _ = read_pcap(path)
    slow, _ = read_pcap(path, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))


#: ``pcaps/edge_cases.pcapng`` with 20 bytes flipped (random.Random(42), as the test above does): the
#: ClientHello of the connection from port 49706 got a sequence number far from its stream's, so the
#: client's bytes after it start past a hole ~6 MB on, beyond the depth anyone reads. Both lanes must say
#: ``truncated=client_flight``: the carry used to drop the segments past the depth, so at the capture's
#: end the fast lane saw a stream that simply ended and left the client flight missing without saying why.
BAD_SEQ = Path(__file__).parent / "data" / "lanes" / "client_hello_bad_seq.pcapng"


def test_lanes_agree_after_a_client_hello_with_a_mangled_sequence_number() -> None:
    fast, _ = read_pcap(BAD_SEQ)
    slow, _ = read_pcap(BAD_SEQ, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    row = fast[fast["client_port"] == 49706]
    assert row["truncated"].tolist() == ["client_flight"]



#: The TLS 1.3 connection of ``pcaps/edge_cases.pcapng`` from port 33763 with its ServerHello segment's
#: sequence number flipped (1000441718 -> 346130294): the server's later bytes lie ~650 MB past it, so the
#: record that would close its flight is past a hole (tshark: "Previous segment not captured"). Whether
#: the flight ended with the ServerHello segment's records is not known: ``truncated=server_flight``. The
#: fast lane, from a carry that had dropped the far bytes, gave a clean ``server_flight`` instead.
SH_BAD_SEQ = Path(__file__).parent / "data" / "lanes" / "server_hello_bad_seq.pcapng"


def test_lanes_agree_after_a_server_hello_with_a_mangled_sequence_number() -> None:
    fast, _ = read_pcap(SH_BAD_SEQ)
    slow, _ = read_pcap(SH_BAD_SEQ, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    assert fast["server_flight"].isna().all()
    assert fast["truncated"].tolist() == ["server_flight"]  # the far bytes may hold more of the flight

#: The mTLS connection of ``pcaps/edge_cases.pcapng`` (port 46938) with its CertificateRequest's
#: message type flipped (13 -> 0x60): the server no longer visibly asks, but the client still sends its
#: Certificate in clear (tshark shows it in frame 4). Both lanes must report that certificate; the fast
#: lane used to read it only when the server was seen to ask, so its row lost the peer identity.
MANGLED_REQUEST = Path(__file__).parent / "data" / "lanes" / "certificate_request_mangled.pcapng"


def test_lanes_agree_on_a_client_certificate_sent_without_a_readable_request() -> None:
    fast, stats = read_pcap(MANGLED_REQUEST)
    slow, _ = read_pcap(MANGLED_REQUEST, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    assert stats.counts["fast_lane_connections"] == 1  # the fast lane took it
    assert fast["peer_subject"].tolist() == ["CN=tlsdetect sample client,O=tlsdetect"]


#: A connection of ``pcaps/tls13_stacks.pcapng`` (port 56293) whose ClientHello's message length was flipped
#: (0x1d2 -> 0x157): its record holds the shorter hello and the start of a "message" running on past the
#: record, into the ChangeCipherSpec that follows. tshark shows one Client Hello and no HelloRetryRequest.
#: The reassembling lane, reading the client's bytes as they came, took the hello once per read (the record
#: was not yet consumed), so its row said ``hello_retry`` with a ``ja3_retry`` equal to the ``ja3``.
SHORT_LENGTH = Path(__file__).parent / "data" / "lanes" / "client_hello_short_message_length.pcapng"


def test_lanes_agree_on_a_client_hello_record_that_ends_inside_a_message() -> None:
    fast, _ = read_pcap(SHORT_LENGTH)
    slow, _ = read_pcap(SHORT_LENGTH, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    assert slow["hello_retry"].tolist() == [False]
    assert slow["ja3_retry"].isna().all()
