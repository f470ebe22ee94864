"""The C batch of QUIC Initials (:mod:`tlsdetect.readers.pcap.quic_batch`) against the Python path, its oracle.

Every capture of the reference corpus with a UDP stream, any split and order of the CRYPTO stream,
damaged datagrams: the rows are the same with the batch on and off, and the batch really takes the
common case. The C transport-parameter text equals :mod:`tlsdetect.wire.quic_tp`'s on any bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.readers.pcap import datagrams, quic_batch
from tlsdetect.readers.pcap.datagrams import Candidates
from tlsdetect.readers.pcap.engine import read_pcap
from tlsdetect.wire import _quic_crypto
from tlsdetect.wire.quic_initial import protect_initial
from tlsdetect.wire.quic_tp import transport_parameters

from .conftest import REFERENCE, ja4_streams, needs_reference, reference_files
from .craft import client_hello_body, handshake_message, hypothesis_examples, ipv4_udp_frame, tls_extension
from .test_datagrams import CSCID, DCID, V1, _client, _feed, _quic_hello, _scattered, _server, _server_initial, _write

pytestmark = pytest.mark.skipif(not quic_batch.ENABLED, reason="the libcrypto kernel is not built")
KEY = ["client_ip", "client_port", "server_ip", "server_port", "ts"]


def _batch_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Observe how many rows the batch itself settles (the call is the real one)."""
    taken: list[int] = []
    real = datagrams.settle

    def counting(*args: Any, **kwargs: Any) -> quic_batch.Batch:
        got = real(*args, **kwargs)
        taken.append(len(got.rows))
        return got

    monkeypatch.setattr(datagrams, "settle", counting)
    return taken


def _both(monkeypatch: pytest.MonkeyPatch, run: Callable[[], Any]) -> tuple[Any, Any, int]:
    """``run`` with the batch on, then off: (on, off, rows the batch settled)."""
    taken = _batch_rows(monkeypatch)
    on = run()
    monkeypatch.setattr(quic_batch, "ENABLED", False)
    off = run()
    return on, off, sum(taken)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY).reset_index(drop=True)


@needs_reference
def test_reference_udp_streams_same_rows_with_and_without_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [n for n in reference_files() if ja4_streams(n, "udp")]
    assert len(names) >= 5
    settled = 0
    for name in names:
        with monkeypatch.context() as m:
            (on, s_on), (off, s_off), taken = _both(m, lambda n=name: read_pcap(REFERENCE / n))
        pd.testing.assert_frame_equal(_sorted(on), _sorted(off), obj=name)
        assert {k: v for k, v in s_on.skipped.items() if v} == {k: v for k, v in s_off.skipped.items() if v}, name
        settled += taken
    assert settled >= 25  # 29 of the corpus's 54 QUIC connections today; the rest settle after a window or lack a hello


@settings(max_examples=hypothesis_examples(60), deadline=None)
@given(scattered=_scattered(), server_first=st.booleans())
def test_any_split_and_order_same_row_as_the_oracle(scattered: tuple[list[bytes], bytes], server_first: bool) -> None:
    datagrams_, _ = scattered
    frames = [(True, d) for d in datagrams_]
    server = (False, _server_initial())
    frames = [server, *frames] if server_first else [*frames, server]
    with pytest.MonkeyPatch.context() as m:
        (on, _), (off, _), taken = _both(m, lambda: _feed(frames))
    assert on == off
    assert taken == (0 if server_first else 1)  # a server Initial first is the oracle's (it holds it)


def _single_window(frames: list[tuple[bool, bytes]]) -> tuple[quic_batch.Batch, Candidates]:
    buf = np.frombuffer(b"".join(d for _, d in frames), dtype=np.uint8)
    n = len(frames)
    fwd = np.array([f for f, _ in frames], dtype=bool)
    c, s = np.uint64(0xFFFF0A010001), np.uint64(0xFFFF0A020002)
    zero = np.zeros(n, dtype=np.uint64)
    cand = Candidates(
        np.zeros(n, dtype=np.int64), np.cumsum([0] + [len(d) for _, d in frames])[:-1].astype(np.int64),
        np.array([len(d) for _, d in frames], dtype=np.int64), np.arange(n, dtype=np.int64), zero,
        np.where(fwd, c, s).astype(np.uint64), zero, np.where(fwd, s, c).astype(np.uint64),
        np.where(fwd, 50000, 443).astype(np.int64), np.where(fwd, 443, 50000).astype(np.int64),
    )
    got = quic_batch.settle(buf, cand.kind, cand.payload, cand.plen, cand.ts, cand.src_hi, cand.src_lo, cand.dst_hi,
                            cand.dst_lo, cand.sport, cand.dport, {}, quic_batch.Templates())
    return got, cand


