"""Freed memory goes back to the system, so peak RSS follows what is alive, not what once was.

Why: glibc's malloc serves blocks of at least its mmap threshold (128 KiB) with their own mappings,
which ``free`` unmaps; but after the first such block is freed it raises the threshold to that
block's size (up to 32 MiB). From then on the window-sized numpy temporaries of the capture engine and
the per-column arrays of a table come from the heap, and a freed one between live ones stays in RSS.
Fixing the thresholds (as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` would) keeps large
blocks mapped: ``tlsdetect fingerprint F -f jsonl`` on the interleaved 50k/s capture peaked at 357
instead of 415 MiB (``benchmarks/results/memory-2026-12-07-b.md``).

Only glibc has ``mallopt``; elsewhere (musl, macOS) nothing changes. A threshold the user already set
in the environment is left as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "return_freed_memory"]

#: Blocks at least this large get their own mapping (glibc's starting value, kept from adapting).
MMAP_THRESHOLD = 128 * 1024
#: Free memory at the top of the heap beyond this is given back.
TRIM_THRESHOLD = 128 * 1024

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def return_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where that is not possible or not wanted."""
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user's choice
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; musl has no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
