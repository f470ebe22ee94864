"""The tshark engine: golden values over the reference corpus, a cross-check with the native engine,
hand-made captures for the cases the corpus lacks, and the error contract.

Expected JA4 values come from FoxIO/Arkime (spec-corrected where those tools deviate), JA3/JA3S from
tshark 4.0's own ``tls.handshake.ja3`` fields; the engine never reads those fields, it parses the raw
handshake bytes with :mod:`tlsdetect.wire.tls`, so they are an independent oracle.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tlsdetect.readers.pcap.tshark as engine
from tlsdetect import schema
from tlsdetect.fingerprint import client_fingerprints
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.tshark import TsharkError, read_pcap_tshark
from tlsdetect.readers.pcap.tshark_frames import Frame, lua_script
from tlsdetect.wire.tls import parse_client_hello

from .conftest import (
    INTERCEPTION,
    REFERENCE,
    ja3_streams,
    ja4_streams,
    needs_interception,
    needs_reference,
    needs_tshark,
    reference_files,
)

pytestmark = pytest.mark.slow

Row = dict[str, Any]
Tuple4 = tuple[str, int, str, int]

#: Streams of the reference corpus this engine deliberately does not fingerprint, with the reason.
EXCEPTIONS: dict[tuple[str, str, int], str] = {
    ("arkime_openvpn_synthetic.pcap", "udp", 0): "TLS inside the OpenVPN control channel over UDP; tshark "
    "4.0 does not dissect it (see `disagreements` in expected_ja4.json), only Arkime does",
    ("arkime_openvpn_synthetic.pcap", "udp", 1): "as udp 0, over IPv6",
    ("arkime_openvpn_synthetic.pcap", "tcp", 0): "TLS inside the OpenVPN control channel over TCP (as udp 0)",
    ("arkime_openvpn_synthetic.pcap", "tcp", 1): "as tcp 0, over IPv6",
}

#: Connections this engine finds that the JA3 oracle run (tshark defaults) does not list.
EXTRA: dict[str, str] = {
    "socks4-https.pcap": "the ClientHello was not captured and the ServerHello arrives out of order after "
    "the SOCKS4 reply; the engine turns on tcp.reassemble_out_of_order (off in tshark's defaults, "
    "which made the oracle) and so finds it, like the native engine. Only JA3S is known.",
}

JA4_FIELDS = ("ja4", "ja4_r", "ja4_o", "ja4_ro")
#: The server side beyond the hellos (schema.py): read by the native engine's rules from tshark's records.
FLIGHT_FIELDS = (
    "sh_session_id_echoed",
    "resumed",
    "server_flight",
    "server_flight_bytes",
    "client_flight",
    "client_flight_bytes",
)
#: What both engines must agree on for every TCP connection.
CROSS_FIELDS = (
    "ja3",
    "ja3_full",
    "ja3s",
    "ja3s_full",
    "ja4",
    "ja4_r",
    "ja4_o",
    "ja4_ro",
    "ja3_retry",
    "ja4_retry",
    "hello_retry",
    "sni",
    "alpn",
    "tls_version",
    "server_cert_sha256",
    "server_issuer",
    "server_issuer_key",
    "server_chain",
    "peer_cert_sha256",
    "peer_issuer_key",
    "fingerprint_origin",
    "incomplete",
    "ch_records",
    *FLIGHT_FIELDS,
)
UDP_TRANSPORTS = {"quic", "dtls"}


def _by_tuple(df: pd.DataFrame) -> dict[Tuple4, Row]:
    rows: list[Row] = df.astype(object).where(df.notna(), None).to_dict("records")  # type: ignore[assignment]
    return {(r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]): r for r in rows}


@cache
def _corpus() -> tuple[pd.DataFrame, dict[str, dict[Tuple4, Row]], ReadStats, float]:
    """One engine run over the whole corpus (tshark start-up dominates, so files run in parallel)."""
    start = time.perf_counter()
    df, stats = read_pcap_tshark([REFERENCE / name for name in reference_files()])
    elapsed = time.perf_counter() - start
    names = df["conn_id"].str.rsplit("#", n=1).str[0]
    per_file = {name: _by_tuple(df[names == name]) for name in reference_files()}
    return df, per_file, stats, elapsed


def _rows(name: str) -> dict[Tuple4, Row]:
    return _corpus()[1][name]


@cache
def _native(name: str) -> dict[Tuple4, Row]:
    return _by_tuple(read_pcap(REFERENCE / name)[0])


def _marks(name: str, transport: str, stream: int) -> list[Any]:
    reason = EXCEPTIONS.get((name, transport, stream))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


def _cases(streams: Callable[[str], list[Row]]) -> list[Any]:
    return [
        pytest.param(
            name,
            s,
            id=f"{name}:{s['transport']}{s['stream']}",
            marks=_marks(name, s["transport"], s["stream"]),
        )
        for name in reference_files()
        for s in streams(name)
    ]


# ---------------------------------------------------------------------------------------------
# Golden values over the reference corpus


@needs_reference
@needs_tshark
@pytest.mark.parametrize(("name", "stream"), _cases(ja4_streams))
def test_ja4_matches_reference(name: str, stream: Row) -> None:
    """Every stream with an expected JA4 (QUIC, DTLS and TCP) matches through this engine."""
    row = _rows(name).get(stream["tuple"])
    assert row is not None, f"no connection for {stream['tuple']}"
    if stream["transport"] == "udp":
        assert row["transport"] in UDP_TRANSPORTS
        assert row["ja4"][0] == {"quic": "q", "dtls": "d"}[row["transport"]]
    for field in JA4_FIELDS:
        if field in stream:
            assert row[field] == stream[field], field
    if stream.get("additional_client_hellos_ja4"):
        assert row["ja4_retry"] == stream["additional_client_hellos_ja4"][0]
    if stream.get("sni"):
        assert row["sni"] == stream["sni"]


@needs_reference
@needs_tshark
@pytest.mark.parametrize(("name", "stream"), _cases(ja3_streams))
def test_ja3_matches_tshark_oracle(name: str, stream: Row) -> None:
    """JA3/JA3S computed from the raw bytes equal tshark's own fields, hello by hello."""
    row = _rows(name).get(stream["tuple"])
    assert row is not None, f"no connection for {stream['tuple']}"
    assert row["transport"] == ("tcp" if stream["proto"] == "tls" else stream["proto"])
    if stream["ja3"]:
        assert row["ja3"] == stream["ja3"][0]
        assert row["ja3_full"] == stream["ja3_full"][0]
        # A second ClientHello (after a HelloRetryRequest, or a DTLS HelloVerifyRequest).
        assert row["ja3_retry"] == (stream["ja3"][1] if len(stream["ja3"]) > 1 else None)
    else:
        assert row["ja3"] is None
    if stream["ja3s"]:
        assert row["ja3s"] == stream["ja3s"][0]
        assert row["ja3s_full"] == stream["ja3s_full"][0]
    else:
        assert row["ja3s"] is None
    assert row["sni"] == stream["sni"]


