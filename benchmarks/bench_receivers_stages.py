"""Where a receiver's time goes: each stage of the file, ALS and OTLP paths timed in one process.

The same N records (``bench_stream.Lines``, as ``bench_receivers.py``) through each stage, the three sources
alternating round robin, best of ``--rounds``, the load average beside each number:

* ``file``: Arrow's JSON parse of the lines to raw columns; typing and finishing (``block_frame``, ``finish``);
* ``als``/``otlp``: protobuf decode of the serialized messages; the mapping to columns (``als_columns``,
  ``otlp_columns``); the compiled walk that replaces both (``als_wire``, ``otlp_wire``: ALS entries formatted
  per message and, as the receiver does, once per batch); typing and finishing (``parse_envoy_records``);
* ``score``: ``enrich`` + ``score`` + ``alerts_of`` of the rows (the same for every source).

Typing and finishing run once per micro-batch; the ``batches of 1,000`` row shows its fixed cost per call.

    .venv/bin/python benchmarks/bench_receivers_stages.py [--records 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_receivers import _als_messages, _otlp_requests  # noqa: E402
from bench_stream import Lines, make_baseline  # noqa: E402


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    import pyarrow as pa
    from envoy.service.accesslog.v3 import als_pb2

    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import score
    from tlsdetect.fingerprint import enrich
    from tlsdetect.readers.envoy.als import Entries, als_columns
    from tlsdetect.readers.envoy.als_wire import decode_message, message_records
    from tlsdetect.readers.envoy.columns import block_frame
    from tlsdetect.readers.envoy.finish import finish
    from tlsdetect.readers.envoy.json import JsonReader
    from tlsdetect.readers.envoy.otlp import otlp_columns
    from tlsdetect.readers.envoy.otlp_wire import export_records
    from tlsdetect.readers.envoy.read import parse_envoy_records
    from tlsdetect.readers.logs import DeadLetter
    from tlsdetect.sinks.alerts.alerts import alerts_of

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.records
    svc = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
    baseline = Baseline.load(make_baseline(Path(tempfile.mkdtemp(prefix="bench-stages-"))))
    gen = Lines()
    lines = [gen.next()[0] for _ in range(n)]
    data = "".join(lines).encode()
    records = [json.loads(x) for x in lines]
    als_bytes = [m.SerializeToString() for m in _als_messages(records)]
    otlp_bytes = [m.SerializeToString() for m in _otlp_requests(records)]
    reader = JsonReader(None)
    x = Path("bench")
    state: dict[str, Any] = {}

    def file_json() -> None:
        state["chunk"] = reader.read_block(x, 1, data, DeadLetter())

    def file_finish() -> None:
        state["rows"] = finish(block_frame(state["chunk"], x, DeadLetter(), None), False)

    def als_decode() -> None:
        state["als"] = [als_pb2.StreamAccessLogsMessage.FromString(b) for b in als_bytes]

    def als_map() -> None:
        state["als_t"] = [als_columns(m).table() for m in state["als"]]

    def als_walk() -> None:
        [message_records(b).table() for b in als_bytes]

    def als_walk_batch() -> None:
        parts = [decode_message(b) for b in als_bytes]
        assert all(isinstance(p, Entries) for p in parts)
        Entries.concat(parts).table()

    def otlp_walk() -> None:
        [export_records(b).table() for b in otlp_bytes]

    def otlp_decode() -> None:
        state["otlp"] = [svc.ExportLogsServiceRequest.FromString(b) for b in otlp_bytes]

    def otlp_map() -> None:
        state["otlp_t"] = [otlp_columns(m).table() for m in state["otlp"]]

    def records_finish(key: str) -> Callable[[], None]:
        def run() -> None:  # the messages' tables merged into one batch, as the loop merges them
            parse_envoy_records(pa.concat_tables(state[key], promote_options="default"), source=x)

        return run

    def small_batches() -> None:  # the same records in batches of 1,000: the per-batch fixed cost
        for t in state["als_t"]:
            parse_envoy_records(t, source=x)

    def scoring() -> None:
        alerts_of(score(enrich(state["rows"]), baseline), "bench")

    stages: list[tuple[str, Callable[[], None]]] = [
        ("file: JSON parse (Arrow)", file_json), ("file: type + finish", file_finish),
        ("als: protobuf decode", als_decode), ("als: to columns", als_map),
        ("als: compiled walk + format per message", als_walk),
        ("als: compiled walk + format per batch", als_walk_batch),
        ("als: type + finish (one batch)", records_finish("als_t")),
        ("als: type + finish (batches of 1,000)", small_batches),
        ("otlp: protobuf decode", otlp_decode), ("otlp: to columns", otlp_map),
        ("otlp: compiled walk + columns", otlp_walk),
        ("otlp: type + finish (one batch)", records_finish("otlp_t")),
        ("score: enrich + score + alerts", scoring),
    ]  # fmt: skip
    best: dict[str, tuple[float, str]] = {}
    cpu: dict[str, float] = {}
    for r in range(args.rounds):
        for name, run in stages:
            load = _load()
            t, c = time.perf_counter(), time.process_time()
            run()
            rate, cpu_us = n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6
            print(json.dumps({"round": r + 1, "stage": name, "records_per_s": round(rate), "cpu_us_per_record":
                              round(cpu_us, 1), "load": load}), flush=True)  # fmt: skip
            if rate > best.get(name, (0.0, ""))[0]:
                best[name] = (rate, load)
            cpu[name] = min(cpu.get(name, cpu_us), cpu_us)
    print(f"\n| stage | records/s (best of {args.rounds}) | ms per 10k | CPU us per record (least) | load (1 min) |\n"
          "| --- | ---: | ---: | ---: | --- |")  # fmt: skip
    for name, (rate, load) in best.items():
        print(f"| {name} | {rate:,.0f} | {1e7 / rate:,.0f} | {cpu[name]:.1f} | {load} |")


if __name__ == "__main__":
    main()
