"""Shrinks a finding to the smallest input that still fails the same way, within a time budget.

Why here and not libFuzzer's ``-minimize_crash``: that re-executes the fuzzer binary, which for atheris
is a Python script, not a binary. This is a plain delta reduction in-process: cut chunks (halves,
then quarters, ...) and keep a cut when the target still raises the same exception type from the
same line. A signal cannot be reduced in-process (it would end the process): those stay as found.
"""

from __future__ import annotations

import time
import traceback

from fuzz.targets import Target, is_expected

#: (exception type, file and line of the innermost frame) of a failure, or None when the input passes.
Signature = tuple[str, str, int] | None


def signature(target: Target, data: bytes) -> Signature:
    """How ``data`` fails ``target`` (None: it does not, or only with a documented error)."""
    try:
        target.run(data)
    except Exception as exc:
        if is_expected(target, exc):
            return None
        frames = traceback.extract_tb(exc.__traceback__)
        last = frames[-1] if frames else None
        return type(exc).__name__, last.filename if last else "", (last.lineno or 0) if last else 0
    return None


def minimise(target: Target, data: bytes, seconds: float) -> bytes:
    """The shortest input found in ``seconds`` that fails like ``data`` (``data`` itself if none)."""
    wanted = signature(target, data)
    if wanted is None:
        return data
    deadline = time.monotonic() + seconds
    chunk = max(len(data) // 2, 1)
    while time.monotonic() < deadline:
        start, cut = 0, False
        while start < len(data) and time.monotonic() < deadline:
            candidate = data[:start] + data[start + chunk:]
            if signature(target, candidate) == wanted:
                data, cut = candidate, True
            else:
                start += chunk
        if not cut:
            if chunk == 1:
                break
            chunk = max(chunk // 2, 1)
    return data
