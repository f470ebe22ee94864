"""The pcap engine's vectorised shortcuts against straightforward versions of the same step.

Each shortcut exists for speed only (issue 2); these properties pin that it changes no value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap.capture import _chain
from tlsdetect.readers.pcap.fastlane import SLACK, _ascii_texts, _in_time_order, _with_joined

SETTINGS = settings(max_examples=150, deadline=None)


def _follow(cand: np.ndarray, nxt_pos: np.ndarray, start: int) -> list[int]:
    where = {int(c): i for i, c in enumerate(cand)}
    path, i = [start], start
    while int(nxt_pos[i]) in where:
        i = where[int(nxt_pos[i])]
        path.append(i)
    return path


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.lists(st.integers(0, 29), max_size=5),
       st.integers(0, 29))
def test_record_chain_shortcut_equals_following_it(lengths: list[int], breaks: list[int], start: int) -> None:
    """Candidates back to back (the shortcut's case) or with some successors broken off."""
    cand = np.cumsum([0, *lengths[:-1]]).astype(np.int64)
    nxt = cand + np.array(lengths, dtype=np.int64)
    for b in breaks:
        if b < len(nxt):
            nxt[b] += 1  # points between candidates: the chain ends there
    start = min(start, len(cand) - 1)
    assert _chain(cand, nxt, start).tolist() == _follow(cand, nxt, start)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=20))
def test_sni_text_from_buffers_equals_python_decode(values: list[bytes | None]) -> None:
    data = np.frombuffer(b"".join(v for v in values if v is not None), dtype=np.uint8)
    length = np.array([-1 if v is None else len(v) for v in values], dtype=np.int64)
    got = list(_ascii_texts(length, data))  # type: ignore[call-overload]
    want = [None if v is None else v.decode("ascii", "backslashreplace") for v in values]
    assert [None if pd.isna(g) else g for g in got] == want


def _joined_by_hand(buf: np.ndarray, p1: list[int], l1: list[int], tail_at: list[int], second: list[int],
                    rec_end: list[int]) -> tuple[bytes, list[int]]:
    out, starts = b"", []
    raw = buf.tobytes()
    for p, first, q, j, need in zip(p1, l1, tail_at, second, rec_end, strict=True):
        starts.append(len(out))
        if j < 0:
            out += raw[p : p + need + SLACK]
        else:
            out += raw[p : p + first] + raw[q : max(q, q + need - first)]
    return out, starts


@SETTINGS
@given(st.binary(min_size=1, max_size=200),
       st.lists(st.tuples(st.integers(0, 220), st.integers(0, 40), st.integers(-1, 3), st.integers(0, 80)),
                max_size=8),
       st.lists(st.integers(0, 220), min_size=4, max_size=4))
def test_joined_hello_records_equal_slicing_by_hand(data: bytes, hellos: list[tuple[int, int, int, int]],
                                                    payloads: list[int]) -> None:
    buf = np.frombuffer(data, dtype=np.uint8)
    p1 = np.array([h[0] for h in hellos], dtype=np.int64)
    l1 = np.array([h[1] for h in hellos], dtype=np.int64)
    second = np.array([h[2] for h in hellos], dtype=np.int64)
    rec_end = np.array([max(h[3], h[1] + 1) for h in hellos], dtype=np.int64)  # a split record is longer
    all_payload = np.array(payloads, dtype=np.int64)
    got, starts = _with_joined(buf, p1, l1, all_payload, second, rec_end)
    tail_at = [int(all_payload[max(j, 0)]) for j in second.tolist()]
    want, want_starts = _joined_by_hand(buf, p1.tolist(), l1.tolist(), tail_at, second.tolist(), rec_end.tolist())
    assert starts.tolist() == want_starts
    assert got.tobytes()[: len(want)] == want
    assert len(got) == max(len(want), 1)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.binary(max_size=6))), max_size=25))
