"""The native engine's UDP path (:mod:`tlsdetect.readers.pcap.datagrams`) on captures built by hand:
QUIC Initials protected as a real peer protects them (any split of the CRYPTO stream into frames,
packets and datagrams, any order, coalesced, retransmitted), a Retry, a HelloRetryRequest, version 2,
malformed Initials (a counted skip by name, never an exception), and DTLS with fragments and a
HelloVerifyRequest. The reference corpus is checked in ``test_golden_native.py``."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect import schema
from tlsdetect.fingerprint import client_fingerprints
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.datagrams import Candidates, Datagrams
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tls_stream import client_hello_columns
from tlsdetect.wire.quic_initial import protect_initial
from tlsdetect.wire.tls import parse_client_hello

from .craft import (
    client_hello_body,
    handshake_message,
    hypothesis_examples,
    ipv4_udp_frame,
    pcap_file,
    server_hello_body_tls13,
    tls_extension,
)

C, S, CPORT = "10.1.0.1", "10.2.0.2", 50000
DCID, CSCID, SSCID = bytes.fromhex("8394c8f03e515708"), b"\xc1\xc2\xc3\xc4", b"\x5a\x5b\x5c\x5d"
V1, V2 = 0x00000001, 0x6B3343CF


def _quic_hello(sni: str = "quic.example") -> bytes:
    """A ClientHello body with ALPN h3 and QUIC transport parameters (ids 1, 4, a GREASE id 27)."""
    params = b"\x01\x02\x40\x64" + b"\x04\x01\x10" + b"\x1b\x00"
    body = client_hello_body(sni)
    head_len = 2 + 32 + 1 + 2 + 6 + 2  # version, random, session id, ciphers (3), compression: then extensions
    exts = body[head_len + 2 :] + tls_extension(0x39, params)
    return body[:head_len] + struct.pack(">H", len(exts)) + exts


def _write(tmp_path: Path, frames: list[bytes], name: str = "udp.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(pcap_file((1_700_000_000, 1000 * i, f) for i, f in enumerate(frames)))  # 1 ms apart
    return path


def _client(payload: bytes) -> bytes:
    return ipv4_udp_frame(C, S, CPORT, 443, payload)


def _server(payload: bytes) -> bytes:
    return ipv4_udp_frame(S, C, 443, CPORT, payload)


def _server_initial(version: int = V1, body: bytes | None = None, *, key_cid: bytes = DCID, offset: int = 0) -> bytes:
    msg = handshake_message(2, body if body is not None else server_hello_body_tls13())
    return protect_initial(version, CSCID, SSCID, 0, [(offset, msg)], server=True, key_cid=key_cid)


def _read(path: Path) -> tuple[pd.DataFrame, ReadStats]:
    df, stats = read_pcap(path)
    schema.validate(df)
    return df, stats


def _feed(datagrams: list[tuple[bool, bytes]]) -> tuple[list[dict[str, object]], ReadStats]:
    """Datagrams (client -> server when True) straight into :class:`Datagrams`, as one window of
    QUIC candidates (the property tests run many examples; the engine around it is tested below)."""
    buf = np.frombuffer(b"".join(d for _, d in datagrams), dtype=np.uint8)
    n = len(datagrams)
    starts = np.cumsum([0] + [len(d) for _, d in datagrams])[:-1].astype(np.int64)
    fwd = np.array([f for f, _ in datagrams], dtype=bool)
    c_lo, s_lo = np.uint64(0xFFFF0A010001), np.uint64(0xFFFF0A020002)
    src_lo = np.where(fwd, c_lo, s_lo).astype(np.uint64)
    dst_lo = np.where(fwd, s_lo, c_lo).astype(np.uint64)
    zero = np.zeros(n, dtype=np.uint64)
    cand = Candidates(
        np.zeros(n, dtype=np.int64), starts, np.array([len(d) for _, d in datagrams], dtype=np.int64),
        np.arange(n, dtype=np.int64), zero, src_lo, zero, dst_lo,
        np.where(fwd, CPORT, 443).astype(np.int64), np.where(fwd, 443, CPORT).astype(np.int64),
    )
    stats = ReadStats()
    reader = Datagrams(stats)
    reader.window(buf, cand)
    return reader.rows(final=True), stats


def _cuts(draw: st.DrawFn, n: int, most: int) -> list[int]:
    return sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=most))))


@st.composite
def _scattered(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """The client's hello cut into CRYPTO frames, the frames grouped into Initial packets, the packets
    coalesced into datagrams (each padded to 1200 as clients do), the datagrams shuffled, some repeated."""
    body = _quic_hello()
    stream = handshake_message(1, body)
    cuts = [0, *_cuts(draw, len(stream), 6), len(stream)]
    frames = [(a, stream[a:b]) for a, b in itertools.pairwise(cuts)]
    frames = draw(st.permutations(frames))
    groups = [0, *_cuts(draw, len(frames), 3), len(frames)] if len(frames) > 1 else [0, 1]
    packets = [
        protect_initial(V1, DCID, CSCID, pn, list(frames[a:b]))
        for pn, (a, b) in enumerate(itertools.pairwise(groups))
    ]
    joins = [0, *_cuts(draw, len(packets), 2), len(packets)] if len(packets) > 1 else [0, 1]
    datagrams = [b"".join(packets[a:b]) for a, b in itertools.pairwise(joins)]
    datagrams = [d + bytes(max(0, 1200 - len(d))) for d in datagrams]
    datagrams = draw(st.permutations(datagrams))
    repeats = draw(st.lists(st.sampled_from(datagrams), max_size=2))
    return [*datagrams, *repeats], body


@settings(max_examples=hypothesis_examples(100), deadline=None)
@given(scattered=_scattered(), server_first=st.booleans())
def test_any_split_and_order_gives_the_same_hello(scattered: tuple[list[bytes], bytes], server_first: bool) -> None:
    datagrams, body = scattered
    frames = [(True, d) for d in datagrams]
    server = (False, _server_initial())
    frames = [server, *frames] if server_first else [*frames, server]  # a server Initial first is held
    rows, stats = _feed(frames)
    assert len(rows) == 1, stats.skipped
    row = rows[0]
    hello = parse_client_hello(body)
    assert {k: row[k] for k in client_hello_columns(hello)} == client_hello_columns(hello)
    assert (row["transport"], row["sni"]) == ("quic", "quic.example")
    assert (row["client_port"], row["server_port"]) == (CPORT, 443)
    assert row["sh_cipher"] == 0x1301
    assert row["tls_version"] == "TLSv1.3"
    assert row["quic_transport_params"] == "1=100,4=16,grease"
    assert row["incomplete"] is None
    assert not any(k.startswith("quic_") for k in stats.skipped), stats.skipped


def test_a_whole_hello_through_the_engine(tmp_path: Path) -> None:
    """The same connection read from a capture: fingerprints with the QUIC letter, the table's schema."""
    body = _quic_hello()
    client = protect_initial(V1, DCID, CSCID, 0, [(0, handshake_message(1, body))], pad_to=1160)
    df, stats = _read(_write(tmp_path, [_client(client), _server(_server_initial())]))
    assert len(df) == 1
    row = df.iloc[0]
    expected = client_fingerprints("q", parse_client_hello(body))
    assert (row["transport"], row["ja4"], row["ja3"]) == ("quic", expected.ja4, expected.ja3)
    assert row["ja4"].startswith("q13d")
    assert (row["client_ip"], row["server_ip"]) == (C, S)
    assert row["ja3s"] is not pd.NA
    assert stats.counts["quic_connections"] == 1


