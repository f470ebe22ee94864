"""The native engine's ``--keylog`` hook on crafted captures: keyed hellos leave the fast lane, their chain is
decrypted however TCP cut the flight, and every TLS 1.3 row of a keyed read says how it went."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.craft import (
    client_hello_body,
    handshake_message,
    server_hello_body_tls13,
    stream_segments,
    tcp_conversation,
    tls_records,
)
from tests.test_tls13_flight import CHAIN, handshake
from tests.test_tls13_keys import seal
from tlsdetect import schema
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.keylog_rows import keyed_starts, mark_unkeyed, random_table, tshark_status
from tlsdetect.wire.keylog import parse_keylog
from tlsdetect.wire.tls import parse_der_certificate
from tlsdetect.wire.tls13_keys import record_keys

RANDOM = bytes(range(32))  # craft.client_hello_body's
S_SECRET, C_SECRET = bytes(range(100, 132)), bytes(range(200, 232))
KEYS = f"""SERVER_HANDSHAKE_TRAFFIC_SECRET {RANDOM.hex()} {S_SECRET.hex()}
CLIENT_HANDSHAKE_TRAFFIC_SECRET {RANDOM.hex()} {C_SECRET.hex()}
""".encode()


def _capture(path: Path, mss: int = 1400, server_secret: bytes = S_SECRET) -> Path:
    """One TLS 1.3 connection (AES-128-GCM): hellos in clear, the server's flight and the client's Finished
    sealed under the handshake secrets, then an application record each way."""
    ch = tls_records(handshake_message(1, client_hello_body("keyed.test")), 16384)[0]
    sh = tls_records(handshake_message(2, server_hello_body_tls13()), 16384)[0]
    s_keys, c_keys = record_keys(server_secret, 0x1301), record_keys(C_SECRET, 0x1301)
    hs = handshake()
    server = sh + bytes([20, 3, 3, 0, 1, 1]) + seal(s_keys, 0, 22, hs[:700]) + seal(s_keys, 1, 22, hs[700:])
    client_fin = seal(c_keys, 0, 22, handshake_message(20, bytes(32)))
    segs = [(True, 0, ch), *[(f, o, d) for f, o, d in stream_segments(server, mss, from_client=False)],
            (True, len(ch), bytes([20, 3, 3, 0, 1, 1]) + client_fin),
            (False, len(server), bytes([23, 3, 3, 0, 40]) + bytes(40)),
            (True, len(ch) + 6 + len(client_fin), bytes([23, 3, 3, 0, 40]) + bytes(40))]
    path.write_bytes(tcp_conversation(("10.0.0.1", 40000), ("10.0.0.2", 443), segs))
    return path


def test_keyed_hellos_are_found_in_a_window() -> None:
    hello = tls_records(handshake_message(1, client_hello_body()), 16384)[0]
    other = hello[:11] + bytes(32) + hello[43:]
    server = tls_records(handshake_message(2, server_hello_body_tls13()), 16384)[0]
    buf = np.frombuffer(hello + other + server + hello[:30], dtype=np.uint8)
    offsets = np.array([0, len(hello), 2 * len(hello), 2 * len(hello) + len(server)], dtype=np.int64)
    plen = np.array([len(hello), len(other), len(server), 30], dtype=np.int64)
    table = random_table(parse_keylog(KEYS))
    assert keyed_starts(buf, offsets, plen, table).tolist() == [True, False, False, False]
    assert not keyed_starts(buf, offsets, plen, random_table(parse_keylog(b""))).any()


def test_a_keyed_connection_gets_its_chain(tmp_path: Path) -> None:
    keylog = parse_keylog(KEYS)
    cap = _capture(tmp_path / "one.pcap")
    df, stats = read_pcap(cap, keylog=keylog)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["keylog"] == "decrypted"
    leaf = parse_der_certificate(CHAIN[0])
    assert schema.as_text(df["server_cert_sha256"]).iloc[0] == leaf.sha256
    assert schema.as_text(df["server_subject"]).iloc[0] == "CN=leaf.test"
    assert pd.isna(df["incomplete"].iloc[0])
    assert stats.counts["keylog_decrypted"] == 1
    plain, _ = read_pcap(cap)
    for col in ("ja4", "ja3s", "server_flight", "client_flight", "sni"):  # the rest of the row is unchanged
        assert str(plain[col].iloc[0]) == str(df[col].iloc[0]), col
    assert pd.isna(plain["keylog"].iloc[0]) and pd.isna(plain["server_chain"].iloc[0])  # noqa: PT018


def test_no_key_and_a_wrong_key(tmp_path: Path) -> None:
    none, stats = read_pcap(_capture(tmp_path / "a.pcap"), keylog=parse_keylog(b""))
    assert none["keylog"].tolist() == ["no_key"] and stats.skipped["keylog_no_key"] == 1  # noqa: PT018
    wrong, stats = read_pcap(_capture(tmp_path / "b.pcap", server_secret=bytes(32)), keylog=parse_keylog(KEYS))
    assert wrong["keylog"].tolist() == ["decrypt_failed"] and stats.skipped["keylog_decrypt_failed"] == 1  # noqa: PT018
    assert wrong["server_chain"].isna().all()
    assert pd.isna(wrong["incomplete"].iloc[0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mss=st.integers(20, 1500))
def test_any_segmentation_of_the_flight(tmp_path: Path, mss: int) -> None:
    df, _ = read_pcap(_capture(tmp_path / f"m{mss}.pcap", mss=mss), keylog=parse_keylog(KEYS))
    assert df["keylog"].tolist() == ["decrypted"]


def test_rows_no_status_reached_are_no_key() -> None:
    df = schema.conform(pd.DataFrame({"sh_selected_version": pd.array([0x0304, None, 0x0304], dtype="Int32"),
                                      "keylog": pd.array([None, None, "decrypted"], dtype="string")}))
    stats = ReadStats()
    out = mark_unkeyed(df, stats)
    assert out["keylog"].tolist()[0] == "no_key" and pd.isna(out["keylog"].iloc[1])  # noqa: PT018
    assert out["keylog"].iloc[2] == "decrypted" and stats.skipped["keylog_no_key"] == 1  # noqa: PT018


def test_tshark_status() -> None:
    keylog = parse_keylog(KEYS)
    assert tshark_status(True, RANDOM, keylog, False) == "decrypted"
    assert tshark_status(False, None, keylog, False) == "no_key"
    assert tshark_status(False, bytes(32), keylog, False) == "no_key"
    assert tshark_status(False, RANDOM, keylog, True) == "no_certificate"
    assert tshark_status(False, RANDOM, keylog, False) == "decrypt_failed"