def test_time_order_moves_every_row_with_its_sni(rows: list[tuple[int, bytes | None]]) -> None:
    """The fast lane's rows sorted by time (ties in arrival order), SNI bytes moved as ranges."""
    col = {
        "ts": np.array([t for t, _ in rows], dtype=np.int64),
        "row": np.arange(len(rows), dtype=np.int64),
        "sni_len": np.array([-1 if s is None else len(s) for _, s in rows], dtype=np.int64),
        "sni_bytes": np.frombuffer(b"".join(s or b"" for _, s in rows), dtype=np.uint8),
    }
    out = _in_time_order(col)
    expected = sorted(range(len(rows)), key=lambda i: rows[i][0])  # sorted() is stable
    assert out["row"].tolist() == expected
    assert out["ts"].tolist() == [rows[i][0] for i in expected]
    assert out["sni_len"].tolist() == [-1 if rows[i][1] is None else len(rows[i][1] or b"") for i in expected]
    assert out["sni_bytes"].tobytes() == b"".join(rows[i][1] or b"" for i in expected)


# -- reassembly limits in bytes, not rounds (issue 18 rows 2 and 13) ----------------------------------

import datetime  # noqa: E402
import struct  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tlsdetect.readers.pcap.engine import EXACT_ROUNDS, MAX_STREAM, read_pcap  # noqa: E402

from .craft import (  # noqa: E402
    client_hello_body,
    handshake_message,
    server_hello_body_tls13,
    stream_segments,
    tcp_conversation,
    tls_records,
)

_TLS13_SERVER = tls_records(handshake_message(2, server_hello_body_tls13()), 1 << 14)


def _read(tmp_path: Path, client: list[tuple[bool, int, bytes]], server: list[tuple[bool, int, bytes]],
          ) -> list[pd.DataFrame]:
    path = tmp_path / "limits.pcap"
    path.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), client + server))
    frames = []
    for fast in (True, False):
        df, stats = read_pcap(path, fast_lane=fast)
        assert stats.warnings == []
        assert len(df) == 1
        frames.append(df)
    return frames


