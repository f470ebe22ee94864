"""A global bound on the reassembling lane's pending handshakes (like Suricata's ``stream.memcap``).

A capture can hold any number of handshakes that begin and never finish while staying busy (a
hello cut by a gap whose sender keeps retransmitting inside it), so neither the per-direction
depth nor the idle timeout bounds the engine's memory: the open directions and the bytes they
hold must be capped as a whole. At the end of a window, when either cap is passed, the
connections idle the longest are finished first with what they have until both are back under
``REFILL`` of their cap, so a full table is not trimmed again every window. An evicted row whose
hellos were not read whole says ``incomplete = pending_evicted`` (a ledger event with its
4-tuple); one whose hellos were read whole keeps its fingerprints and is counted as
``EVICTED_WHOLE`` (losing only what the rest of the handshake would have added). Pure logic over
arrays, one call per window.

The byte cap is on an estimate of the memory held, not just payload: Python spends about 210
bytes on each kept segment and 2 KB on each open direction (measured with tracemalloc on
``benchmarks/make_unfinished_pcap.py`` captures), which dominate for many small segments or
many directions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "DIRECTION_COST", "EVICTED", "EVICTED_WHOLE", "MAX_PENDING_BYTES", "MAX_PENDING_DIRECTIONS", "REFILL",
    "SEGMENT_COST", "evict", "room",
]

#: Open flow directions the reassembling lane holds at most (a connection has one or two). Each
#: costs ~3.3 KB of small Python objects, and CPython's allocator keeps their arenas after the
#: direction is gone (a survivor pins an arena): at 65,536 directions that high water was ~200 MiB,
#: kept for the rest of the file, and at 16,384 still ~50 MiB above 9,000
#: (``benchmarks/results/memory-2026-12-07.md``); at 8,192 ~27 MiB. Not lower than 16,384: ordinary
#: captures hold a few dozen (the fast lane takes complete handshakes), but at a window's end every
#: handshake still open is pending, and interleaved traffic at 50,000 connections/s with a 20 ms RTT
#: keeps ~4,500 connections open (``benchmarks/results/interleaved-2026-12-07.md``): ~9,000
#: directions, which a cap of 8,192 would turn into ``pending_evicted`` rows of clean connections.
MAX_PENDING_DIRECTIONS = 16_384
#: Estimated bytes those directions hold at most: buffered segments and reassembled prefixes,
#: plus ``SEGMENT_COST`` per segment and ``DIRECTION_COST`` per direction.
MAX_PENDING_BYTES = 128 * 1024 * 1024
SEGMENT_COST = 256
DIRECTION_COST = 2048
#: Share of each cap that eviction brings the table back under.
REFILL = 0.875
#: The ``incomplete`` reason of a connection finished by eviction before its hellos were whole.
EVICTED = "pending_evicted"
#: The counted skip of an evicted connection whose hellos were whole (its row is ordinary).
EVICTED_WHOLE = "pending_evicted after whole hellos"

I64 = npt.NDArray[np.int64]


def room(open_directions: int, held: int, *, max_directions: int = MAX_PENDING_DIRECTIONS,
         max_bytes: int = MAX_PENDING_BYTES) -> int:
    """How many new directions fit under both caps now (after eviction made what room it could).

    A single window can start more handshakes than the caps hold; opening them all and evicting
    at the window's end would put the whole burst in memory first, so the ones past this are
    not opened (each becomes an evicted row at once).
    """
    return max(0, min(max_directions - open_directions, (max_bytes - held) // DIRECTION_COST))


def evict(
    touched: I64, directions: I64, held: I64, *, max_directions: int = MAX_PENDING_DIRECTIONS,
    max_bytes: int = MAX_PENDING_BYTES,
) -> I64:
    """Positions of the connections to finish now (oldest-idle first), or none when under both caps.

    The arrays are per pending connection, in the order the connections opened: the window it
    was last touched in, its open directions and its held bytes. Ties in idleness go to the
    connection opened first.
    """
    if directions.sum() <= max_directions and held.sum() <= max_bytes:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(touched, kind="stable")
    # Left after evicting the first k (k = 1..n) of ``order``.
    dirs_left = directions.sum() - np.cumsum(directions[order])
    bytes_left = held.sum() - np.cumsum(held[order])
    ok = (dirs_left <= int(max_directions * REFILL)) & (bytes_left <= int(max_bytes * REFILL))
    k = int(np.argmax(ok)) + 1 if ok.any() else len(order)
    return order[:k].astype(np.int64)