@pytest.mark.parametrize("version", [V1, V2, 0xFF00001D])
def test_versions_one_two_and_draft_29(tmp_path: Path, version: int) -> None:
    body = _quic_hello()
    client = protect_initial(version, DCID, CSCID, 0, [(0, handshake_message(1, body))], pad_to=1160)
    df, stats = _read(_write(tmp_path, [_client(client), _server(_server_initial(version))]))
    assert len(df) == 1
    assert df.iloc[0]["ja4"] == client_fingerprints("q", parse_client_hello(body)).ja4
    assert df.iloc[0]["ja3s"] is not pd.NA
    assert stats.counts["quic_connections"] == 1


def test_after_a_retry_the_new_connection_id_keys_both_sides(tmp_path: Path) -> None:
    """After a Retry the client's Initial carries the server's new DCID; the server's Initial is keyed by it."""
    msg = handshake_message(1, _quic_hello())
    new = b"\x77" * 8
    first = protect_initial(V1, DCID, CSCID, 0, [(0, msg)], pad_to=1160)
    retry = bytes([0xF0]) + V1.to_bytes(4, "big") + bytes([len(CSCID)]) + CSCID + bytes([len(new)]) + new + bytes(24)
    second = protect_initial(V1, new, CSCID, 1, [(0, msg)], pad_to=1160)
    frames = [_client(first), _server(retry), _client(second), _server(_server_initial(key_cid=new))]
    df, stats = _read(_write(tmp_path, frames))
    assert len(df) == 1
    assert pd.notna(df.iloc[0]["ja3s"])
    assert stats.skipped.get("quic_decrypt_failed", 0) == 0


