"""``tlsdetect stream`` fed by its receivers (Envoy gRPC ALS, OTLP over gRPC) against the file follower.

The same N real-shaped Envoy records (``bench_stream.Lines``: the shared Envoy sample replayed with fresh
addresses; 1% alerts) go to ``tlsdetect stream`` three ways, in the same run, alternating round robin:

* ``file``: ``--source envoy:FILE`` without ``--follow`` (a catch-up run), wall time including start-up;
* ``als``: ``--source envoy-als://``; a gRPC client streams ``HTTPAccessLogEntry`` messages of 1,000 entries;
* ``otlp``: ``--source otlp://``; a gRPC client sends ``Export`` requests of 1,000 records whose attributes are
  the JSON lines' keys (what Envoy's OpenTelemetry logger sends when configured like the file logger).

For the receivers the clock runs from the first message sent until the stream's ``/metrics`` says every record
was scored (``tlsdetect_stream_rows_total``); the stream is started and listening before, and has scored one
warm-up message (a receiver is a long-running process, so its start-up is not part of its rate). Messages are
built before the clock starts. Each line of output is one JSON object (best of ``--rounds``, with the load
average, and the stream's CPU per record); a Markdown summary goes to ``benchmarks/results/receivers-<date>.md``.

``--tree LABEL=PATH`` (repeatable) runs ``tlsdetect stream`` from other checkouts too (``PYTHONPATH=PATH``),
alternating with the sources, so a change is measured against the tree before it in the same run.

    .venv/bin/python benchmarks/bench_receivers.py [--records 200000] [--rounds 3] [--suffix b]
                                                   [--tree before=/tmp/old-checkout --tree after=.]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_stream import Lines, make_baseline  # noqa: E402

TLSDETECT = [sys.executable, "-m", "tlsdetect"]
BATCH = 1000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _als_messages(records: list[dict[str, Any]]) -> list[Any]:
    from envoy.data.accesslog.v3 import accesslog_pb2
    from envoy.service.accesslog.v3 import als_pb2

    versions = {"TLSv1.2": accesslog_pb2.TLSProperties.TLSv1_2, "TLSv1.3": accesslog_pb2.TLSProperties.TLSv1_3}
    out = []
    for i in range(0, len(records), BATCH):
        msg = als_pb2.StreamAccessLogsMessage()
        msg.identifier.log_name = "bench"
        for rec in records[i : i + BATCH]:
            e = msg.http_logs.log_entry.add()
            c = e.common_properties
            c.start_time.FromJsonString(rec["start_time"])
            for field, key in (("downstream_remote_address", "downstream_remote_address"),
                               ("downstream_local_address", "downstream_local_address")):  # fmt: skip
                host, _, port = str(rec.get(key) or "0.0.0.0:0").rpartition(":")
                getattr(c, field).socket_address.address = host.strip("[]")
                getattr(c, field).socket_address.port_value = int(port or 0)
            t = c.tls_properties
            t.tls_sni_hostname = str(rec.get("requested_server_name") or "")
            t.tls_version = versions.get(str(rec.get("downstream_tls_version")), 0)
            t.ja3_fingerprint = str(rec.get("ja3") or "")
            for k, attr in (("downstream_peer_subject", "subject"), ("downstream_peer_issuer", "issuer")):
                v = rec.get(k)
                if v and v != "-":
                    setattr(t.peer_certificate_properties, attr, str(v))
            e.request.user_agent = str(rec.get("user_agent") or "")
        out.append(msg)
    return out


def _otlp_requests(records: list[dict[str, Any]]) -> list[Any]:
    svc = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
    out = []
    for i in range(0, len(records), BATCH):
        req = svc.ExportLogsServiceRequest()
        resource = req.resource_logs.add()
        scopes = getattr(resource, "scope_logs", None)
        holder = (scopes if scopes is not None else resource.instrumentation_library_logs).add()
        logs = getattr(holder, "log_records", None)
        logs = logs if logs is not None else holder.logs
        for rec in records[i : i + BATCH]:
            log = logs.add()
            for k, v in rec.items():
                kv = log.attributes.add()
                kv.key = k
                kv.value.string_value = str(v)
        out.append(req)
    return out


def _rows(metrics_port: int) -> int:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("tlsdetect_stream_rows_total "):
            return int(float(line.split()[1]))
    return -1


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env(tree: Path) -> dict[str, str]:
    """The tree's own code: ``python -m`` puts the working directory first on sys.path, so the run's cwd is
    the tree too (with only PYTHONPATH set, every tree would import the checkout the bench runs from)."""
    return {**os.environ, "PYTHONPATH": str(tree)}


def run_file(work: Path, baseline: Path, log: Path, n: int, tree: Path = ROOT) -> tuple[float, float]:
    """(records/s, CPU us per record) of a catch-up run, start-up included."""
    state = work / "state-file"
    shutil.rmtree(state, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([*TLSDETECT, "stream", "--baseline", str(baseline), "--source", f"envoy:{log}", "--sink",
                    f"jsonl:{work / 'alerts-file.jsonl'}", "--state", str(state), "--batch-lines", "20000"],
                   capture_output=True, text=True, check=True, env=_env(tree), cwd=tree)  # fmt: skip
    rate = n / (time.perf_counter() - t)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return rate, cpu / n * 1e6


def run_pushed(work: Path, baseline: Path, kind: str, messages: list[Any], n: int, tree: Path = ROOT
               ) -> tuple[float, float]:
    """(records/s, the stream's CPU us per record) from the first message to the last row scored."""
    import grpc

    port, mport = _port(), _port()
    state = work / f"state-{kind}"
    shutil.rmtree(state, ignore_errors=True)
    scheme = "envoy-als" if kind == "als" else "otlp"
    err = (work / f"{kind}.stderr").open("wb")
    proc = subprocess.Popen([*TLSDETECT, "stream", "--baseline", str(baseline), "--source", f"{scheme}://127.0.0.1:{port}",
                             "--sink", f"jsonl:{work / f'alerts-{kind}.jsonl'}", "--state", str(state),
                             "--metrics-port", str(mport), "--batch-lines", "20000", "--batch-ms", "50"],
                            stdout=subprocess.DEVNULL, stderr=err, env=_env(tree), cwd=tree)  # fmt: skip
    try:
        end = time.monotonic() + 60
        while _rows(mport) < 0 or b"receiving on" not in (work / f"{kind}.stderr").read_bytes():
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"stream did not start: {(work / f'{kind}.stderr').read_text()[-500:]}")
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            if kind == "als":
                from envoy.service.accesslog.v3 import als_pb2

                stream = ch.stream_unary("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
                                         request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
                                         response_deserializer=als_pb2.StreamAccessLogsResponse.FromString)  # fmt: skip

                def send(batch: list[Any]) -> None:
                    stream(iter(batch), timeout=600)
            else:
                svc = importlib.import_module("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
                unary = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                       request_serializer=svc.ExportLogsServiceRequest.SerializeToString,
                                       response_deserializer=svc.ExportLogsServiceResponse.FromString)  # fmt: skip

                def send(batch: list[Any]) -> None:
                    for m in batch:
                        unary(m, timeout=600)

            # warm-up, off the clock: the first batch pays the scoring modules' lazy imports and caches (a
            # receiver is long-running); its records are scored again in the timed part
            send(messages[:1])
            warm = BATCH
            while _rows(mport) < warm:
                if proc.poll() is not None:
                    raise RuntimeError("stream died")
                time.sleep(0.01)
            t, cpu = time.perf_counter(), _cpu(proc.pid)
            send(messages)
            while _rows(mport) < warm + n:
                if proc.poll() is not None:
                    raise RuntimeError("stream died")
                time.sleep(0.01)
            return n / (time.perf_counter() - t), (_cpu(proc.pid) - cpu) / n * 1e6
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--suffix", default="", help="results file receivers-<date>-<suffix>.md (another run)")
    ap.add_argument("--tree", action="append", default=[], help="LABEL=PATH: also run stream from this checkout")
    args = ap.parse_args()
    trees = [(label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in args.tree)] or [
        ("", ROOT)]
    work = Path(tempfile.mkdtemp(prefix="bench-receivers-"))
    try:
        baseline = make_baseline(work)
        gen = Lines()
        lines = [gen.next()[0] for _ in range(args.records)]
        log = work / "big.log"
        log.write_text("".join(lines))
        records = [json.loads(x) for x in lines]
        messages = {"als": _als_messages(records), "otlp": _otlp_requests(records)}
        best: dict[str, tuple[float, str]] = {}
        cpu: dict[str, float] = {}
        runs: list[str] = []
        for r in range(args.rounds):
            for source in ("file", "als", "otlp"):
                for label, tree in trees:
                    kind = f"{source} ({label})" if label else source
                    load = _load()
                    if source == "file":
                        rate, cpu_us = run_file(work, baseline, log, args.records, tree)
                    else:
                        rate, cpu_us = run_pushed(work, baseline, source, messages[source], args.records, tree)
                    print(json.dumps({"round": r + 1, "source": kind, "records": args.records,
                                      "records_per_s": round(rate), "cpu_us_per_record": round(cpu_us, 1),
                                      "load": load}), flush=True)  # fmt: skip
                    runs.append(f"| {r + 1} | {kind} | {rate:,.0f} | {cpu_us:.1f} | {load} |")
                    if rate > best.get(kind, (0.0, ""))[0]:
                        best[kind] = (rate, load)
                    cpu[kind] = min(cpu.get(kind, cpu_us), cpu_us)
        file_best = max(v[0] for k, v in best.items() if k.startswith("file"))
        for kind, (rate, load) in best.items():
            print(json.dumps({"best_of": args.rounds, "source": kind, "records_per_s": round(rate), "load": load,
                              "vs_file": round(rate / file_best, 2), "least_cpu_us_per_record": round(cpu[kind], 1),
                              "records_per_cpu_s": round(1e6 / cpu[kind])}))  # fmt: skip
        day = dt.date.today().isoformat()
        out = ROOT / "benchmarks" / "results" / f"receivers-{day}{'-' + args.suffix if args.suffix else ''}.md"
        rows = "\n".join(f"| {k} | {v[0]:,.0f} | {v[0] / file_best:.2f} | {cpu[k]:.1f} | {1e6 / cpu[k]:,.0f} | {v[1]} |"
                         for k, v in best.items())  # fmt: skip
        out.write_text(
            f"# Receivers vs the file follower ({day})\n\n`benchmarks/bench_receivers.py --records {args.records} "
            f"--rounds {args.rounds}`; same run, sources alternating, best of {args.rounds}. `file` includes the "
            "CLI's start-up; the receivers are timed from the first message to the last row scored.\n\n"
            "The stream's CPU (user + system, all its threads; for `file` the whole run) per record is the steadier "
            "figure on a shared machine: records per CPU-second is the rate one free core would give.\n\n"
            f"| source | records/s | vs file | CPU us per record (least) | records per CPU-second | load (1 min) at "
            f"the best round |\n| --- | ---: | ---: | ---: | ---: | --- |\n{rows}\n\n"
            f"All rounds:\n\n| round | source | records/s | CPU us per record | load (1 min) |\n"
            "| ---: | --- | ---: | ---: | --- |\n"
            + "\n".join(runs) + "\n"
        )
        print(f"wrote {out}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.environ.get("TLSDETECT_SHARED") is None and not (ROOT.parent / "shared").exists():
        sys.exit("needs the shared corpus (../shared or TLSDETECT_SHARED)")
    main()
