"""``sinks/alerts/ecs.py``: alerts as ECS documents, and the JSON-lines sink that dedupes on restart."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_sinks_stream import ALERT
from tlsdetect.sinks.alerts.ecs import JsonlSink, flatten, to_ecs


def test_ecs_field_names() -> None:
    flat = flatten(to_ecs(ALERT))
    assert flat["tls.client.ja3"] == ALERT["ja3"]
    assert flat["tls.server.x509.issuer.distinguished_name"] == ALERT["server_issuer"]
    assert flat["tls.client.x509.issuer.distinguished_name"] == ALERT["peer_issuer"]
    assert flat["tls.client.x509.subject.distinguished_name"] == ALERT["peer_subject"]
    assert flat["tls.client.hash.sha256"] == ALERT["peer_cert_sha256"]
    assert flat["tls.client.server_name"] == "api.example.test"
    assert flat["tls.version"] == "1.3"
    assert flat["tls.version_protocol"] == "tls"
    assert flat["tlsdetect.ja4"] == ALERT["ja4"]  # the documented custom field
    assert flat["source.ip"] == "10.1.2.3"
    assert flat["source.port"] == 40000
    assert flat["destination.port"] == 443
    assert flat["event.id"] == ALERT["id"]
    assert flat["event.kind"] == "alert"
    assert flat["event.reason"] == "interception_ca"
    assert flat["@timestamp"] == ALERT["ts"]
    assert flat["user_agent.original"] == "curl/8.5.0"
    assert flat["tlsdetect.reasons"][0]["code"] == "interception_ca"
    assert "tls.client.ja4" not in flat


def test_ecs_omits_missing() -> None:
    flat = flatten(to_ecs({**ALERT, "ja3": None, "sni": "", "server_issuer": None}))
    assert "tls.client.ja3" not in flat
    assert "tls.client.server_name" not in flat
    assert not any(k.startswith("tls.server.x509.issuer") for k in flat)


def test_jsonl_sink_dedupes_on_restart(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    sink = JsonlSink(str(out))
    sink.send([ALERT, {**ALERT, "id": "b" * 32}])
    sink.close()
    again = JsonlSink(str(out))  # a replay after a crash
    again.send([{**ALERT, "id": "b" * 32}, {**ALERT, "id": "c" * 32}])
    again.close()
    ids = [json.loads(line)["event"]["id"] for line in out.read_text().splitlines()]
    assert ids == [ALERT["id"], "b" * 32, "c" * 32]



def test_server_side_fields() -> None:
    """issue 16 item 7: the server's side: IANA cipher name, version by protocol, resumption, flight size."""
    flat = flatten(to_ecs({**ALERT, "sh_cipher": 0x1302, "resumed": False, "server_flight_bytes": 4242}))
    assert flat["tls.cipher"] == "TLS_AES_256_GCM_SHA384"
    assert flat["tls.resumed"] is False  # a known False is written; only missing values are left out
    assert flat["tlsdetect.server_flight_bytes"] == 4242
    assert "tls.resumed" not in flatten(to_ecs({**ALERT, "resumed": None}))
    assert flatten(to_ecs({**ALERT, "sh_cipher": 0xFEFE}))["tls.cipher"] == "0xFEFE"
    for version, number, protocol in (("TLSv1.2", "1.2", "tls"), ("DTLSv1.2", "1.2", "dtls"), ("SSLv3", "3.0", "ssl")):
        got = flatten(to_ecs({**ALERT, "tls_version": version}))
        assert (got["tls.version"], got["tls.version_protocol"]) == (number, protocol)
    for odd in ("0x7f12", "TLSv", None):
        got = flatten(to_ecs({**ALERT, "tls_version": odd}))
        assert "tls.version" not in got
        assert "tls.version_protocol" not in got


def test_ecs_carries_the_server_side_of_real_alerts() -> None:
    """issue 16 item 7: the alerts of real captures carry ``tls.server.ja3s`` and ``tls.cipher``, as scored."""
    from tests.conftest import require_shared
    from tlsdetect.detect.scoring import score
    from tlsdetect.readers.inputs import Inputs
    from tlsdetect.sinks.alerts.alerts import alerts_of
    from tlsdetect.wire.ciphers import cipher_name

    scored = score(Inputs([str(require_shared("pcaps/interception"))]).read_all(), None)
    alerts = alerts_of(scored)
    with_server = [a for a in alerts if a.get("ja3s")]
    assert with_server, "the interception captures have ServerHellos"
    for alert in alerts:
        flat = flatten(to_ecs(alert))
        assert flat.get("tls.server.ja3s") == alert.get("ja3s")
        assert flat.get("tls.cipher") == cipher_name(alert.get("sh_cipher"))
    assert all(not flatten(to_ecs(a))["tls.cipher"].startswith("0x") for a in with_server)


def test_wire_text_keeps_its_exact_value_in_json(tmp_path: Path) -> None:
    """JSON escapes what must be escaped itself: the ECS line holds no raw newline, and the value read back is
    exactly what came off the wire (no second escape as the text outputs apply: sinks.escape)."""
    hostile = {"sni": "\x1b]0;t\x07a\nb\\x{1b}", "peer_issuer": "CN=\u202egoogle\u2028", "user_agent": "[/x]\r\x85"}
    sink = JsonlSink(str(tmp_path / "a.jsonl"))
    sink.send([{**ALERT, **hostile}])
    sink.close()
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").split("\n")
    assert len(lines) == 2
    assert lines[1] == ""
    flat = flatten(json.loads(lines[0]))
    assert flat["tls.client.server_name"] == hostile["sni"]
    assert flat["tls.client.x509.issuer.distinguished_name"] == hostile["peer_issuer"]
    assert flat["user_agent.original"] == hostile["user_agent"]
