#!/usr/bin/env python3
"""Build a capture of many concurrent TLS handshakes that never finish (issue 18, row 7).

Why: the native engine keeps a direction's segments until its handshake is settled or idle for
``IDLE_WINDOWS`` windows. A sender that opens many handshakes and keeps each one busy without
ever completing it holds that state for the whole file; the pending memory then grows with the
capture unless it has a global bound. This file is that sender, at any size, reproducibly.

Each flow (client 10.x.y.z:port -> 203.0.113.1:443) sends, round robin with every other flow:

* round 0: the first ``FIRST`` bytes of a ClientHello whose record claims ``RECORD`` bytes;
* then the bytes ``[FIRST, GAP_END)`` are never sent (a gap), so the record never becomes whole;
* every later round: one segment of ``--seg`` bytes inside the record, at the next of the
  record's ``--seg``-aligned slots after the gap (cycling, so after one pass every segment is an
  exact retransmission): inside the bytes the engine still needs, so the flow stays busy and
  never idles out.

The number of flows is ``--flows-per-gb`` x ``--gb``, so the concurrent unfinished handshakes
grow with the file; one round of every flow must fit in the engine's idle horizon (8 windows of
16 MiB), which ``--seg`` keeps (a warning says when it does not).

Output: classic pcap, Ethernet/IPv4/TCP, microsecond timestamps, written one round at a time
(numpy records, one write each), so an 8 GB file needs a few MB of memory.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_big_pcap import HDR_LEN, PACKET_HEADER, PCAP_GLOBAL_HEADER, START_EPOCH

#: Bytes the ClientHello record claims (under the 16 KiB record limit).
RECORD = 16_000
#: Bytes of the hello sent first; the next ``GAP_END - FIRST`` are never sent.
FIRST, GAP_END = 200, 400
#: The engine's idle horizon (8 windows of 16 MiB): a round must be shorter.
IDLE_HORIZON = 8 * 16 * 1024 * 1024
PSH_ACK = 0x18
SERVER_IP = (203 << 24) | (113 << 8) | 1


def first_payload() -> bytes:
    """The opening segment: a record header claiming ``RECORD`` bytes and the hello's start."""
    body = bytearray(FIRST)
    body[0:5] = bytes([0x16, 3, 1]) + RECORD.to_bytes(2, "big")
    body[5:9] = bytes([1]) + (RECORD - 4).to_bytes(3, "big")
    body[9:11] = b"\x03\x03"
    return bytes(body)


def round_records(flows: int, payload_len: int, rel: int, first: bytes | None, round_no: int,
                  isn: np.ndarray, t_usec: int) -> bytes:
    """One segment of every flow, interleaved, as pcap records."""
    dt = np.dtype([("h", PACKET_HEADER), ("p", "u1", (payload_len,))])
    rec = np.zeros(flows, dtype=dt)
    h = rec["h"]
    ts = t_usec + np.arange(flows, dtype=np.int64)
    h["ts_sec"], h["ts_usec"] = ts // 1_000_000, ts % 1_000_000
    h["incl_len"] = h["orig_len"] = HDR_LEN - 16 + payload_len
    h["eth_dst"] = np.array([2, 0, 0, 0, 0, 2], np.uint8)
    h["eth_src"] = np.array([2, 0, 0, 0, 0, 1], np.uint8)
    h["eth_type"] = 0x0800
    h["ip_vihl"], h["ip_ttl"], h["ip_proto"] = 0x45, 64, 6
    h["ip_len"] = 40 + payload_len
    h["ip_id"] = round_no & 0xFFFF
    i = np.arange(flows, dtype=np.uint32)
    h["ip_src"] = (10 << 24) | (i >> 6)
    h["ip_dst"] = SERVER_IP
    h["sport"] = 1024 + (i & 63)
    h["dport"] = 443
    h["seq"] = (isn + 1 + rel) & 0xFFFFFFFF
    h["ack"] = 1
    h["tcp_off"], h["tcp_flags"], h["tcp_win"] = 5 << 4, PSH_ACK, 65535
    if first is not None:
        rec["p"][:] = np.frombuffer(first, np.uint8)
    return rec.tobytes()


def build(path: Path, gb: float, flows_per_gb: int, seg: int, seed: int = 18) -> dict[str, float]:
    flows = max(1, int(flows_per_gb * gb))
    target = int(gb * (1 << 30))
    rng = np.random.default_rng(seed)
    isn = rng.integers(0, 1 << 32, flows, dtype=np.uint64).astype(np.uint32)
    round_bytes = flows * (HDR_LEN + seg)
    if round_bytes > IDLE_HORIZON:
        print(f"warning: one round is {round_bytes / 2**20:.0f} MiB, past the engine's idle horizon "
              f"({IDLE_HORIZON >> 20} MiB): flows will idle out; lower --seg", file=sys.stderr)
    slots = max(1, (RECORD + 5 - GAP_END) // seg)
    first = first_payload()
    written, round_no, t = len(PCAP_GLOBAL_HEADER), 0, START_EPOCH * 1_000_000
    with path.open("wb") as fh:
        fh.write(PCAP_GLOBAL_HEADER)
        fh.write(round_records(flows, FIRST, 0, first, 0, isn, t))
        written += flows * (HDR_LEN + FIRST)
        while written < target:
            round_no += 1
            t += flows
            rel = GAP_END + ((round_no - 1) % slots) * seg
            fh.write(round_records(flows, seg, rel, None, round_no, isn, t))
            written += round_bytes
    return {"bytes": written, "flows": flows, "rounds": round_no + 1, "round_mib": round_bytes / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--gb", type=float, default=1.0, help="file size in GiB (default 1)")
    ap.add_argument("--flows-per-gb", type=int, default=9_000,
                    help="concurrent unfinished handshakes per GiB of file (default 9000)")
    ap.add_argument("--seg", type=int, default=1330, help="payload bytes of a keep-alive segment (default 1330)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    info = build(args.output, args.gb, args.flows_per_gb, args.seg)
    print(f"{args.output}: {info['bytes'] / 2**30:.2f} GiB, {info['flows']:.0f} flows, {info['rounds']:.0f} rounds "
          f"of {info['round_mib']:.1f} MiB, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
