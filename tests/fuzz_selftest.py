"""Targets that fail on purpose, for tests/test_fuzz_runner.py: the harness must catch each kind.

Loaded by the fuzzing child through ``TLSDETECT_FUZZ_TARGETS=tests.fuzz_selftest``.
"""

from __future__ import annotations

import ctypes

from fuzz.targets import Target


def _raises(data: bytes) -> object:
    if data[:1] == b"K":
        raise KeyError("a bug the fuzzer must find")
    return None


def _segfaults(data: bytes) -> object:
    if data[:1] == b"S":
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a native parser's crash would be
    return None


def _documented(data: bytes) -> object:
    raise ValueError(f"every input is rejected with a clear error ({len(data)} bytes)")


TARGETS = {t.name: t for t in (
    Target("selftest-raise", _raises, ("InputError",), "raises KeyError on inputs starting with K"),
    Target("selftest-segv", _segfaults, ("InputError",), "SIGSEGV on inputs starting with S"),
    Target("selftest-documented", _documented, ("ValueError",), "a documented error on every input"),
)}