@pytest.mark.parametrize("records", [EXACT_ROUNDS + 1, 12, 40, 300])
def test_a_hello_in_many_records_each_in_its_own_segment(tmp_path: Path, records: int) -> None:
    """Row 2: nine or more records, one per segment, used to run out of reassembly rounds."""
    hello = handshake_message(1, client_hello_body(padding=600))
    parts = tls_records(hello, -(-len(hello) // records))
    server = stream_segments(_TLS13_SERVER, 1400, from_client=False)
    for df in _read(tmp_path, stream_segments(parts, 10**6, from_client=True), server):
        row = df.iloc[0]
        assert row["sni"] == "example.com"
        assert row["ja4"].startswith("t13d0306h2_")
        assert row["ch_records"] == len(parts)
        assert pd.isna(row["incomplete"])


def test_a_65k_hello_in_4_byte_segments(tmp_path: Path) -> None:
    """Row 13: 16k segments and four records, well inside the depth: read whole."""
    hello = handshake_message(1, client_hello_body(padding=65_000))
    client = stream_segments(b"".join(tls_records(hello, 1 << 14)), 4, from_client=True)
    for df in _read(tmp_path, client, stream_segments(_TLS13_SERVER, 1400, from_client=False)):
        assert df["sni"].tolist() == ["example.com"]
        assert df["ch_records"].tolist() == [4]


def _der_certificate() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big.example")])
    day = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(day).not_valid_after(day + datetime.timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _tls12(certs: list[bytes]) -> tuple[list[tuple[bool, int, bytes]], list[bytes]]:
    """A TLS 1.2 conversation: the client's hello segments (with its ChangeCipherSpec after the hello), and the
    server's first flight as records (ServerHello, Certificate of ``certs``, ServerHelloDone)."""
    listing = b"".join(len(c).to_bytes(3, "big") + c for c in certs)
    hello12 = struct.pack(">H", 0x0303) + bytes(range(1, 33)) + b"\x00" + struct.pack(">HB", 0xC02F, 0) + b"\x00\x00"
    flight = (handshake_message(2, hello12) + handshake_message(11, len(listing).to_bytes(3, "big") + listing)
              + handshake_message(14, b""))
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)
    client = stream_segments(hello, 1400, from_client=True)
    client.append((True, len(hello[0]), b"\x14\x03\x03\x00\x01\x01"))
    return client, tls_records(flight, 1 << 14)


@pytest.mark.parametrize(("chain_bytes", "whole"), [(130_000, True), (MAX_STREAM - 10_000, True),
                                                    (MAX_STREAM + 40_000, False)])
def test_a_long_certificate_chain_up_to_the_depth(tmp_path: Path, chain_bytes: int, whole: bool) -> None:
    """Row 13: a TLS 1.2 chain of 128 KB or more was dropped silently; inside the depth it is read,
    beyond it the row says ``depth_exceeded`` (the client's hello is still fingerprinted)."""
    client, flight = _tls12([_der_certificate()] + [bytes(2000)] * (chain_bytes // 2003))
    for df in _read(tmp_path, client, stream_segments(flight, 1400, from_client=False)):
        row = df.iloc[0]
        assert isinstance(row["ja4"], str)
        assert isinstance(row["ja3s"], str)
        if whole:
            assert row["server_subject"] == "CN=big.example"
            assert pd.isna(row["incomplete"])
        else:
            assert pd.isna(row["server_subject"])
            assert row["incomplete"] == "depth_exceeded"


@pytest.mark.parametrize(("offset", "size"), [(0, None), (40, 30), (100, 1)])
def test_overlapping_segments_with_other_bytes_say_so(tmp_path: Path, offset: int, size: int | None) -> None:
    """A resent or overlapping segment carrying other bytes than the first copy (the server may have read
    either): the first copy is fingerprinted, and the row says ``overlap_conflict``. Same bytes: no conflict."""
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    end = len(hello) if size is None else offset + size
    forged = bytes(b ^ 0x5A for b in hello[offset:end])
    server = stream_segments(_TLS13_SERVER, 1400, from_client=False)
    clean = _read(tmp_path, [(True, 0, hello), (True, offset, hello[offset:end])], server)
    for df in _read(tmp_path, [(True, 0, hello), (True, offset, forged)], server):
        row = df.iloc[0]
        assert row["incomplete"] == "overlap_conflict"
        assert row["sni"] == "example.com"
        assert row["ja4"] == clean[0].iloc[0]["ja4"]
    for df in clean:
        assert pd.isna(df.iloc[0]["incomplete"])


@pytest.mark.parametrize("forged", [False, True])
def test_a_resent_certificate_segment_with_other_bytes_says_so(tmp_path: Path, forged: bool) -> None:
    """A TLS 1.2 server flight whose certificate segment is sent again with other bytes (a sensor shown one
    certificate, the client another): both lanes read the first copy and say ``overlap_conflict``; the
    fast lane used to take resent ranges unread. The same bytes resent: an ordinary row."""
    client, flight = _tls12([_der_certificate()])
    server = stream_segments(flight, 100, from_client=False)
    _, off, data = server[2]  # inside the certificate
    server.append((False, off, bytes(b ^ 0x5A for b in data) if forged else data))
    for df in _read(tmp_path, client, server):
        row = df.iloc[0]
        assert row["server_subject"] == "CN=big.example"
        assert isinstance(row["ja3s"], str)
        if forged:
            assert row["incomplete"] == "overlap_conflict"
        else:
            assert pd.isna(row["incomplete"])


def test_a_keep_alive_probe_after_the_handshake_is_no_conflict(tmp_path: Path) -> None:
    """Stacks probe an idle connection with one garbage byte at the last byte sent (seen three times in the
    reference corpus): past the handshake's plaintext it is not a conflict."""
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    app = b"\x17\x03\x03\x00\x05hello"
    client = [(True, 0, hello), (True, len(hello), app), (True, len(hello) + len(app) - 1, b"\x00")]
    for df in _read(tmp_path, client, stream_segments(_TLS13_SERVER, 1400, from_client=False)):
        assert pd.isna(df.iloc[0]["incomplete"])
        assert df.iloc[0]["sni"] == "example.com"


def test_a_hello_cut_by_the_capture_is_a_row_that_says_so(tmp_path: Path) -> None:
    """A hello that began and never became whole used to vanish: now it is a row with a reason."""
    hello = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
    path = tmp_path / "cut.pcap"
    path.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), [(True, 0, hello[:100])]))
    for fast in (True, False):
        df, _ = read_pcap(path, fast_lane=fast)
        assert df["incomplete"].tolist() == ["hello_cut"]
        assert df["ja4"].isna().all()
        assert (df["client_port"].tolist(), df["server_port"].tolist()) == ([40000], [443])


# -- truncated records after the hellos (issue 18's anomaly ledger: ``truncated``) -------------------

from .craft import ipv4_tcp_frame, pcap_file  # noqa: E402
from .test_fastlane import _canonical  # noqa: E402

_CCS = b"\x14\x03\x03\x00\x01\x01"


def _record(ctype: int, body: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body


def _tls12_records(request: bool = False) -> list[bytes]:
    """A TLS 1.2 server flight, one record per message: ServerHello, Certificate, ServerKeyExchange,
    (CertificateRequest), ServerHelloDone."""
    listing = len(_CERT).to_bytes(3, "big") + _CERT
    hello12 = struct.pack(">H", 0x0303) + bytes(range(1, 33)) + b"\x00" + struct.pack(">HB", 0xC02F, 0) + b"\x00\x00"
    msgs = [handshake_message(2, hello12), handshake_message(11, len(listing).to_bytes(3, "big") + listing),
            handshake_message(12, bytes(300))]
    if request:
        msgs.append(handshake_message(13, b"\x01\x01\x00\x02\x04\x03\x00\x00"))
    return [_record(22, m) for m in [*msgs, handshake_message(14, b"")]]


_CERT = _der_certificate()
_HELLO = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
_TLS13_FLIGHT = [_TLS13_SERVER[0], _CCS, *(_record(23, bytes(n)) for n in (30, 1500, 90, 60))]
_CLIENT_FIN = _CCS + _record(23, bytes(53))


def _segments(parts: list[bytes], from_client: bool, *, drop: int | None = None, mss: int = 10**6,
              start: int = 0) -> list[tuple[bool, int, bytes]]:
    """Each part in segments of at most ``mss`` at its stream offset; part ``drop`` is missing (the sensor
    lost it: a hole, with the stream's later bytes still there)."""
    out, off = [], start
    for i, part in enumerate(parts):
        if i != drop:
            out += [(from_client, off + j, part[j : j + mss]) for j in range(0, len(part), mss)]
        off += len(part)
    return out


def _lanes(tmp_path: Path, segments: list[tuple[bool, int, bytes]], *, filler: int = 0) -> pd.DataFrame:
    """The one row of a crafted conversation, equal in both lanes. ``filler``: packets of another flow after it
    in the same window (a connection quiet at the window's end is still followed to the capture's end)."""
    path = tmp_path / "trunc.pcap"
    frames = [ipv4_tcp_frame("10.9.0.1", "10.9.0.2", 5555, 80, 1 + i, 1, 0x18, b"x") for i in range(filler)]
    path.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), segments)
                     + pcap_file((1_700_000_100, i, f) for i, f in enumerate(frames))[24:])
    (fast, stats), (slow, _) = read_pcap(path), read_pcap(path, fast_lane=False)
    pd.testing.assert_frame_equal(_canonical(fast), _canonical(slow))
    tls = fast[fast["server_port"] == 443].reset_index(drop=True)
    assert len(tls) == 1
    tls.attrs["fast_lane"] = stats.counts["fast_lane_connections"]
    return tls


