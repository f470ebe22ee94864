"""The C capture core under AddressSanitizer and UBSan: capture files, then bounded mutations of them.

Why a child process of its own: the extension is built with ``-fsanitize=address,undefined`` and
run with libasan preloaded, so the first read or write outside a buffer, or the first undefined
behaviour (UBSan without recovery), ends the process. Before each input this module writes it to
``LAST``; the parent (``tests/test_ccore_sanitized.py``) keeps that file as a regression input when
the child dies. Every input is also read by the numpy core: a difference is a finding too (exit 3).

usage: python -m fuzz.ccore_sanitized SO_PATH LAST SECONDS SEED FILE...
"""

from __future__ import annotations

import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MUTATIONS = ("flip", "truncate", "length", "splice", "zero")


def load_extension(so_path: str) -> None:
    """Make ``tlsdetect.readers.pcap._ccore`` the sanitized build, before ccore imports it."""
    name = "tlsdetect.readers.pcap._ccore"
    spec = importlib.util.spec_from_file_location(name, so_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {so_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to a few damaging edits: byte flips, a cut, a lying 32-bit length, a spliced copy, zeros."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(MUTATIONS)
        if not out:
            break
        at = rng.randrange(len(out))
        if kind == "flip":
            out[at] = rng.randrange(256)
        elif kind == "truncate":
            del out[rng.randrange(24, max(25, len(out))):]
        elif kind == "length":  # record/block lengths and IP/TCP length fields live at many offsets
            out[at : at + 4] = rng.choice([0, 1, 15, 16, 0xFFFF, 0x40000, 0x7FFFFFFF, 0xFFFFFFFF,
                                           rng.getrandbits(32)]).to_bytes(4, rng.choice(["little", "big"]))
        elif kind == "splice":
            src = rng.randrange(len(out))
            out[at:at] = out[src : src + rng.randrange(1, 200)]
        else:
            out[at : at + rng.randrange(1, 64)] = bytes(rng.randrange(1, 64))
    return bytes(out)


def check(path: Path) -> None:
    """Read ``path`` with both cores; exit 3 on any difference (the sanitizers exit on bad memory)."""
    from tlsdetect.readers.pcap.capture import CaptureError, CaptureReader
    from tlsdetect.readers.pcap.packets import decode, flow_hash

    try:
        c = list(CaptureReader(path, compiled=True, reuse_buffer=False, window=1 << 16))
        n = list(CaptureReader(path, compiled=False, reuse_buffer=False, window=1 << 16))
    except CaptureError:
        return
    same = len(c) == len(n)
    for x, y in zip(c, n, strict=False):
        dx, dy = decode(x, compiled=True), decode(y, compiled=False)
        same &= all(np.array_equal(getattr(x, f), getattr(y, f)) for f in ("data", "caplen", "ts_ns", "linktype"))
        same &= all(np.array_equal(getattr(dx, f), getattr(dy, f)) for f in ("valid", "src_lo", "payload", "seq"))
        fields = (dx.src_hi, dx.src_lo, dx.dst_hi, dx.dst_lo, dx.sport, dx.dport)
        same &= bool(np.array_equal(flow_hash(*fields, compiled=True), flow_hash(*fields, compiled=False)))
    if not same:
        print(f"the C and numpy cores differ on {path}", file=sys.stderr)
        raise SystemExit(3)


def random_calls(rng: random.Random) -> None:
    """The extension's entry points on random bytes and random (in-buffer) packet bounds."""
    from tlsdetect.readers.pcap import ccore

    buf = np.frombuffer(rng.randbytes(rng.randrange(1, 3000)), dtype=np.uint8)
    n = len(buf)
    ccore.walk_pcap(buf, rng.randrange(-4, n + 4), rng.randrange(0, n + 4), rng.random() < 0.5, 262_144)
    ccore.walk_pcapng(buf, rng.randrange(-4, n + 4), rng.randrange(0, n + 4), rng.random() < 0.5, 262_208)
    data = np.array([rng.randrange(0, n + 1) for _ in range(50)], dtype=np.int64)
    caplen = np.array([rng.randrange(0, n - d + 1) for d in data.tolist()], dtype=np.int64)
    links = np.array([rng.choice([0, 1, 9, 12, 14, 50, 51, 101, 104, 108, 113, 228, 229, 276, 7]) for _ in data])
    ccore.decode(buf, data, caplen, links)


def main(argv: list[str]) -> int:
    so_path, last, seconds, seed, *files = argv
    load_extension(so_path)
    from tlsdetect.readers.pcap import ccore

    if not ccore.enabled():
        print(f"the sanitized core does not run: {ccore.status()}", file=sys.stderr)
        return 2
    last_path = Path(last)
    rng = random.Random(int(seed))
    corpus = [Path(f).read_bytes() for f in files]
    inputs = 0
    with tempfile.TemporaryDirectory(prefix="ccore-asan-") as tmp:
        work = Path(tmp) / "input.pcap"

        def run(data: bytes) -> None:
            last_path.write_bytes(data)  # kept by the parent if this input kills the process
            work.write_bytes(data)
            check(work)

        for data in corpus:
            run(data)
            inputs += 1
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            run(mutate(rng.choice(corpus), rng))
            random_calls(rng)
            inputs += 1
    last_path.unlink(missing_ok=True)
    print(f"{inputs} inputs, {len(corpus)} of them corpus files, no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
