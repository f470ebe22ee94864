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