def _assert_clean_hellos(row: pd.Series) -> None:
    """The hellos were read whole: fingerprints there, and the row is not ``incomplete``."""
    assert row["ja4"] == "t13d0305h2_40b44b994229_fbabbea27ee8"
    assert isinstance(row["ja3s"], str)
    assert pd.isna(row["incomplete"])


def test_tls12_server_flight_cut_inside_the_certificate(tmp_path: Path) -> None:
    """The capture ends inside the server's Certificate record: the chain and the flight were silently
    null on a clean-looking row; now the row says where (``server_chain``), and is still not incomplete."""
    flight = b"".join(_tls12_records())
    row = _lanes(tmp_path, [(True, 0, _HELLO), *_segments([flight[:300]], False, mss=100)]).iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "server_chain"
    assert pd.isna(row["server_subject"])
    assert row["server_flight"] is None
    assert pd.isna(row["resumed"])


def test_tls12_certificate_lost_to_a_hole(tmp_path: Path) -> None:
    """A segment inside the certificate the sensor missed, the rest of the conversation captured: the
    server's columns are missing and say so; the client's flight, read whole, is kept."""
    flight = b"".join(_tls12_records())
    client_after = _record(22, handshake_message(16, bytes(33))) + _CCS + _record(22, bytes(40))
    segments = [(True, 0, _HELLO), (True, len(_HELLO), client_after)]
    server = _segments([flight], False, mss=100)
    row = _lanes(tmp_path, segments + server[:3] + server[4:]).iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "server_chain"
    assert pd.isna(row["server_subject"])
    assert row["server_flight"] is None
    assert row["client_flight"] == (37,)


