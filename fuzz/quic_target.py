"""The ``quic`` fuzz target: untrusted bytes through the QUIC Initial kernel (``_quic_crypto.c``), held to Python.

Why a target of its own: the kernel reads datagrams an attacker sends to any monitored network, in C;
a bug there shows as memory damage, so this runs in the sanitized child (:mod:`fuzz.sanitized` loads
the ASan/UBSan build of the kernel beside the capture core's), and any answer that differs from the
Python path's (the oracle) is a finding too (:class:`MismatchError`). Three passes per input:

1. the bytes as a ClientHello body: ``transport_parameters`` in C equals :mod:`tlsdetect.wire.quic_tp`;
2. the bytes as raw datagrams, cut where the bytes say, one or two connections, either direction,
   through ``initial_batch`` (the header walk, on bytes that rarely decrypt), and the Python path's
   rows with the batch on equal those with it off;
3. the bytes as the *plaintext* of Initial packets, sealed here with the client's and the server's
   keys (so the frame walk, reassembly, message walk and arena run on anything the bytes hold), the
   same comparison.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MismatchError", "run"]

DCID, SCID = bytes.fromhex("8394c8f03e515708"), bytes.fromhex("c1c2c3c4")
V1 = 0x00000001


class MismatchError(AssertionError):
    """The batch and the Python path disagree on the same datagrams (a finding, like a crash)."""


def _exact(data: bytes) -> np.ndarray:
    """A uint8 array of exactly ``len(data)`` bytes in its own allocation (a read past it hits a red zone)."""
    out = np.empty(len(data), dtype=np.uint8)
    out[:] = np.frombuffer(data, dtype=np.uint8)
    return out


def _seal(payload: bytes, *, server: bool, pn: int) -> bytes:
    """An Initial packet carrying ``payload`` (raw frame bytes) as its plaintext, protected as a peer would."""
    from tlsdetect.wire.quic_initial import _aead, _encode_varint, _mask, initial_keys

    keys = initial_keys(V1, DCID, server=server)
    payload += bytes(max(0, 4 - len(payload)))
    dcid, scid = (SCID, b"\x5a\x5b") if server else (DCID, SCID)
    head = b"\xc3" + V1.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + b"\x00"
    head += _encode_varint(4 + len(payload) + 16) + pn.to_bytes(4, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = _aead(keys.key).encrypt(nonce, payload, head)
    mask = _mask(keys.hp, sealed[:16])
    out = bytearray(head + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(4):
        out[len(head) - 4 + i] ^= mask[1 + i]
    return bytes(out)


def _window(frames: list[tuple[int, bool, bytes]], batch: bool) -> list[object]:
    """Datagrams ``(connection, client -> server, bytes)`` as one window of QUIC candidates: rows and skips."""
    from tlsdetect.readers.base import ReadStats
    from tlsdetect.readers.pcap import quic_batch
    from tlsdetect.readers.pcap.datagrams import QUIC, Candidates, Datagrams

    data = b"".join(d for _, _, d in frames)
    n = len(frames)
    starts = np.cumsum([0] + [len(d) for _, _, d in frames])[:-1].astype(np.int64)
    fwd = np.array([f for _, f, _ in frames], dtype=bool)
    conn = np.array([c for c, _, _ in frames], dtype=np.uint64)
    client, server = np.uint64(0xFFFF0A010000) + conn, np.uint64(0xFFFF0A020002)
    zero = np.zeros(n, dtype=np.uint64)
    cand = Candidates(
        np.full(n, QUIC, dtype=np.int64), starts, np.array([len(d) for _, _, d in frames], dtype=np.int64),
        np.arange(n, dtype=np.int64) * 1000, zero, np.where(fwd, client, server).astype(np.uint64), zero,
        np.where(fwd, server, client).astype(np.uint64), np.where(fwd, 50000, 443).astype(np.int64),
        np.where(fwd, 443, 50000).astype(np.int64),
    )
    was = quic_batch.ENABLED
    quic_batch.ENABLED = batch
    try:
        stats = ReadStats()
        reader = Datagrams(stats)
        reader.window(_exact(data), cand)
        rows = reader.rows(final=True)
    finally:
        quic_batch.ENABLED = was
    key = ("client_ip", "client_port", "ts")
    rows.sort(key=lambda r: tuple(str(r[k]) for k in key))
    return [*rows, sorted((k, v) for k, v in stats.skipped.items() if v)]


def _same(frames: list[tuple[int, bool, bytes]]) -> None:
    on, off = _window(frames, True), _window(frames, False)
    if on != off:
        raise MismatchError(f"batch {on!r} != Python path {off!r}")


def run(data: bytes) -> list[object]:
    from tlsdetect.wire import _quic_crypto
    from tlsdetect.wire.quic_tp import transport_parameters

    got = _quic_crypto.transport_parameters(_exact(data))
    if got != transport_parameters(data):
        raise MismatchError(f"transport parameters: C {got!r} != Python {transport_parameters(data)!r}")
    cut = data[0] % (len(data) + 1) if data else 0
    raw = [(0, True, data[:cut]), (0, False, data[cut:])] if cut else [(0, True, data)]
    _quic_crypto.initial_batch(_exact(data), np.array([0], dtype=np.int64), np.array([len(data)], dtype=np.int64),
                               np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                               np.ones(1, dtype=np.uint8), 1, [(V1, bytes(20), b"quic ", 0)])
    _same([f for f in raw if f[2]] or [(0, True, b"\xc0")])
    half = len(data) // 2
    sealed = [(0, True, _seal(data[:half], server=False, pn=0)), (0, False, _seal(data[half:], server=True, pn=0)),
              (1, True, _seal(data[half:], server=False, pn=1))]
    _same(sealed)
    _same(sealed[::-1])
    return [got]