@needs_reference
@needs_tshark
def test_every_stream_is_found_and_none_invented() -> None:
    """The engine's connections are exactly the reference's, per file, transport included."""
    counts = {"tcp": 0, "quic": 0, "dtls": 0}
    for name in reference_files():
        expected = {s["tuple"] for s in ja3_streams(name)}
        expected |= {s["tuple"] for s in ja4_streams(name) if (name, s["transport"], s["stream"]) not in EXCEPTIONS}
        got = _rows(name)
        assert expected <= set(got), f"{name}: missing {sorted(expected - set(got))}"
        extra = set(got) - expected
        if name in EXTRA:
            assert len(extra) == 1, EXTRA[name]
            row = got[extra.pop()]
            assert row["ja3"] is None
            assert row["ja3s"] is not None
        assert not extra, f"{name}: connections the reference does not know: {sorted(extra)}"
        for key in expected:
            counts[got[key]["transport"]] += 1
    assert counts == {"tcp": 200, "quic": 54, "dtls": 5}


@needs_reference
@needs_tshark
def test_corpus_stats_and_table_shape() -> None:
    df, per_file, stats, elapsed = _corpus()
    schema.validate(df)
    assert list(df.columns[: len(schema.COLUMNS)]) == list(schema.COLUMNS)
    assert (df["source"] == "pcap").all()
    assert df["conn_id"].str.fullmatch(r".+#(tcp|quic|dtls)\d+").all()
    assert df["conn_id"].is_unique
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    with_hello = df[df["ch_version"].notna()]
    assert with_hello["ch_alpn"].map(lambda a: all(isinstance(x, str) and x == x.lower() for x in a)).all()
    assert stats.files == len(reference_files())
    assert stats.counts["parse_errors"] == 0
    assert stats.counts["skipped_messages"] == 0
    assert stats.warnings == []
    assert stats.counts["connections"] == sum(len(rows) for rows in per_file.values())
    print(f"tshark engine: {stats.files} files, {stats.counts['connections']} connections in {elapsed:.1f} s")