def test_hello_retry_request_gives_the_second_hello(tmp_path: Path) -> None:
    """A HelloRetryRequest in the server's Initial; the client's second hello follows in the same stream."""
    hello1, hello2 = _quic_hello("one.example"), _quic_hello("two.example")
    m1, m2 = handshake_message(1, hello1), handshake_message(1, hello2)
    hrr_random = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
    hrr = struct.pack(">H", 0x0303) + hrr_random + b"\x00" + struct.pack(">HB", 0x1301, 0)
    hrr += struct.pack(">H", 6) + tls_extension(43, b"\x03\x04")
    sh = handshake_message(2, server_hello_body_tls13())
    frames = [
        _client(protect_initial(V1, DCID, CSCID, 0, [(0, m1)], pad_to=1160)),
        _server(_server_initial(body=hrr)),
        _client(protect_initial(V1, DCID, CSCID, 1, [(len(m1), m2)], pad_to=1160)),
        _server(protect_initial(V1, CSCID, SSCID, 1, [(4 + len(hrr), sh)], server=True, key_cid=DCID)),
    ]
    df, _ = _read(_write(tmp_path, frames))
    row = df.iloc[0]
    assert row["sni"] == "one.example"
    assert row["hello_retry"]
    assert row["ja4_retry"] == client_fingerprints("q", parse_client_hello(hello2)).ja4
    assert row["ja4_retry"].startswith("q")


def test_a_connection_across_windows_and_other_udp(tmp_path: Path) -> None:
    """The hello's two datagrams and the server's Initial in different windows, DNS between them:
    the connection's state carries over windows (and the unsettled first window emits nothing)."""
    msg = handshake_message(1, _quic_hello(padding := "x" * 1500))
    half = len(msg) // 2
    dns = [ipv4_udp_frame(C, S, 5353, 53, bytes(80)) for _ in range(40)]
    frames = [
        _client(protect_initial(V1, DCID, CSCID, 0, [(half, msg[half:])], pad_to=1160)),
        *dns,
        _client(protect_initial(V1, DCID, CSCID, 1, [(0, msg[:half])], pad_to=1160)),
        *dns,
        _server(_server_initial()),
    ]
    df, stats = read_pcap(_write(tmp_path, frames), window=4096)
    assert len(df) == 1
    assert df.iloc[0]["sni"] == padding
    assert pd.notna(df.iloc[0]["ja3s"])
    assert stats.counts["udp_hello_datagrams"] == 3


def test_an_idle_connection_is_finished_and_a_late_server_initial_is_a_named_skip(tmp_path: Path) -> None:
    """Past the idle time (capture time) the connection is finished with its ClientHello alone; the
    server's Initial 10 s later has no client keys left: a counted skip, not a second row."""
    client = protect_initial(V1, DCID, CSCID, 0, [(0, handshake_message(1, _quic_hello()))], pad_to=1160)
    path = tmp_path / "late.pcap"
    path.write_bytes(pcap_file([(1_700_000_000, 0, _client(client)), (1_700_000_010, 0, _server(_server_initial()))]))
    df, stats = read_pcap(path, window=1024)  # one datagram per window: expiry runs between them
    assert len(df) == 1
    assert pd.isna(df.iloc[0]["ja3s"])
    assert stats.skipped["quic_undecryptable"] == 1
    assert stats.skipped["quic_no_hello"] == 1


def _valid_client_datagram() -> bytes:
    return protect_initial(V1, DCID, CSCID, 0, [(0, handshake_message(1, _quic_hello()))], pad_to=1160)


def test_malformed_initials_are_counted_skips(tmp_path: Path) -> None:
    good = _valid_client_datagram()
    flipped = bytearray(good)
    flipped[-20] ^= 0x01  # the tag no longer verifies
    stream_frame = protect_initial(V1, DCID, CSCID, 0, [(0, b"x")])
    frames = [
        ipv4_udp_frame(C, S, 1, 443, bytes(flipped)),
        ipv4_udp_frame(C, S, 2, 443, good[:600]),  # cut short: its length field claims more
        ipv4_udp_frame(C, S, 3, 443, _bad_frame_packet()),
        ipv4_udp_frame(C, S, 4, 443, stream_frame[:40]),
        ipv4_udp_frame(C, S, 5, 53, b"\x12\x34\x01\x00" + bytes(40)),  # DNS: never a candidate
    ]
    df, stats = _read(_write(tmp_path, frames))
    assert len(df) == 0
    # no keys open it: a damaged client Initial, or a server's whose client Initial was not captured
    assert stats.skipped["quic_undecryptable"] == 1
    assert stats.skipped["quic_truncated"] == 2
    assert stats.skipped["quic_bad_frame"] == 1
    assert stats.counts["udp_hello_datagrams"] == 4


