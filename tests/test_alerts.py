"""``sinks/alerts/alerts.py``: alerts of the flagged rows, and their stable ids."""

from __future__ import annotations

import pandas as pd

from tlsdetect.sinks.alerts.alerts import ALERT_FIELDS, ID_FIELDS, alert_id, alerts_of


def test_alert_id_is_stable_and_connection_based() -> None:
    a = alert_id(["2026-01-01T00:00:00Z", "10.0.0.1", 1, "10.0.0.2", 443, "7", "j4", "j3", "sha", "sni"])
    assert a == alert_id(["2026-01-01T00:00:00Z", "10.0.0.1", 1, "10.0.0.2", 443, "7", "j4", "j3", "sha", "sni"])
    assert a != alert_id(["2026-01-01T00:00:00Z", "10.0.0.1", 2, "10.0.0.2", 443, "7", "j4", "j3", "sha", "sni"])
    assert len(a) == 32


def test_alerts_of_flagged_rows_only_with_id_score_and_file() -> None:
    scored = pd.DataFrame({
        "ts": pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"]), "client_ip": ["10.0.0.1", "10.0.0.2"],
        "client_port": [1, 2], "score": [12.345, 0.0], "verdict": ["intercepted", "ok"], "other": ["x", "y"],
    })  # fmt: skip
    alerts = alerts_of(scored, "a.log")
    assert len(alerts) == 1
    a = alerts[0]
    assert (a["client_ip"], a["score"], a["verdict"], a["file"]) == ("10.0.0.1", 12.3, "intercepted", "a.log")
    assert "other" not in a  # only ALERT_FIELDS
    assert set(a) <= {*ALERT_FIELDS, "id", "file"}
    assert a["id"] == alert_id([a.get(k) for k in ID_FIELDS])
    assert "file" not in alerts_of(scored)[0]
    assert alerts_of(scored[scored["verdict"] == "ok"]) == []
