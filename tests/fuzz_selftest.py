"""Targets that fail on purpose, for tests/test_fuzz_runner.py: the harness must catch each kind.

Loaded by the fuzzing child through ``TLSDETECT_FUZZ_TARGETS=tests.fuzz_selftest``.
"""

from __future__ import annotations

import ctypes
import os

from fuzz.targets import Target


def _raises(data: bytes) -> object:
    if data[:1] == b"K":
        raise KeyError("a bug the fuzzer must find")
    return None


def _segfaults(data: bytes) -> object:
    if data[:1] == b"S":
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native parser's crash would be
    return None


#: C built by tests/test_fuzz_sanitized.py with the sanitizers (path in ``$TLSDETECT_FUZZ_PROBE``).
PROBE_C = r"""
#include <stdlib.h>
int probe_read(int n) { volatile unsigned char *b = malloc(n); int v = b[n]; free((void *)b); return v; }
int probe_shift(int a, int s) { return a << s; }
"""


def _overflows(data: bytes) -> object:
    if data[:1] and data[0] >= 0x40:
        probe = ctypes.CDLL(os.environ["TLSDETECT_FUZZ_PROBE"])
        return probe.probe_read(8)  # one past an 8-byte heap block: only AddressSanitizer sees it
    return None


def _documented(data: bytes) -> object:
    raise ValueError(f"every input is rejected with a clear error ({len(data)} bytes)")


TARGETS = {t.name: t for t in (
    Target("selftest-raise", _raises, ("InputError",), "raises KeyError on inputs starting with K"),
    Target("selftest-segv", _segfaults, ("InputError",), "SIGSEGV on inputs starting with S"),
    Target("selftest-documented", _documented, ("ValueError",), "a documented error on every input"),
    Target("selftest-asan", _overflows, ("InputError",), "a heap read one past the end on inputs from 0x40",
           sanitized=True),
)}
