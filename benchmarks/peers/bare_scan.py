#!/usr/bin/env python3
"""Lower bound for the pcap benchmark: a bare numpy scan of the file.

It memory-maps the file one chunk at a time and counts the offsets where a TLS
ClientHello record could start (``16 03 [00-04] ?? ?? 01``). No packet, IP or TCP
parsing, no reassembly: this is roughly the cost of touching every byte once with
numpy, i.e. what "reading the file" costs in the same language and library as
tlsdetect. A fingerprinting tool cannot be much faster than this.

The count is approximate by design: a hello whose first TCP segment ends inside the
record header is not seen, and random bytes could in principle match.

Each chunk is a separate ``np.memmap`` that is closed before the next one, so peak RSS
stays near two chunks whatever the file size.

Usage: ``python bare_scan.py FILE [--chunk-mb 64]``
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

PATTERN_LEN = 6  # content type, version (2), length (2), handshake type


def count_in_chunk(chunk: np.ndarray) -> int:
    """Count ClientHello record starts whose 6 bytes lie fully inside ``chunk``."""
    head = chunk[: len(chunk) - PATTERN_LEN + 1]
    cand = np.flatnonzero(head == 0x16)  # rare byte: everything after is on few indices
    ok = (chunk[cand + 1] == 0x03) & (chunk[cand + 2] <= 0x04) & (chunk[cand + 5] == 0x01)
    return int(np.count_nonzero(ok))


def scan(path: str, chunk_bytes: int) -> int:
    """Scan the file in overlapping chunks so no match is lost or counted twice."""
    size = os.path.getsize(path)
    total, start = 0, 0
    while start < size:
        length = min(chunk_bytes + PATTERN_LEN - 1, size - start)
        chunk = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(length,))
        total += count_in_chunk(np.asarray(chunk))
        del chunk  # unmap now: keeps RSS bounded to one chunk
        start += chunk_bytes
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--chunk-mb", type=int, default=64)
    args = parser.parse_args(argv)
    print(scan(args.file, args.chunk_mb << 20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
