"""The alert the sinks' tests share (``ALERT``), and ``score -f ecs|cef`` (``write_alerts``) rendering alerts as the
stream's sinks do. Each sink has its file: ``test_ecs.py``, ``test_syslog.py``, ``test_cef.py``, ``test_hec.py``,
``test_spool.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tlsdetect.sinks.alerts.cef import CefFileSink
from tlsdetect.sinks.alerts.ecs import JsonlSink

ALERT: dict[str, Any] = {
    "id": "0123456789abcdef0123456789abcdef",
    "ts": "2026-11-26T17:08:00.484Z",
    "client_ip": "10.1.2.3",
    "client_port": 40000,
    "server_ip": "10.9.9.9",
    "server_port": 443,
    "conn_id": "7",
    "sni": "api.example.test",
    "tls_version": "TLSv1.3",
    "ja3": "0cce74b0d9b7f8528fb2181588d23793",
    "ja4": "t13d591000_a33745022dd6_1f22a2ca17c4",
    "peer_subject": "CN=svc,O=Example",
    "peer_issuer": 'CN=mitmproxy,O=mitm|proxy "x"] = \\ y',
    "peer_cert_sha256": "ab" * 32,
    "server_issuer": "CN=Example Internal CA,O=Example",
    "server_subject": "CN=backend",
    "user_agent": "curl/8.5.0",
    "client_id": "spiffe://example/ns/a/sa/b",
    "issuer_class": "interception",
    "known_product": "mitmproxy",
    "score": 95.0,
    "verdict": "intercepted",
    "reasons": [{"code": "interception_ca", "detail": "a\nb", "expected": None, "observed": "CN=mitmproxy"}],
    "compared": "baseline",
    "file": "/var/log/envoy/access.log",
}


# ------------------------------------------------------------------------------ batch writers (score)


def test_write_alerts_renders_as_the_stream_sinks_do(tmp_path: Path) -> None:
    """issue 14 item 8: ``score -f ecs``/``-f cef`` write what ``stream --sink jsonl:``/``cef:`` write."""
    import io

    from tlsdetect.sinks.alerts.alerts import write_alerts
    from tlsdetect.sinks.files import ALERT_FORMATS

    other = {**ALERT, "id": "f" * 32, "verdict": "suspicious", "score": 40.0}
    streamed = {}
    for name, sink in (("ecs", JsonlSink(str(tmp_path / "a.jsonl"))), ("cef", CefFileSink(str(tmp_path / "a.cef")))):
        sink.send([ALERT, other])
        sink.close()
        streamed[name] = (tmp_path / ("a.jsonl" if name == "ecs" else "a.cef")).read_text(encoding="utf-8")
    for fmt in ALERT_FORMATS:
        buf = io.StringIO()
        write_alerts([ALERT, other], fmt, buf)
        assert buf.getvalue() == streamed[fmt]
    assert [json.loads(line)["event"]["id"] for line in streamed["ecs"].splitlines()] == [ALERT["id"], "f" * 32]
    with pytest.raises(ValueError, match="unknown alert format"):
        write_alerts([ALERT], "syslog", io.StringIO())