# ---------------------------------------------------------------------------------------------
# Cross-check with the native engine


@needs_reference
@needs_tshark
@pytest.mark.parametrize("name", reference_files())
def test_tcp_streams_agree_with_native_engine(name: str) -> None:
    """Same TCP connections and the same values: the engines differ only in dissection and reassembly."""
    ours = {k: r for k, r in _rows(name).items() if r["transport"] == "tcp"}
    native = {k: r for k, r in _native(name).items() if r["transport"] == "tcp"}
    # A hello that began and was cut (no hello to dissect, so tshark shows no TLS): the native row says
    # ``hello_cut`` rather than vanishing (issue 18's anomaly ledger).
    cut = {k for k, r in native.items() if r["incomplete"] == "hello_cut" and k not in ours}
    assert all(native[k]["ja3"] is None and native[k]["ja3s"] is None for k in cut)
    native = {k: r for k, r in native.items() if k not in cut}
    assert set(ours) == set(native)
    differences = [
        f"{key} {field}: tshark={ours[key][field]!r} native={native[key][field]!r}"
        for key in sorted(ours)
        for field in CROSS_FIELDS
        if ours[key][field] != native[key][field]
    ]
    assert not differences, "\n".join(differences)


@needs_reference
@needs_tshark
@pytest.mark.parametrize("name", [n for n in reference_files() if ja4_streams(n, "udp")])
def test_udp_streams_agree_with_native_engine(name: str) -> None:
    """QUIC (decrypted by the native engine itself) and DTLS: the same connections and values."""
    ours = {k: r for k, r in _rows(name).items() if r["transport"] in UDP_TRANSPORTS}
    native = {k: r for k, r in _native(name).items() if r["transport"] in UDP_TRANSPORTS}
    assert set(ours) == set(native)
    fields = (*CROSS_FIELDS, "transport", "ts", "quic_transport_params")
    differences = [
        f"{key} {field}: tshark={ours[key][field]!r} native={native[key][field]!r}"
        for key in sorted(ours)
        for field in fields
        if ours[key][field] != native[key][field]
    ]
    assert not differences, "\n".join(differences)


