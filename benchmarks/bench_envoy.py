"""Envoy JSON access logs: ``read_envoy`` to the connections table vs a plain ``pandas.read_json``.

Generates N realistic lines (default 1,000,000) with the shapes of the sample Envoy 1.40 log
(``../shared/samples/envoy``: mTLS listener, one HTTP line and one listener line per connection,
the same 30 keys, nulls where Envoy writes null), times both readers on the same file in one run,
prints a Markdown table and writes ``benchmarks/results/envoy-<date>.md``.

    .venv/bin/python benchmarks/bench_envoy.py [--lines 1000000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tlsdetect.fingerprint import enrich
from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.logs import DeadLetter

ROOT = Path(__file__).resolve().parents[1]

CLIENTS = [  # (subject CN, ja3, ja4, user agent) as in the sample's real clients
    ("node", "0cce74b0d9b7f8528fb2181588d23793", "t13d591000_a33745022dd6_1f22a2ca17c4", "node/20.20.2"),
    ("go", "3fed133de60c35724739b913924b6c24", "t13d1910h2_9dc949149365_97f8aa674fd9", "go-http-client"),
    ("java", "eea0a26d87c4721f5818bb176368f238", "t13d3713h2_db35923f8641_7c76daad20ec", "Java-http-client/17.0.15"),
    ("java25", "bddb16608b241c89053080cf80771423", "t13d3113h2_1d947a95fc68_7e1102d2036b", "Java-http-client/25.0.3"),
    ("curl", "bb4f9fef542ff6b4b29aa653bf0c1d31", "t13d291300_723694b0fccc_899037bd0b8c", "Wget/1.21.3"),
]
ISSUER = "CN=Example Corp Internal Root CA,OU=Corporate Security,O=Example Corp,C=US"


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 11, 26, 17, 0, tzinfo=dt.UTC)
    with open(path, "w", encoding="utf-8") as fh:
        conn = 0
        written = 0
        while written < n:
            conn += 1
            cn, ja3, ja4, ua = rng.choice(CLIENTS)
            addr = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}:{rng.randrange(1024, 65535)}"
            if rng.random() < 0.05:
                addr = f"[fd00::{rng.randrange(1, 65535):x}]:{rng.randrange(1024, 65535)}"
            start = t0 + dt.timedelta(milliseconds=conn * 3)
            common = {
                "connection_id": conn,
                "downstream_local_address": "10.0.0.1:10443",
                "downstream_peer_cert_v_end": "2036-11-23T17:02:55.000Z",
                "downstream_peer_fingerprint_256": f"{rng.getrandbits(256):064x}",
                "downstream_peer_issuer": ISSUER,
                "downstream_peer_serial": f"{rng.getrandbits(160):040x}",
                "downstream_peer_subject": f"CN={cn}.clients.example.internal,OU=Workloads,O=Example Corp,C=US",
                "downstream_remote_address": addr,
                "downstream_tls_cipher": "TLS_AES_256_GCM_SHA384",
                "downstream_tls_session_id": None,
                "downstream_tls_version": "TLSv1.3",
                "ja3": ja3,
                "ja4": ja4,
                "listener": "mtls",
                "protocol": "HTTP/2",
                "requested_server_name": "mtls.tlsdetect.test",
                "response_flags": "-",
            }
            http = {
                **common,
                "access_log_type": "DownstreamEnd",
                "authority": "mtls.tlsdetect.test:10443",
                "log_source": "http",
                "method": "GET",
                "path": f"/api/{rng.randrange(1000)}",
                "response_code": 200,
                "start_time": (start + dt.timedelta(milliseconds=30)).isoformat(timespec="milliseconds")[:-6] + "Z",
                "upstream_cluster": "backend_internal",
                "upstream_host": "10.0.0.2:8600",
                "upstream_peer_issuer": ISSUER,
                "upstream_peer_subject": "CN=backend.tlsdetect.test,O=Example Corp,C=US",
                "upstream_tls_version": "TLSv1.2",
                "user_agent": ua,
            }
            listener = {
                **common,
                "access_log_type": "NotSet",
                "authority": None,
                "log_source": "listener",
                "method": None,
                "path": None,
                "response_code": 0,
                "start_time": start.isoformat(timespec="milliseconds")[:-6] + "Z",
                "upstream_cluster": None,
                "upstream_host": None,
                "upstream_peer_issuer": None,
                "upstream_peer_subject": None,
                "upstream_tls_version": None,
                "user_agent": None,
            }
            for obj in (http, listener):
                if written < n:
                    fh.write(json.dumps(dict(sorted(obj.items())), separators=(",", ":")) + "\n")
                    written += 1


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="write the generated log here and keep it")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    tmp = None
    if args.keep is not None:
        path = args.keep
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "envoy_access.jsonl"
    t_gen, _ = timed(lambda: generate(path, args.lines))
    size = path.stat().st_size
    print(f"generated {args.lines:,} lines, {size / 1e6:.0f} MB in {t_gen:.1f} s: {path}")

    dead = DeadLetter()
    t_env, df = timed(lambda: enrich(read_envoy([path], dead_letter=dead)))
    t_col, dfc = timed(lambda: enrich(read_envoy([path], collapse=True)))
    t_pd, raw = timed(lambda: pd.read_json(path, lines=True))
    assert len(df) == args.lines == len(raw), (len(df), len(raw))
    assert dead.stats.bad_lines == 0

    rows = [
        ("`pandas.read_json(path, lines=True)` (raw keys, no mapping)", t_pd, len(raw)),
        ("`read_envoy([path])` (connections table, issuer keys)", t_env, len(df)),
        ("`read_envoy([path], collapse=True)` (one row per connection)", t_col, len(dfc)),
    ]
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines = [
        f"# Envoy JSON access log: {args.lines:,} lines, {size / 1e6:.0f} MB ({date})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pandas {pd.__version__}, pyarrow {pa.__version__}. Generated by `benchmarks/bench_envoy.py` "
        "(shapes of the shared Envoy 1.40 sample, 5% IPv6 clients); one run, warm page cache.",
        "",
        "| reader | seconds | lines/s | rows |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, sec, n in rows:
        lines.append(f"| {name} | {sec:.2f} | {args.lines / sec:,.0f} | {n:,} |")
    lines += ["", f"`read_envoy` vs `pandas.read_json`: {t_pd / t_env:.1f}x faster."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"envoy-{date}.md").write_text(text)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
