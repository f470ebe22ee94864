"""``stream/metrics.py``: the stream's counters on /metrics, rendered and served by prometheus_client."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from tlsdetect.stream.metrics import Metrics, MetricsUnavailableError, serve_metrics


def test_metrics_endpoint(tmp_path: Path) -> None:
    m = Metrics(lines_read=7, alerts=3, dead_letters=1, lag_bytes=10, sink_sent={"jsonl:x": 3}, sink_up={"jsonl:x": 1})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_metrics(m, port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        m.lines_read = 9
        text2 = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert "tlsdetect_stream_lines_read_total 7" in text
    assert "tlsdetect_stream_alerts_total 3" in text
    assert "tlsdetect_stream_dead_letters_total 1" in text
    assert "tlsdetect_stream_lag_bytes 10" in text
    assert 'tlsdetect_stream_alerts_sent_total{sink="jsonl:x"} 3' in text
    assert "tlsdetect_stream_lines_read_total 9" in text2


def test_names_types_and_labels() -> None:
    """Every metric the README and the end-to-end test name, with its type; sink labels escaped."""
    m = Metrics(lines_read=3, rows=2, alerts=1, dead_letters=1, batches=1, lag_bytes=5, lag_seconds=1.23456,
                sink_sent={'a"b': 1}, sink_rejected={'a"b': 0}, sink_up={'a"b': 1}, spool_bytes={'a"b': 7},
                weird={"broken JSON": 2}, records_in=3, skipped={"bad address": 1},
                capture={"ring_files_dropped": 3})
    text = m.prometheus()
    types = dict(x.split()[2:4] for x in text.splitlines() if x.startswith("# TYPE"))
    assert types == {
        "tlsdetect_stream_lines_read_total": "counter", "tlsdetect_stream_rows_total": "counter",
        "tlsdetect_stream_alerts_total": "counter", "tlsdetect_stream_dead_letters_total": "counter",
        "tlsdetect_stream_batches_total": "counter", "tlsdetect_stream_lag_bytes": "gauge",
        "tlsdetect_stream_lag_seconds": "gauge", "tlsdetect_stream_alerts_sent_total": "counter",
        "tlsdetect_stream_alerts_rejected_total": "counter", "tlsdetect_stream_sink_up": "gauge",
        "tlsdetect_stream_spool_bytes": "gauge", "tlsdetect_stream_alerts_dropped_total": "counter",
        "tlsdetect_stream_sink_held_alerts": "gauge", "tlsdetect_stream_alerts_deduped_total": "counter",
        "tlsdetect_stream_weird_total": "counter", "tlsdetect_stream_records_in_total": "counter",
        "tlsdetect_stream_skipped_total": "counter", "tlsdetect_stream_capture_total": "counter",
    }  # fmt: skip
    assert "tlsdetect_stream_records_in_total 3.0" in text
    assert 'tlsdetect_stream_skipped_total{reason="bad address"} 1.0' in text
    assert 'tlsdetect_stream_weird_total{name="broken JSON"} 2.0' in text
    assert 'tlsdetect_stream_capture_total{name="ring_files_dropped"} 3.0' in text
    assert "tlsdetect_stream_lag_seconds 1.235" in text
    assert 'tlsdetect_stream_spool_bytes{sink="a\\"b"} 7' in text
    assert "_created" not in text


def test_without_prometheus_client_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MetricsUnavailableError, match=r"tlsdetect\[serve\]"):
        Metrics().prometheus()