@needs_reference
@needs_interception
@needs_tshark
def test_flights_agree_with_native_engine_on_every_capture() -> None:
    """The flight columns, over the reference and interception captures: both engines fill the
    same cells with the same values, and the corpus has enough of them to mean something."""
    extra = sorted(INTERCEPTION.glob("*.pcap*"))
    theirs = read_pcap_tshark(extra)[0]
    names = theirs["conn_id"].str.rsplit("#", n=1).str[0]
    pairs = [(n, _rows(n), _native(n)) for n in reference_files()]
    pairs += [(p.name, _by_tuple(theirs[names == p.name]), _by_tuple(read_pcap(p)[0])) for p in extra]
    ours = {(n, k): r for n, rows, _ in pairs for k, r in rows.items() if r["transport"] == "tcp"}
    native = {(n, k): r for n, _, rows in pairs for k, r in rows.items()}
    filled = dict.fromkeys(FLIGHT_FIELDS, 0)
    differences = []
    for key in sorted(set(ours) & set(native)):
        for f in FLIGHT_FIELDS:
            if ours[key][f] != native[key][f]:
                differences.append(f"{key} {f}: tshark={ours[key][f]!r} native={native[key][f]!r}")
            filled[f] += ours[key][f] is not None
    assert not differences, "\n".join(differences)
    tls13 = [r for r in ours.values() if r["tls_version"] == "TLSv1.3" and r["server_flight"] is not None]
    assert filled["server_flight"] >= 90, filled
    assert filled["client_flight"] >= 70, filled
    assert len(tls13) >= 5  # encrypted-record flights, not only TLS <= 1.2 handshake messages
    assert all(r["server_flight_bytes"] == sum(r["server_flight"]) for r in tls13)


@needs_reference
@needs_tshark
def test_decrypted_tls13_certificates_are_not_used() -> None:
    """tshark decrypts this QUIC handshake with the embedded secrets, but a TLS 1.3 Certificate
    is neither in clear nor in the TLS <= 1.2 format, so the server certificate stays unknown."""
    rows = _rows("chrome-cloudflare-quic-with-secrets.pcapng")
    quic = [r for r in rows.values() if r["transport"] == "quic"]
    assert quic
    assert all(r["server_cert_sha256"] is None and r["tls_version"] == "TLSv1.3" for r in quic)


@needs_reference
@needs_tshark
def test_dtls_hello_verify_request_gives_a_second_hello() -> None:
    row = next(iter(_rows("arkime_wireshark-dtls12.pcap").values()))
    assert row["transport"] == "dtls"
    assert row["conn_id"] == "arkime_wireshark-dtls12.pcap#dtls0"
    assert row["ja4"].startswith("dd2")
    assert row["ja4_retry"] == row["ja4"]  # the cookie is the only difference
    assert row["hello_retry"] is False  # a HelloVerifyRequest is not a HelloRetryRequest
    assert row["tls_version"] == "DTLSv1.2"


@needs_reference
@needs_tshark
def test_negative_control_has_no_tls() -> None:
    df, stats = read_pcap_tshark(REFERENCE / "CVE-2018-6794.pcap")
    assert len(df) == 0
    schema.validate(df)
    assert stats.files == 1


# ---------------------------------------------------------------------------------------------
# Hand-made captures: what the corpus does not cover