def test_tls12_server_flight_cut_after_the_certificate(tmp_path: Path) -> None:
    """Cut inside ServerKeyExchange: the certificate (whole) is kept, the flight sizes are missing."""
    records = _tls12_records()
    cut = b"".join(records[:2]) + records[2][:100]
    row = _lanes(tmp_path, [(True, 0, _HELLO), *_segments([cut], False, mss=500)]).iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "server_flight"
    assert row["server_subject"] == "CN=big.example"
    assert row["server_flight"] is None


def test_tls12_client_certificate_cut(tmp_path: Path) -> None:
    """mTLS: the server asked for a certificate and the client's Certificate record is cut by the capture's
    end: ``client_chain`` (the peer columns are missing), the server's flight is whole."""
    listing = len(_CERT).to_bytes(3, "big") + _CERT
    client_cert = _record(22, handshake_message(11, len(listing).to_bytes(3, "big") + listing))
    segments = [(True, 0, _HELLO), *_segments(_tls12_records(request=True), False, mss=1400),
                (True, len(_HELLO), client_cert[:200])]
    row = _lanes(tmp_path, segments).iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "client_chain"
    assert row["server_subject"] == "CN=big.example"
    assert isinstance(row["server_flight"], tuple)
    assert pd.isna(row["peer_subject"])
    assert row["client_flight"] is None


@pytest.mark.parametrize("filler", [0, 4200])
def test_tls13_server_flight_cut_by_the_capture(tmp_path: Path, filler: int) -> None:
    """The capture ends inside the server's encrypted flight: ``server_flight``. The fast lane follows the
    undecided flight to the capture's end, or (other traffic for 100 s after it) until it has been quiet
    for ``QUIET_NS``, and then takes it and says the same."""
    flight = b"".join(_TLS13_FLIGHT)
    df = _lanes(tmp_path, [(True, 0, _HELLO), *_segments([flight[:-40]], False, mss=200)], filler=filler)
    row = df.iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "server_flight"
    assert row["server_flight"] is None
    assert row["client_flight"] is None
    assert df.attrs["fast_lane"] == 1


@pytest.mark.parametrize("filler", [0, 4200])
def test_tls13_hole_at_a_record_boundary_is_not_a_short_flight(tmp_path: Path, filler: int) -> None:
    """The sensor missed exactly one record of the server's flight (30, 1500, 90, 60): the flight read
    (30, 1500), a partial value as if whole (``server_flight_changed`` would compare it). Now it is
    missing and says ``server_flight``."""
    after = _record(23, bytes(200))
    server = _segments([*_TLS13_FLIGHT, after], False, drop=4)
    df = _lanes(tmp_path, [(True, 0, _HELLO), *server[:-1], (True, len(_HELLO), _CLIENT_FIN), server[-1]],
                filler=filler)
    row = df.iloc[0]
    _assert_clean_hellos(row)
    assert row["server_flight"] is None
    assert row["truncated"] == "server_flight"
    assert df.attrs["fast_lane"] == 0  # a hole is the reassembling lane's


