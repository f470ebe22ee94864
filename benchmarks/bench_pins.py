"""What report-only pinning costs: ``pins check`` alone, and ``score`` with and without ``--pins``.

The table is the project's two TLS 1.2 captures (mitmproxy's forged legs and the clean stacks)
repeated to ROWS rows: few distinct (name, chain) pairs behind many rows, as on a real network. The
pin set pins the sample intermediate (suggested from the clean capture). The three timings
alternate round robin, best of 3, the load average beside each round::

    PYTHONPATH=. python benchmarks/bench_pins.py [ROWS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tlsdetect import schema
from tlsdetect.detect.pin_signals import Policies
from tlsdetect.detect.scoring import score
from tlsdetect.pins.check import check
from tlsdetect.pins.policy import read_policies
from tlsdetect.pins.suggest import pinfile_text, suggest
from tlsdetect.readers.pcap.engine import read_pcap

ROOT = Path(__file__).resolve().parents[1]


def main(rows: int) -> None:
    import datetime as dt

    df, _ = read_pcap([ROOT / "pcaps" / "intercepted.pcapng", ROOT / "pcaps" / "tls12_stacks.pcap"])
    big = schema.concat([df] * max(1, rows // len(df)))
    clean, _ = read_pcap(ROOT / "pcaps" / "tls12_stacks.pcap")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.pins"
        path.write_text(pinfile_text(suggest(clean)[0], dt.date(2027, 3, 1)))
        pol = read_policies([path])
    best = {"check": 1e9, "score": 1e9, "score+pins": 1e9}
    for rnd in range(3):
        t = time.perf_counter()
        report = check(pol, big)
        a = time.perf_counter() - t
        t = time.perf_counter()
        score(big, None)
        b = time.perf_counter() - t
        t = time.perf_counter()
        score(big, None, policies=Policies(pins=pol))
        c = time.perf_counter() - t
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"round {rnd}: rows={len(big)} check={a:.2f}s score={b:.2f}s score+pins={c:.2f}s load={load} "
              f"violations={report.violations}")
        best = {"check": min(best["check"], a), "score": min(best["score"], b),
                "score+pins": min(best["score+pins"], c)}
    print(f"best of 3: check={best['check']:.2f}s score={best['score']:.2f}s score+pins={best['score+pins']:.2f}s "
          f"ratio score+pins/score={best['score+pins'] / best['score']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