def _pcap(packets: list[bytes]) -> bytes:
    """A pcap with LINKTYPE_RAW (bare IP packets), one second apart."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i, pkt in enumerate(packets):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(pkt), len(pkt)) + pkt)
    return b"".join(out)


def _ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        return struct.pack("!IHBB", 0x60000000, len(payload), proto, 64) + addrs + payload
    addrs = socket.inet_aton(src) + socket.inet_aton(dst)
    return struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0) + addrs + payload


def _tcp(addrs: tuple[str, str], ports: tuple[int, int], seq: int, flags: int, data: bytes = b"") -> bytes:
    return _ip(*addrs, 6, struct.pack("!HHIIBBHHH", *ports, seq, 0, 0x50, flags, 65535, 0, 0) + data)


def _udp(src: str, dst: str, ports: tuple[int, int], data: bytes) -> bytes:
    return _ip(src, dst, 17, struct.pack("!HHHH", *ports, 8 + len(data), 0) + data)


def _v8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def _v16(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def _ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!H", ext_type) + _v16(data)


def _client_hello(sni: str, *, dtls: bool = False) -> bytes:
    exts = b"".join(
        (
            _ext(0x0000, _v16(b"\x00" + _v16(sni.encode()))),
            _ext(0x000A, _v16(struct.pack("!HHH", 0x3A3A, 0x001D, 0x0017))),  # GREASE kept on the wire
            _ext(0x000B, _v8(b"\x00")),
            _ext(0x000D, _v16(struct.pack("!HHH", 0x0403, 0x0804, 0x0401))),
            _ext(0x0010, _v16(_v8(b"\xba\xad") + _v8(b"h2"))),  # non-ASCII first ALPN
        )
    )
    version = 0xFEFD if dtls else 0x0303
    cookie = _v8(b"") if dtls else b""
    ciphers = _v16(struct.pack("!HHHH", 0x0A0A, 0xC02B, 0xC02F, 0x009C))
    return struct.pack("!H", version) + bytes(range(32)) + _v8(b"") + cookie + ciphers + _v8(b"\x00") + _v16(exts)


def _server_hello(*, dtls: bool = False) -> bytes:
    version = 0xFEFD if dtls else 0x0303
    return struct.pack("!H", version) + bytes(32) + _v8(b"") + struct.pack("!HB", 0xC02F, 0) + _v16(b"")


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _record(payload: bytes, version: int = 0x0301) -> bytes:
    return struct.pack("!BHH", 22, version, len(payload)) + payload


def _dtls_record(msg_type: int, body: bytes, offset: int, length: int, record_seq: int) -> bytes:
    header = bytes([msg_type]) + len(body).to_bytes(3, "big") + b"\x00\x00"
    fragment = header + offset.to_bytes(3, "big") + length.to_bytes(3, "big") + body[offset : offset + length]
    return struct.pack("!BHH", 22, 0xFEFD, 0) + record_seq.to_bytes(6, "big") + _v16(fragment)


def _write(tmp_path: Path, name: str, packets: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(_pcap(packets))
    return path


@needs_tshark
def test_tcp_hello_out_of_order_and_retransmitted(tmp_path: Path) -> None:
    """A ClientHello in three segments, arriving 2-1-1-3: one hello, no retry, both engines agree."""
    body = _client_hello("ooo.example")
    record = _record(_handshake(1, body))
    c, s, ports, back = "10.0.0.1", "10.0.0.2", (40000, 443), (443, 40000)
    parts = [(1, record[:20]), (21, record[20:60]), (61, record[60:])]
    packets = [
        _tcp((c, s), ports, 0, 0x02),
        _tcp((s, c), back, 0, 0x12),
        _tcp((c, s), ports, 1, 0x10),
        *(_tcp((c, s), ports, parts[i][0], 0x18, parts[i][1]) for i in (1, 0, 0, 2)),
        _tcp((s, c), back, 1, 0x18, _record(_handshake(2, _server_hello()), 0x0303)),
    ]
    path = _write(tmp_path, "ooo.pcap", packets)
    df, stats = read_pcap_tshark(path)
    schema.validate(df)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["conn_id"] == "ooo.pcap#tcp0"
    assert (row["client_ip"], row["client_port"], row["server_port"]) == (c, 40000, 443)
    assert row["ja4"] == client_fingerprints("t", parse_client_hello(body)).ja4
    assert row["ja4"].startswith("t12d0305bd")  # GREASE dropped; 0xBAAD -> 'bd' by the spec's hex rule
    assert row["ch_alpn"] == ("baad", "6832")
    assert row["ch_groups"] == (0x3A3A, 0x001D, 0x0017)
    assert pd.isna(row["ja3_retry"])
    assert row["tls_version"] == "TLSv1.2"
    assert row["ts"] == pd.Timestamp(1_700_000_006, unit="s", tz="UTC")  # frame completing the hello
    native = read_pcap(path)[0].iloc[0]
    for field in ("ja3", "ja3s", "ja4", "ja4_ro", "sni"):
        assert row[field] == native[field], field
    assert stats.counts["handshake_messages"] == 2


@needs_tshark
def test_dtls_fragments_out_of_order_and_retransmitted(tmp_path: Path) -> None:
    """A DTLS ClientHello in two fragments (second first, then again): joined by message_seq."""
    body = _client_hello("dtls.example", dtls=True)
    half = len(body) // 2
    first = _dtls_record(1, body, 0, half, 0)
    second = _dtls_record(1, body, half, len(body) - half, 1)
    c, s, ports, back = "10.0.0.1", "10.0.0.2", (40001, 4433), (4433, 40001)
    server = _server_hello(dtls=True)
    packets = [
        _udp(c, s, ports, second),
        _udp(c, s, ports, first),
        _udp(c, s, ports, second),
        _udp(s, c, back, _dtls_record(2, server, 0, len(server), 0)),
    ]
    df, _ = read_pcap_tshark(_write(tmp_path, "dtls.pcap", packets))
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["transport"], row["conn_id"], row["sni"]) == ("dtls", "dtls.pcap#dtls0", "dtls.example")
    assert row["ja4"] == client_fingerprints("d", parse_client_hello(body, dtls=True)).ja4
    assert row["ja4"].startswith("dd2d0305bd")
    assert pd.isna(row["ja4_retry"])
    assert row["tls_version"] == "DTLSv1.2"


def _tls13_server_hello(session_id: bytes) -> bytes:
    exts = _ext(0x002B, struct.pack("!H", 0x0304)) + _ext(0x0033, struct.pack("!HH", 0x001D, 32) + bytes(32))
    return struct.pack("!H", 0x0303) + bytes(32) + _v8(session_id) + struct.pack("!HB", 0x1301, 0) + _v16(exts)


def _opaque(length: int) -> bytes:
    """A TLS 1.3 encrypted record (content type 23) of ``length`` body bytes."""
    return struct.pack("!BHH", 23, 0x0303, length) + bytes(range(256)) * (length // 256) + bytes(length % 256)


def _tls13_connection(server_records: list[int], after: list[int], *, mss: int = 1400) -> list[bytes]:
    """Client hello; server hello + CCS + encrypted ``server_records`` (lengths) in ``mss`` segments;
    the client's CCS + Finished (53) + a request (300); then the server's ``after`` records."""
    c, s, ports, back = "10.0.0.1", "10.0.0.2", (40003, 443), (443, 40003)
    sid = bytes(range(32))
    hello = _record(_handshake(1, _client_hello("tls13.example")[:34] + _v8(sid) + _client_hello("x")[35:]))
    ccs = struct.pack("!BHHB", 20, 0x0303, 1, 1)
    server = _record(_handshake(2, _tls13_server_hello(sid)), 0x0303) + ccs + b"".join(map(_opaque, server_records))
    packets = [_tcp((c, s), ports, 0, 0x02), _tcp((s, c), back, 0, 0x12), _tcp((c, s), ports, 1, 0x18, hello)]
    packets += [_tcp((s, c), back, 1 + i, 0x18, server[i : i + mss]) for i in range(0, len(server), mss)]
    packets.append(_tcp((c, s), ports, 1 + len(hello), 0x18, ccs + _opaque(53) + _opaque(300)))
    later = b"".join(map(_opaque, after))
    packets += [_tcp((s, c), back, 1 + len(server) + i, 0x18, later[i : i + mss]) for i in range(0, len(later), mss)]
    return packets


@needs_tshark
def test_tls13_flights_from_encrypted_records(tmp_path: Path) -> None:
    """TLS 1.3: the server's encrypted records before the client's, cut over TCP segments, and the
    client's before the server's next one; the session ID echo from the raw hellos."""
    path = _write(tmp_path, "tls13.pcap", _tls13_connection([6, 3000, 280, 69], [200, 200]))
    row = _by_tuple(read_pcap_tshark(path)[0])[("10.0.0.1", 40003, "10.0.0.2", 443)]
    assert row["tls_version"] == "TLSv1.3"
    assert (row["server_flight"], row["server_flight_bytes"]) == ((6, 3000, 280, 69), 3355)
    assert (row["client_flight"], row["client_flight_bytes"]) == ((53, 300), 353)
    assert (row["sh_session_id_echoed"], row["resumed"]) == (True, False)
    native = _by_tuple(read_pcap(path)[0])[("10.0.0.1", 40003, "10.0.0.2", 443)]
    assert {f: row[f] for f in FLIGHT_FIELDS} == {f: native[f] for f in FLIGHT_FIELDS}


@needs_tshark
def test_tls13_flight_past_the_horizon_is_missing_not_guessed(tmp_path: Path) -> None:
    """Records completing past relative sequence 65536 are not printed: a flight whose next record
    may be one of those is missing (the native engine, reading 256 KiB, has it); one whose next
    record was printed is kept, however much data follows."""
    big = [16000, 16000, 16000, 10000]  # ends at ~58 KiB; the next record ends past 64 KiB
    path = _write(tmp_path, "far.pcap", _tls13_connection(big, [16000] * 3))
    row = _by_tuple(read_pcap_tshark(path)[0])[("10.0.0.1", 40003, "10.0.0.2", 443)]
    native = _by_tuple(read_pcap(path)[0])[("10.0.0.1", 40003, "10.0.0.2", 443)]
    assert native["server_flight"] == tuple(big)
    assert (row["server_flight"], row["client_flight"]) == (None, None)
    assert row["sh_session_id_echoed"] is True  # the hellos are read wherever they are
    for flight in ([4000, 200], [16000, 16000, 16000, 200]):  # the next record ends before 64 KiB
        path = _write(tmp_path, "near.pcap", _tls13_connection(flight, [16000] * 6))
        row = _by_tuple(read_pcap_tshark(path)[0])[("10.0.0.1", 40003, "10.0.0.2", 443)]
        assert (row["server_flight"], row["client_flight"]) == (tuple(flight), (53, 300))


def test_records_keep_stream_order_and_stop_at_one_not_understood() -> None:
    """Listener records -> the stream laid out: an encrypted body is zeros of its length; a record
    whose bytes do not match its header ends the direction (nothing after it can be placed)."""
    header = bytes([23, 3, 3, 0, 4])
    ccs = bytes([20, 3, 3, 0, 1, 1])
    records = (ccs, header, b"")
    side = engine._Side()
    side.records, side.arrivals, side.reach = [*records], [7, 7, 8], 100
    engine._lay_out(side)
    assert side.view.data == ccs + header + bytes(4)
    assert (side.view.starts, side.view.arrivals, side.view.capped) == ([0, 6], [7, 7], True)


@needs_tshark
def test_tunnelled_traffic_uses_the_innermost_addresses(tmp_path: Path) -> None:
    """IPv6-in-IPv4 and IPv4-in-IPv4: the connection is the inner one, as FoxIO keys it."""
    record = _record(_handshake(1, _client_hello("tunnel.example")))
    inner6 = _tcp(("2001:db8::1", "2001:db8::2"), (40000, 443), 1, 0x18, record)
    inner4 = _tcp(("10.1.1.1", "10.1.1.2"), (40002, 8443), 1, 0x18, record)
    packets = [_ip("192.0.2.1", "192.0.2.2", 41, inner6), _ip("192.0.2.1", "192.0.2.2", 4, inner4)]
    df, _ = read_pcap_tshark(_write(tmp_path, "tunnel.pcap", packets))
    got = set(_by_tuple(df))
    assert got == {("2001:db8::1", 40000, "2001:db8::2", 443), ("10.1.1.1", 40002, "10.1.1.2", 8443)}


# ---------------------------------------------------------------------------------------------
# Errors: a clear TsharkError, never a traceback from inside the engine


def test_missing_tshark_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TsharkError, match=r"^tshark not found; install Debian package tshark$"):
        read_pcap_tshark(tmp_path / "any.pcap", tshark=str(tmp_path / "no-such-tshark"))


@needs_tshark
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "doesn't exist"),
        (b"\x00\x01garbage" * 400, "isn't a capture file"),
        ("dir", "is a directory"),
    ],
    ids=["missing", "not-a-capture", "directory"],
)
def test_unreadable_file_is_tsharks_one_line_message(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "input.pcap"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(TsharkError) as info:
        read_pcap_tshark(path)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith("tshark:")


@needs_reference
@needs_tshark
def test_truncated_file_keeps_what_came_before(tmp_path: Path) -> None:
    """Like the native engine: rows before the damage, and a warning instead of an error."""
    path = tmp_path / "cut.pcapng"
    path.write_bytes((REFERENCE / "tls3.pcapng").read_bytes()[:100_000])
    df, stats = read_pcap_tshark(path)
    assert any("cut short" in w for w in stats.warnings)
    tcp = {k: r["ja3"] for k, r in _by_tuple(df).items() if r["transport"] == "tcp"}
    native = {k: r["ja3"] for k, r in _by_tuple(read_pcap(path)[0]).items() if r["transport"] == "tcp"}
    assert tcp
    assert tcp == native


@needs_tshark
def test_no_files_is_an_empty_table() -> None:
    df, stats = read_pcap_tshark([])
    schema.validate(df)
    assert len(df) == 0
    assert stats == ReadStats()


def test_stderr_chatter_is_not_the_message() -> None:
    raw = b'Running as user "root" and group "root". This could be dangerous.\ntshark: boom.\n'
    assert engine._stderr_message(raw) == "tshark: boom."


# ---------------------------------------------------------------------------------------------
# Whatever tshark hands over, the assembler never raises


_frames = st.lists(
    st.tuples(
        st.sampled_from(["tls", "dtls"]),
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda t, b: bytes([t]) + len(b).to_bytes(3, "big") + b,
                st.sampled_from([1, 2, 11]),
                st.binary(max_size=80),
            ),
            st.builds(
                lambda t, seq, off, b: (
                    bytes([t])
                    + (off + len(b)).to_bytes(3, "big")
                    + seq.to_bytes(2, "big")
                    + off.to_bytes(3, "big")
                    + len(b).to_bytes(3, "big")
                    + b
                ),
                st.sampled_from([1, 2, 11]),
                st.integers(0, 2),
                st.integers(0, 40),
                st.binary(max_size=80),
            ),
        ),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames)
def test_assembler_never_raises_on_arbitrary_messages(
    messages: list[tuple[str, bytes, bool, bool, bool]],
) -> None:
    stats = ReadStats()
    assembler = engine._Assembler("fuzz.pcap", stats)
    for i, (proto, raw, reply, udp, quic) in enumerate(messages):
        src, dst = ("10.0.0.2", "10.0.0.1") if reply else ("10.0.0.1", "10.0.0.2")
        sport, dport = (443, 5000) if reply else (5000, 443)
        frame = Frame(i + 1, i, src, dst, sport, dport, "udp" if udp else "tcp", 0, quic, ((proto, raw),),
                      records=(raw[:5], raw, b"") if reply else (raw,), nxtseq=len(raw))
        assembler.add(frame)
    for row in assembler.rows():
        assert row["transport"] in ("tcp", "quic", "dtls")


def test_tshark_is_not_asked_for_its_own_fingerprints() -> None:
    """The ja3 fields are the oracle: the listener reads raw bytes, never tshark's hashes, and
    tshark prints nothing of its own (no ``-x``: raw bytes of whole frames were most of the time)."""
    cmd = engine.tshark_command("tshark", "x.pcap", "listener.lua")
    assert "-q" in cmd
    assert "-x" not in cmd
    assert "lua_script:listener.lua" in cmd
    assert "ja3" not in lua_script(engine.DISPLAY_FILTER)


@needs_tshark
def test_a_failing_listener_is_an_error_not_an_empty_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tshark exits 0 after a Lua error: without the listener's end line the file is not read."""
    broken = tmp_path / "broken.lua"
    broken.write_text("error('deliberately broken')\n")
    monkeypatch.setattr(engine, "_script", lambda: str(broken))
    path = _write(tmp_path, "one.pcap", [_tcp(("10.0.0.1", "10.0.0.2"), (40000, 443), 1, 0x18,
                                              _record(_handshake(1, _client_hello("x.example"))))])
    with pytest.raises(TsharkError, match=r"Lua listener did not run through one\.pcap"):
        read_pcap_tshark(path)
