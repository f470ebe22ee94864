"""The global bound on pending handshakes: which connections go, and what the engine does at it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsdetect.readers.pcap import engine, pending
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.readers.pcap.pending import DIRECTION_COST, EVICTED, EVICTED_WHOLE, REFILL, evict, room

from .craft import (
    ACK,
    PSH,
    client_hello_body,
    handshake_message,
    ipv4_tcp_frame,
    pcap_file,
    server_hello_body_tls13,
    tls_records,
)


def _a(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_under_both_caps_nothing_goes() -> None:
    assert len(evict(_a(1, 2, 3), _a(2, 2, 2), _a(10, 10, 10), max_directions=6, max_bytes=30)) == 0


def test_the_oldest_idle_go_first_until_under_the_refill_share() -> None:
    touched = _a(5, 1, 9, 1, 3)  # opened in this order; two tie at window 1
    got = evict(touched, _a(2, 2, 2, 2, 2), _a(0, 0, 0, 0, 0), max_directions=8, max_bytes=100)
    # 10 directions, cap 8, refill to 7: two connections go (6 left), oldest touch first, ties by open order.
    assert got.tolist() == [1, 3]
    assert 10 - 2 * len(got) <= int(8 * REFILL)


def test_the_byte_cap_alone_evicts_and_big_ones_count_for_more() -> None:
    got = evict(_a(1, 2, 3, 4), _a(1, 1, 1, 1), _a(900, 10, 10, 10), max_directions=100, max_bytes=500)
    assert got.tolist() == [0]


def test_when_nothing_short_of_all_fits_all_go() -> None:
    got = evict(_a(1, 2), _a(1, 1), _a(10, 10), max_directions=0, max_bytes=100)
    assert got.tolist() == [0, 1]


def test_room_is_the_tighter_cap_and_never_negative() -> None:
    assert room(0, 0, max_directions=10, max_bytes=100 * DIRECTION_COST) == 10
    assert room(4, 0, max_directions=10, max_bytes=100 * DIRECTION_COST) == 6
    assert room(0, 97 * DIRECTION_COST, max_directions=10, max_bytes=100 * DIRECTION_COST) == 3
    assert room(12, 0, max_directions=10, max_bytes=100 * DIRECTION_COST) == 0
    assert room(0, 200 * DIRECTION_COST, max_directions=10, max_bytes=100 * DIRECTION_COST) == 0


# -- the engine at the bound ------------------------------------------------------------------------

SERVER = "10.9.0.1"
HELLO = tls_records(handshake_message(1, client_hello_body()), 1 << 14)[0]
SH = tls_records(handshake_message(2, server_hello_body_tls13()), 1 << 14)[0]
OPEN_FLOWS, COMPLETE, ONE_SIDED, ROUNDS = 60, 12, 5, 30


def _capture(path: Path) -> None:
    """``OPEN_FLOWS`` hellos cut by a gap and kept busy by retransmissions inside the record, and
    ``COMPLETE`` whole TLS 1.3 handshakes among them, each hello split across a round of that traffic;
    first, ``ONE_SIDED`` whole ClientHellos whose server side is not captured (they wait, idle)."""
    frames: list[bytes] = []

    def ip(i: int) -> str:
        return f"10.1.{i // 200}.{i % 200 + 1}"

    def client(i: int, off: int, data: bytes) -> None:
        frames.append(ipv4_tcp_frame(ip(i), SERVER, 30000 + i, 443, 1000 + off, 1, ACK | PSH, data,
                                     ident=len(frames)))

    for i in range(ONE_SIDED):
        client(1000 + i, 0, HELLO)
    cut = bytes([0x16, 3, 1]) + (16000).to_bytes(2, "big") + bytes([1]) + (15996).to_bytes(3, "big") + bytes(90)
    for i in range(OPEN_FLOWS):
        client(i, 0, cut)
    started: list[int] = []
    for r in range(ROUNDS):
        for i in range(OPEN_FLOWS):
            client(i, 400 + (r % 5) * 300, bytes(300))  # past the gap at 100..400: never whole
        for c in started:  # the hello's rest and the ServerHello, one round after its start
            client(c, 50, HELLO[50:])
            frames.append(ipv4_tcp_frame(SERVER, ip(c), 443, 30000 + c, 5000, 1000 + len(HELLO), ACK | PSH, SH,
                                         ident=len(frames)))
        started = []
        if 6 <= r < 6 + COMPLETE:  # once the busy flows only retransmit (no progress: idle)
            c = OPEN_FLOWS + r - 6
            client(c, 0, HELLO[:50])
            started.append(c)
    path.write_bytes(pcap_file((1_700_000_000 + i // 1000, (i % 1000) * 1000, f) for i, f in enumerate(frames)))


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "busy.pcap"
    _capture(path)
    return path


def _read(path: Path, fast: bool) -> tuple[pd.DataFrame, int, int]:
    """The table, the evictions and those of them whose hellos were whole."""
    df, stats = read_pcap(path, fast_lane=fast, window=16 * 1024)
    assert stats.warnings == []
    return df, stats.counts[EVICTED], stats.skipped[EVICTED_WHOLE]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cap", ["directions", "bytes"])
def test_at_the_bound_the_oldest_idle_are_evicted_and_say_so(capture: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fast: bool, cap: str) -> None:
    free, free_evicted, _ = _read(capture, fast)
    assert free_evicted == 0
    assert set(free["incomplete"].dropna()) == {"hello_cut"}
    if cap == "directions":
        monkeypatch.setattr(pending, "MAX_PENDING_DIRECTIONS", 16)
    else:
        monkeypatch.setattr(pending, "MAX_PENDING_BYTES", 40_000)
    df, evicted, whole_evicted = _read(capture, fast)
    assert len(df) == len(free) == OPEN_FLOWS + COMPLETE + ONE_SIDED  # every connection is still a row
    reasons = df["incomplete"].value_counts(dropna=False).to_dict()
    # 16 directions leave room for at most 16 busy flows; 40 kB (estimated) for fewer than 10.
    assert evicted == reasons[EVICTED] + whole_evicted
    assert reasons[EVICTED] >= OPEN_FLOWS - 16
    busy = df["client_port"] < 30000 + OPEN_FLOWS
    assert df.loc[busy, "ja4"].isna().all()
    assert df.loc[busy, "incomplete"].notna().all()  # evicted or cut: never silently ok
    whole = df.loc[~busy].sort_values("client_port", ignore_index=True)
    ref = free.loc[free["client_port"] >= 30000 + OPEN_FLOWS].sort_values("client_port", ignore_index=True)
    assert len(whole) == COMPLETE + ONE_SIDED
    assert whole["incomplete"].isna().all()  # the complete handshakes past the cap are read exactly
    for col in ("ja4", "ja3", "ja3s", "sni", "tls_version"):
        assert whole[col].tolist() == ref[col].tolist()
    assert whole["sni"].eq("example.com").all()


def test_an_evicted_connection_whose_hellos_were_whole_keeps_its_row(capture: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-sided hellos idle longest, so they go first; they lose nothing a row shows. (Windows of 32 KiB:
    the complete handshakes need room before the one-sided ones idle out.)"""
    monkeypatch.setattr(pending, "MAX_PENDING_DIRECTIONS", 16)
    df, stats = read_pcap(capture, window=32 * 1024)
    one_sided = df[df["client_port"] >= 31000]
    assert len(one_sided) == ONE_SIDED
    assert one_sided["incomplete"].isna().all()
    assert one_sided["ja4"].str.startswith("t13d0305h2_").all()
    assert stats.skipped[EVICTED_WHOLE] >= ONE_SIDED  # and some complete ones waiting on their server
    whole = df[df["client_port"] >= 30000 + OPEN_FLOWS]
    assert whole["incomplete"].isna().all()
    assert whole["ja4"].notna().all()
    assert stats.counts[EVICTED] == stats.skipped[EVICTED_WHOLE] + (df["incomplete"] == EVICTED).sum()