@pytest.mark.parametrize("filler", [0, 4200])
def test_tls13_client_flight_cut(tmp_path: Path, filler: int) -> None:
    """The client's Finished and request, the request cut by the capture's end: ``client_flight``; the
    server's flight, decided before, is whole."""
    flight = b"".join(_TLS13_FLIGHT)
    segments = [(True, 0, _HELLO), *_segments([flight], False),
                (True, len(_HELLO), (_CLIENT_FIN + _record(23, bytes(400)))[:-100]),
                (False, len(flight), _record(23, bytes(200)))]
    row = _lanes(tmp_path, segments, filler=filler).iloc[0]
    _assert_clean_hellos(row)
    assert row["truncated"] == "client_flight"
    assert row["server_flight"] == (30, 1500, 90, 60)
    assert row["client_flight"] is None


@pytest.mark.parametrize("filler", [0, 4200])
def test_data_cut_after_the_flights_is_not_truncated(tmp_path: Path, filler: int) -> None:
    """The common case: the capture ends inside application data after both flights were decided. Nothing
    the row says was cut, so it says nothing."""
    flight = b"".join(_TLS13_FLIGHT)
    app = _record(23, bytes(3000))
    segments = [(True, 0, _HELLO), *_segments([flight], False), (True, len(_HELLO), _CLIENT_FIN),
                *_segments([app[:1000]], False, start=len(flight)),
                (True, len(_HELLO) + len(_CLIENT_FIN), _record(23, bytes(30)))]
    row = _lanes(tmp_path, segments, filler=filler).iloc[0]
    _assert_clean_hellos(row)
    assert pd.isna(row["truncated"])
    assert row["server_flight"] == (30, 1500, 90, 60)
    assert row["client_flight"] == (53,)


# -- windows of any size give the same rows (issue 19 items 1 and 3) -----------------------------------

import ipaddress  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from .conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 connections at 50,000/s with a 20 ms RTT: ~1,000 open at once, so with small windows a
    handshake spans dozens of windows; 5% of ServerHellos split over two segments."""
    out = tmp_path_factory.mktemp("interleaved") / "il.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_big_pcap.py"), "-o", str(out), "--connections", "400",
         "--target-mb", "3", "--seed", "3", "--rate", "50000", "--servers", "4096", "--mss", "1448",
         "--batch", "128", "--server-split-fraction", "0.05", "--quiet"],
        check=True,
    )
    return out


def _ja3_by_client(df: pd.DataFrame) -> dict[tuple[int, int], str]:
    ips = [int(ipaddress.IPv4Address(a)) for a in df["client_ip"]]
    return dict(zip(zip(ips, df["client_port"].astype(int).tolist(), strict=True), df["ja3"].tolist(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("window", [64 * 1024, 4096])
def test_small_windows_give_the_rows_of_one_window_and_the_truth(interleaved: Path, window: int) -> None:
    """Idle expiry was a count of windows: with 64 KiB windows a ClientHello's connection expired
    before its ServerHello came (~1 ms of this traffic per window), which then opened a second row
    with the server as client: 611 rows for 400 connections, 211 without a JA3."""
    whole, _ = read_pcap(interleaved)
    small, stats = read_pcap(interleaved, window=window)
    truth = np.load(str(interleaved) + ".conns.npz")
    want = dict(zip(zip(truth["client_ip"].astype(int).tolist(), truth["client_port"].astype(int).tolist(),
                        strict=True), truth["ja3_md5"].tolist(), strict=True))
    assert len(small) == len(whole) == len(want)
    assert _ja3_by_client(small) == _ja3_by_client(whole) == want
    cols = [c for c in whole.columns if c != "conn_id"]
    key = ["client_ip", "client_port", "ts"]
    pd.testing.assert_frame_equal(
        whole[cols].astype(str).sort_values(key).reset_index(drop=True),
        small[cols].astype(str).sort_values(key).reset_index(drop=True),
    )
    assert stats.counts["connections"] == len(want)