def _bad_frame_packet() -> bytes:
    """An Initial that decrypts but carries a STREAM frame (not allowed in an Initial)."""
    from tlsdetect.wire import quic_initial as q

    plain = b"\x08\x00\x03abc" + bytes(1100)
    keys = q.initial_keys(V1, DCID, server=False)
    head = bytes([0xC3]) + V1.to_bytes(4, "big") + bytes([8]) + DCID + bytes([4]) + CSCID + b"\x00"
    head += (0x4000 | (4 + len(plain) + 16)).to_bytes(2, "big") + (0).to_bytes(4, "big")
    sealed = q._aead(keys.key).encrypt(keys.iv, plain, head)
    mask = q._mask(keys.hp, sealed[:16])
    out = bytearray(head + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(4):
        out[len(head) - 4 + i] ^= mask[1 + i]
    return bytes(out)


@settings(max_examples=hypothesis_examples(200), deadline=None)
@given(data=st.data())
def test_damaged_initials_never_raise(data: st.DataObject) -> None:
    """Any bytes changed or cut in an Initial: a row or a counted skip by name, never an exception."""
    good = bytearray(_valid_client_datagram())
    for _ in range(data.draw(st.integers(1, 4))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(good)))
    rows, stats = _feed([(True, bytes(good[:cut])), (False, _server_initial())])
    named = sum(v for k, v in stats.skipped.items() if k.startswith("quic_"))
    assert len(rows) == stats.counts["quic_connections"]
    assert rows or named >= 1  # nothing read is always said, by name


# -- DTLS -----------------------------------------------------------------------------------------


def _dtls_hello(cookie: bytes = b"") -> bytes:
    body = client_hello_body("dtls.example")
    head = struct.pack(">H", 0xFEFD) + body[2:35]
    return head + bytes([len(cookie)]) + cookie + body[35:]


def _dtls_record(msg_type: int, body: bytes, offset: int, length: int, msg_seq: int, rec_seq: int) -> bytes:
    fragment = bytes([msg_type]) + len(body).to_bytes(3, "big") + msg_seq.to_bytes(2, "big")
    fragment += offset.to_bytes(3, "big") + length.to_bytes(3, "big") + body[offset : offset + length]
    return struct.pack(">BHH", 22, 0xFEFD, 0) + rec_seq.to_bytes(6, "big") + struct.pack(">H", len(fragment)) + fragment


def test_dtls_fragments_cookie_exchange_and_retransmission(tmp_path: Path) -> None:
    """First hello in two fragments (second first, one repeated), a HelloVerifyRequest, the hello again
    with the cookie: the first hello is the fingerprint, the second the retry, not a HelloRetryRequest."""
    first, second = _dtls_hello(), _dtls_hello(b"\x99" * 16)
    half = len(first) // 2
    hvr = struct.pack(">H", 0xFEFF) + bytes([16]) + b"\x99" * 16
    sh = struct.pack(">H", 0xFEFD) + bytes(32) + b"\x00" + struct.pack(">HB", 0xC02F, 0) + b"\x00\x00"
    frames = [
        ipv4_udp_frame(C, S, 40000, 4433, _dtls_record(1, first, half, len(first) - half, 0, 1)),
        ipv4_udp_frame(C, S, 40000, 4433, _dtls_record(1, first, 0, half, 0, 0)),
        ipv4_udp_frame(C, S, 40000, 4433, _dtls_record(1, first, half, len(first) - half, 0, 1)),
        ipv4_udp_frame(S, C, 4433, 40000, _dtls_record(3, hvr, 0, len(hvr), 0, 0)),
        ipv4_udp_frame(C, S, 40000, 4433, _dtls_record(1, second, 0, len(second), 1, 2)),
        ipv4_udp_frame(S, C, 4433, 40000, _dtls_record(2, sh, 0, len(sh), 1, 1)
                       + _dtls_record(14, b"", 0, 0, 2, 2)),
    ]
    df, stats = _read(_write(tmp_path, frames))
    assert len(df) == 1
    row = df.iloc[0]
    expected = client_fingerprints("d", parse_client_hello(first, dtls=True))
    assert (row["transport"], row["ja4"], row["sni"]) == ("dtls", expected.ja4, "dtls.example")
    assert row["ja4"][0] == "d"
    assert row["ja4_retry"] == row["ja4"]  # the cookie is the only difference
    assert not row["hello_retry"]
    assert row["tls_version"] == "DTLSv1.2"
    assert row["sh_cipher"] == 0xC02F
    assert pd.isna(row["quic_transport_params"])
    assert stats.counts["dtls_connections"] == 1


def test_other_udp_traffic_never_reaches_python(tmp_path: Path) -> None:
    frames = [ipv4_udp_frame(C, S, 5353 + i, 53, bytes([i]) * 60) for i in range(50)]
    frames += [ipv4_udp_frame(C, S, 6000, 443, b"\x40" + bytes(1199))]  # a QUIC short header
    df, stats = _read(_write(tmp_path, frames))
    assert len(df) == 0
    assert stats.counts["udp_hello_datagrams"] == 0
