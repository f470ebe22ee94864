"""Suricata EVE ``quic`` events (``tlsdetect/readers/suricata_quic.py``): one row per flow, transport quic.

Records follow Suricata's EVE documentation and ``rust/src/quic/logger.rs`` (``version``, ``sni``, ``ua``,
``cyu``, ``ja3``/``ja3s`` objects, ``ja4``, ``extensions`` with ``name``/``type``/``values``); addresses are
documentation ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tlsdetect.readers.logs import DeadLetter, LogStats
from tlsdetect.readers.suricata import read_suricata

FLOW = {"flow_id": 1676750115612680, "src_ip": "192.0.2.17", "src_port": 53727, "dest_ip": "198.51.100.15",
        "dest_port": 443, "proto": "UDP", "app_proto": "quic"}
CLIENT = {**FLOW, "timestamp": "2026-12-07T10:00:00.100000+0000", "event_type": "quic", "quic": {
    "version": "1", "sni": "api.example.com",
    "ja3": {"hash": "324f8c50e267adba4b5dd06c964faf67",
            "string": "771,4865-4866-4867,51-43-13-27-17513-16-45-0-10-57,29-23-24,"},
    "ja4": "q13d0310h3_55b375c5d22e_cd85d2d88918",
    "extensions": [{"name": "server_name", "type": 0, "values": ["api.example.com"]},
                   {"name": "application_layer_protocol_negotiation", "type": 16, "values": ["h3"]}]}}
SERVER = {**FLOW, "timestamp": "2026-12-07T10:00:00.120000+0000", "event_type": "quic", "quic": {
    "version": "1", "ja3s": {"hash": "eb1d94daa7e0344597e756a1fb6e7054", "string": "771,4865,51-43"}}}
SHORT = {**FLOW, "timestamp": "2026-12-07T10:00:00.200000+0000", "event_type": "quic", "quic": {}}
TLS = {**FLOW, "flow_id": 7, "proto": "TCP", "app_proto": "tls", "timestamp": "2026-12-07T10:00:01+0000",
       "event_type": "tls", "tls": {"sni": "www.example.com", "version": "TLS 1.3",
                                    "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}}


def _eve(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_events_of_a_quic_flow_are_one_row_with_client_and_server_fingerprints(tmp_path: Path) -> None:
    dl = DeadLetter(stats=LogStats())
    df = read_suricata([_eve(tmp_path, [CLIENT, SERVER, SHORT, TLS])], dead_letter=dl)
    assert len(df) == 2
    q = df[df["transport"] == "quic"].iloc[0]
    assert (q["sni"], q["alpn"], q["ja4"], q["ja3"], q["ja3s"], q["quic_version"]) == (
        "api.example.com", "h3", "q13d0310h3_55b375c5d22e_cd85d2d88918", "324f8c50e267adba4b5dd06c964faf67",
        "eb1d94daa7e0344597e756a1fb6e7054", "1")
    assert (q["client_ip"], int(q["client_port"]), q["server_ip"], int(q["server_port"])) == (
        "192.0.2.17", 53727, "198.51.100.15", 443)
    assert q["conn_id"] == "1676750115612680"
    assert str(q["ts"]) == "2026-12-07 10:00:00.100000+00:00"
    assert q["fingerprint_origin"] == "suricata"
    assert df[df["transport"] == "tcp"]["ja4"].tolist() == [TLS["tls"]["ja4"]]
    st = dl.stats
    assert st.reasons["quic-folded"] == 2
    assert st.rows + st.bad_lines + st.reasons.get("not-tls", 0) + st.reasons["quic-folded"] == st.lines


def test_flows_without_flow_id_fold_by_their_endpoints_either_way(tmp_path: Path) -> None:
    c = {k: v for k, v in CLIENT.items() if k != "flow_id"}
    s = {**{k: v for k, v in SERVER.items() if k != "flow_id"}, "src_ip": FLOW["dest_ip"], "src_port": 443,
         "dest_ip": FLOW["src_ip"], "dest_port": 53727}
    df = read_suricata([_eve(tmp_path, [s, c])])
    assert len(df) == 1
    assert df.iloc[0]["client_ip"] == "192.0.2.17"  # from the client's event, though it came second
    assert df.iloc[0]["ja3s"] == "eb1d94daa7e0344597e756a1fb6e7054"


def test_a_quic_event_with_a_bad_timestamp_is_a_dead_letter_not_a_crash(tmp_path: Path) -> None:
    dl = DeadLetter(stats=LogStats())
    df = read_suricata([_eve(tmp_path, [{**CLIENT, "timestamp": "yesterday"}, SERVER])], dead_letter=dl)
    assert len(df) == 1
    assert pd.isna(df.iloc[0]["ja4"])  # missing, whatever the column's dtype (ja4 is a categorical)
    assert dl.stats.bad_lines == 1
