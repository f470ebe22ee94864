#!/usr/bin/env python3
"""Fast-lane share and per-connection JA3 truth of the pcap engine on interleaved files.

Why: issue 19 asks for >= 99% of connections on the compiled fast path at 50,000 connections/s,
and the engine's counters say how many took the fast lane but not which, nor why the others
did not. This reads a file made by ``make_big_pcap.py --rate`` with the native engine (read
only: the lane's ``claim_handshakes`` is wrapped to note which client endpoints it took), joins
the rows with the generator's per-connection truth (``FILE.conns.npz``) and splits the slow-lane
connections by cause: a split ServerHello, a split ClientHello, hellos in different windows.

    .venv/bin/python benchmarks/bench_interleaved.py FILE.pcap [FILE2.pcap ...]
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tlsdetect.readers.pcap import engine
from tlsdetect.readers.pcap.capture import WINDOW
from tlsdetect.readers.pcap.fastlane import FastLane, Segments

HTTPS = 443


def endpoint_key(ip: npt.NDArray[np.int64], port: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """One integer per client endpoint (IPv4 address, port)."""
    return (ip.astype(np.int64) << 16) | port.astype(np.int64)


def measure(path: Path, window: int) -> dict[str, Any]:
    """Read ``path`` once; return counts, the fast-lane share and the slow lane's causes."""
    taken_keys: list[npt.NDArray[np.int64]] = []
    original = FastLane.claim_handshakes

    def spy(self: FastLane, buf: Any, seg: Segments, start: Any, busy: Any, base: int = 0) -> Any:
        mask = original(self, buf, seg, start, busy, base)
        s = start[mask]
        client_side = seg.dport[s] == HTTPS
        ip = np.where(client_side, seg.src_lo[s], seg.dst_lo[s]).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        port = np.where(client_side, seg.sport[s], seg.dport[s])
        taken_keys.append(endpoint_key(ip.astype(np.int64), port))
        return mask

    load_before = os.getloadavg()
    started = time.perf_counter()
    FastLane.claim_handshakes = spy  # type: ignore[method-assign]
    try:
        df, stats = engine.read_pcap(path, window=window)
    finally:
        FastLane.claim_handshakes = original  # type: ignore[method-assign]
    seconds = time.perf_counter() - started
    truth = np.load(str(path) + ".conns.npz")
    n = len(truth["client_ip"])
    key = endpoint_key(truth["client_ip"].astype(np.int64), truth["client_port"].astype(np.int64))
    taken = np.unique(np.concatenate(taken_keys)) if taken_keys else np.empty(0, np.int64)
    fast = np.isin(key, taken)
    # Per-connection JA3: join the rows to the truth on client endpoint and server address.
    row_ip = np.array([int(ipaddress.IPv4Address(a)) for a in df["client_ip"]], np.int64)
    row_key = endpoint_key(row_ip, df["client_port"].to_numpy(np.int64))
    order = np.argsort(key)
    pos = np.minimum(np.searchsorted(key[order], row_key), n - 1)
    matched = key[order][pos] == row_key
    want = truth["ja3_md5"][order][pos]
    ja3_right = int((matched & (df["ja3"].to_numpy(str) == want)).sum())
    ch_off, sh_off = truth["client_hello_offset"], truth["server_hello_offset"]
    apart = (ch_off >= 0) & (sh_off >= 0) & (ch_off // window != sh_off // window)
    next_off = truth["client_next_offset"]
    next_apart = (next_off >= 0) & (sh_off >= 0) & (next_off // window != sh_off // window)
    data_off = truth["server_next_offset"]
    data_apart = (data_off >= 0) & (sh_off >= 0) & (data_off // window != sh_off // window) & ~next_apart
    last_off = truth["last_packet_offset"]
    open_at_end = (sh_off >= 0) & (last_off // window != sh_off // window) & ~next_apart & ~data_apart
    slow = ~fast
    sh_split, ch_split = truth["server_hello_split"], truth["client_hello_split"]
    manifest = json.loads(Path(str(path) + ".json").read_text())
    return {
        "file": path.name, "bytes": path.stat().st_size, "interleaved": manifest.get("interleaved"),
        "connections_generated": n, "rows": len(df), "ja3_right": ja3_right,
        "unique_client_endpoints": len(np.unique(key)),
        "engine_counts": {k: int(v) for k, v in stats.counts.items()},
        "fast_lane_connections": int(stats.counts["fast_lane_connections"]),
        "fast_share": stats.counts["fast_lane_connections"] / max(1, len(df)),
        "slow_by_truth": int(slow.sum()),
        "slow_causes": {
            "server_hello_split": int((slow & sh_split).sum()),
            "hellos_in_different_windows": int((slow & apart & ~sh_split).sum()),
            "client_next_payload_in_later_window": int((slow & next_apart & ~apart & ~sh_split).sum()),
            "server_first_data_in_later_window": int((slow & data_apart & ~apart & ~sh_split).sum()),
            "still_open_at_window_end": int((slow & open_at_end & ~apart & ~sh_split).sum()),
            "client_hello_split_only": int((slow & ch_split & ~apart & ~sh_split & ~next_apart & ~data_apart
                                            & ~open_at_end).sum()),
            "none_of_these": int((slow & ~ch_split & ~apart & ~sh_split & ~next_apart & ~data_apart
                                  & ~open_at_end).sum()),
        },
        "fast_despite": {"server_hello_split": int((fast & sh_split).sum()),
                         "hellos_in_different_windows": int((fast & apart).sum()),
                         "client_next_payload_in_later_window": int((fast & next_apart).sum()),
                         "server_first_data_in_later_window": int((fast & data_apart).sum())},
        "all_with": {"server_hello_split": int(sh_split.sum()), "client_hello_split": int(ch_split.sum()),
                     "hellos_in_different_windows": int(apart.sum()),
                     "client_next_payload_in_later_window": int(next_apart.sum()),
                     "server_first_data_in_later_window": int(data_apart.sum())},
        "read_seconds": round(seconds, 2), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--window", type=int, default=WINDOW, help="engine window in bytes (default 16 MiB)")
    args = p.parse_args(argv)
    for f in args.files:
        print(json.dumps(measure(f, args.window)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
