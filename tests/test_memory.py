"""tlsdetect.memory: freed large blocks leave RSS once the thresholds are fixed (a child process each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tlsdetect import memory

# Many 1 MiB blocks, each followed by a small block that stays alive (so the heap cannot be trimmed
# from its top), then the large ones freed: what RSS keeps of them.
_CHILD = """
import json, sys
from tlsdetect.memory import return_freed_memory
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))
fixed = return_freed_memory() if sys.argv[1] == "fix" else False
warm = bytearray(4 << 20); del warm  # glibc raises its threshold to 4 MiB after this free
big, small = [], []
for _ in range(160):
    big.append(bytearray(1 << 20))  # malloc'ed, as numpy's and Arrow's large buffers are
    small.append(bytearray(2048))
held = rss()
del big
print(json.dumps({"fixed": fixed, "held": held, "after": rss()}))
"""


def _child(mode: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_leave_rss_only_with_fixed_thresholds() -> None:
    fixed, default = _child("fix"), _child("default")
    assert fixed["fixed"]
    assert fixed["held"] - fixed["after"] >= 140  # of 160 MiB freed
    assert default["held"] - default["after"] < 40  # glibc's adapted threshold keeps them


def test_a_threshold_set_by_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.return_freed_memory() is False
