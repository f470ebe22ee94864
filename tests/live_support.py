"""The network-namespace side of the live-capture tests: run under ``unshare -n`` by them.

``python -m tests.live_support clients OUT`` brings ``lo`` up in the new namespace, starts a real
``openssl s_server``, captures ``lo`` with :class:`~tlsdetect.stream.live_capture.LiveCapture`
(dumpcap, the BPF, the ring) and, beside it, an unfiltered ``dumpcap`` of the same traffic; runs
real clients (``openssl s_client`` with distinct SNIs, TLS 1.2 and 1.3, and ``curl``); then writes
to OUT the live rows and the rows ``tlsdetect fingerprint`` gives for the unfiltered capture.
``replay OUT PCAP [BPF]`` does the same with ``tcpreplay --topspeed`` of a capture instead of clients
(BPF: a capture filter instead of the built-in one).
Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from tlsdetect.fingerprint import enrich
from tlsdetect.stream.live_capture import LiveCapture

COLS = ["sni", "ja3", "ja4", "ja3s", "tls_version", "client_port", "server_issuer"]


def _rows(df: pd.DataFrame) -> list[list[str]]:
    """The compared columns as text, missing values as one token (CSV and frames spell them differently)."""
    cells = df[COLS].astype(object).to_numpy().tolist()
    return sorted([["<NA>" if v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)
                    for v in row] for row in cells])


def _server(tmp: Path) -> subprocess.Popen[bytes]:
    key, cert = tmp / "k.pem", tmp / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=live.test", "-days", "1"],
                   check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen(["openssl", "s_server", "-accept", "4433", "-cert", cert, "-key", key, "-www",
                               "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.3)
    return server


def _clients() -> int:
    n = 0
    for i, version in enumerate(["-tls1_3", "-tls1_2", "-tls1_3", "-tls1_2"]):
        subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:4433", "-servername", f"c{i}.live.test",
                        version], input=b"Q\n", capture_output=True, timeout=10, check=False)  # fmt: skip
        n += 1
    subprocess.run(["curl", "-sk", "--max-time", "5", "-o", "/dev/null", "https://127.0.0.1:4433/"],
                   capture_output=True, timeout=10, check=False)  # fmt: skip
    return n + 1


def main(mode: str, out: Path, pcap: str | None = None, bpf: str | None = None) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="live-"))
    server = _server(tmp) if mode == "clients" else None
    full = tmp / "full.pcapng"
    witness = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-w", str(full)], stderr=subprocess.DEVNULL)
    live = LiveCapture("lo", tmp / "spool", ring_seconds=1, bpf=bpf)
    while not full.exists():
        time.sleep(0.05)
    time.sleep(0.5)
    if mode == "clients":
        expected = _clients()
    else:
        assert pcap is not None
        subprocess.run(["tcpreplay", "-q", "--topspeed", "-i", "lo", pcap], check=True, capture_output=True)
        expected = -1
        time.sleep(1.5)  # the ring's last file closes
        live.stop_capture()  # dumpcap ends: what it wrote is read to the end, then the source ends
    parts: list[pd.DataFrame] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not live.ended:
        batch = live.read(10_000)
        if batch is not None:
            parts.append(pickle.loads(batch.data))  # our own engine's rows
        elif 0 <= expected <= sum(len(p) for p in parts):
            break
        else:
            time.sleep(0.05)
    live.close()
    witness.send_signal(signal.SIGTERM)
    witness.wait()
    if server is not None:
        server.terminate()
    fp = tmp / "fp.csv"
    subprocess.run([sys.executable, "-m", "tlsdetect", "fingerprint", "-f", "csv", "-o", str(fp), "--no-progress",
                    str(full)], check=True, capture_output=True)  # fmt: skip
    got = enrich(pd.concat(parts, ignore_index=True)) if parts else pd.DataFrame(columns=COLS)
    want = pd.read_csv(fp, dtype=str, keep_default_na=False)
    out.write_text(json.dumps({"live": _rows(got), "fingerprint": _rows(want), "expected": expected,
                               "capture": live.metrics.capture, "events": live.events}))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