@pytest.mark.parametrize("cap", ["directions", "bytes"])
def test_one_window_never_opens_more_than_the_caps_hold(capture: Path, monkeypatch: pytest.MonkeyPatch,
                                                        cap: str) -> None:
    """Every busy flow starts in the first window: opening them all and evicting at its end would
    hold the whole burst first (the allocator keeps that high water). The ones past the room are
    rows that say so, at once."""
    if cap == "directions":
        monkeypatch.setattr(pending, "MAX_PENDING_DIRECTIONS", 16)
    else:
        monkeypatch.setattr(pending, "MAX_PENDING_BYTES", 16 * DIRECTION_COST)
    most: list[int] = []
    rounds = engine._Engine._select_rounds

    def watch(self: engine._Engine, *args: object, **kwargs: object) -> None:
        most.append(len(self.state.flows))  # right after the window's new directions opened
        rounds(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine._Engine, "_select_rounds", watch)
    df, stats = read_pcap(capture, fast_lane=False, window=16 * 1024)
    assert max(most) <= 16
    assert len(df) == OPEN_FLOWS + COMPLETE + ONE_SIDED  # every connection is still a row
    assert df["client_port"].is_unique
    evicted = int((df["incomplete"] == EVICTED).sum())
    assert evicted >= OPEN_FLOWS + ONE_SIDED - 16
    assert stats.counts[EVICTED] == evicted + stats.skipped[EVICTED_WHOLE]
    complete = df[(df["client_port"] >= 30000 + OPEN_FLOWS) & (df["client_port"] < 31000)]
    assert complete["incomplete"].isna().all()  # started later, when eviction had made room: read whole
    assert complete["sni"].eq("example.com").all()