@settings(max_examples=hypothesis_examples(150), deadline=None)
@given(data=st.data())
def test_damaged_initials_never_raise_and_match_the_oracle(data: st.DataObject) -> None:
    """Flipped, cut or extended bytes of the client's and server's Initials: a named skip or the
    oracle's row, never an exception; what the batch takes it takes whole."""
    hello = handshake_message(1, _quic_hello())
    payloads = [protect_initial(V1, DCID, CSCID, 0, [(0, hello)]) + bytes(40), _server_initial()]
    frames: list[tuple[bool, bytes]] = []
    for fwd, p in zip((True, False), payloads, strict=True):
        raw = bytearray(p)
        for _ in range(data.draw(st.integers(0, 3))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        cut = data.draw(st.integers(0, len(raw)))
        frames.append((fwd, bytes(raw[: max(cut, 25)])))
    got, _ = _single_window(frames)  # never raises
    assert len(got.rows) <= 1
    with pytest.MonkeyPatch.context() as m:
        (on, s_on), (off, s_off), _ = _both(m, lambda: _feed(frames))
    assert on == off
    assert {k: v for k, v in s_on.skipped.items() if v} == {k: v for k, v in s_off.skipped.items() if v}


def test_two_connections_in_one_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the engine: the batch's flow keys and directions are the Python path's."""
    hello = handshake_message(1, _quic_hello())
    other = bytes(8 - len(DCID)) + bytes(reversed(DCID))
    frames = [
        _client(protect_initial(V1, DCID, CSCID, 0, [(0, hello)], pad_to=1200)),
        ipv4_udp_frame("10.9.9.9", "10.2.0.2", 40000, 443, protect_initial(V1, other, CSCID, 0, [(0, hello)],
                                                                             pad_to=1200)),
        _server(_server_initial()),
        ipv4_udp_frame("10.2.0.2", "10.9.9.9", 443, 40000, _server_initial(key_cid=other)),
    ]
    path = _write(tmp_path, frames)
    (on, _), (off, _), taken = _both(monkeypatch, lambda: read_pcap(path))
    assert taken == 2
    assert len(on) == 2
    pd.testing.assert_frame_equal(_sorted(on), _sorted(off))
    assert sorted(on["client_ip"]) == ["10.1.0.1", "10.9.9.9"]
    assert set(on["quic_transport_params"]) == {"1=100,4=16,grease"}


def _hello_with(params: bytes) -> bytes:
    body = client_hello_body("tp.example")
    head_len = 2 + 32 + 1 + 2 + 6 + 2
    exts = body[head_len + 2 :] + tls_extension(0x39, params)
    return body[:head_len] + struct.pack(">H", len(exts)) + exts


def _varint(v: int) -> bytes:
    for size, tag in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if v < 1 << (8 * size - 2):
            out = bytearray(v.to_bytes(size, "big"))
            out[0] |= tag
            return bytes(out)
    raise ValueError(v)


_param = st.tuples(
    st.one_of(st.sampled_from([0, 1, 2, 3, 4, 0xE, 0xF, 0x11, 0x20, 27, 58, 0x2AB2]), st.integers(0, (1 << 62) - 1)),
    st.one_of(st.integers(0, (1 << 62) - 1).map(_varint), st.binary(max_size=12),
              st.lists(st.sampled_from([1, 0x6B3343CF, 0x1A2A3A4A, 0xFF00001D]), max_size=3).map(
                  lambda vs: b"".join(v.to_bytes(4, "big") for v in vs))),
)


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(params=st.lists(_param, max_size=8), tail=st.binary(max_size=3), cut=st.integers(0, 400))
def test_transport_parameters_in_c_equal_the_python(params: list[tuple[int, bytes]], tail: bytes, cut: int) -> None:
    ext = b"".join(_varint(p) + _varint(len(v)) + v for p, v in params) + tail
    body = _hello_with(ext)
    for b in (body, body[:cut], body[: len(body) - cut]):
        assert _quic_crypto.transport_parameters(b) == transport_parameters(b)


@settings(max_examples=hypothesis_examples(300), deadline=None)
@given(body=st.binary(max_size=300))
def test_transport_parameters_on_any_bytes(body: bytes) -> None:
    assert _quic_crypto.transport_parameters(body) == transport_parameters(body)


def test_flow_keys_and_directions_as_the_python_path_spells_them() -> None:
    rng = random.Random(7)
    n = 200
    hi = np.array([rng.choice([0, 1]) for _ in range(n)], dtype=np.uint64)
    lo = np.array([rng.choice([5, 6, 2**63 + 1]) for _ in range(n)], dtype=np.uint64)
    port = np.array([rng.choice([443, 50000]) for _ in range(n)], dtype=np.int64)
    perm = np.array([rng.randrange(n) for _ in range(n)])
    inv, first, keys, fwd = quic_batch._flows(np.zeros(n, dtype=np.int64), hi, lo, port, hi[perm], lo[perm],
                                              port[perm])
    for i in range(n):
        src = (int(hi[i]), int(lo[i]), int(port[i]))
        dst = (int(hi[perm[i]]), int(lo[perm[i]]), int(port[perm[i]]))
        assert keys[inv[i]] == ((src, dst) if src <= dst else (dst, src))
        f0 = int(first[inv[i]])
        assert bool(fwd[i]) == (src == (int(hi[f0]), int(lo[f0]), int(port[f0])))
    assert len(set(keys)) == len(keys)


def test_clients_without_an_answer_share_one_rendered_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clients whose server never answers: handed over open, finished from one row per hello."""
    hello = handshake_message(1, _quic_hello())
    other = bytes(8 - len(DCID)) + bytes(reversed(DCID))
    frames = [
        _client(protect_initial(V1, DCID, CSCID, 0, [(0, hello)], pad_to=1200)),
        ipv4_udp_frame("10.9.9.9", "10.2.0.2", 40000, 443, protect_initial(V1, other, CSCID, 0, [(0, hello)],
                                                                             pad_to=1200)),
    ]
    path = _write(tmp_path, frames)
    rendered: list[int] = []
    real = quic_batch.udp_row

    def counting(*args: Any, **kwargs: Any) -> dict[str, object]:
        rendered.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(quic_batch, "udp_row", counting)
    (on, _), (off, _), taken = _both(monkeypatch, lambda: read_pcap(path))
    assert taken == 0  # nothing settled in the batch: both handed over
    assert len(rendered) == 1  # one rendering for both rows (the batch off renders its own)
    pd.testing.assert_frame_equal(_sorted(on), _sorted(off))
    assert sorted(on["client_ip"]) == ["10.1.0.1", "10.9.9.9"]
    assert on["sh_cipher"].isna().all()
    assert set(on["quic_transport_params"]) == {"1=100,4=16,grease"}
