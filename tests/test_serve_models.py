"""The API's models (``tlsdetect.serve.models``): what they accept and what the OpenAPI document says of them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tlsdetect.serve.app import Settings, create_app

from .serve_support import client, payload

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


@pytest.mark.anyio
async def test_score_reasons_are_text_in_the_response_and_its_model(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 14 item 1: a reason's ``expected``/``observed`` are text or null (a count too), and the model says so."""
    from pydantic import ValidationError

    from tlsdetect.fingerprint import add_fingerprints
    from tlsdetect.serve.models import Reason, ScoreResponse

    weak = rows.iloc[[1]].copy()
    weak["ch_ciphers"] = pd.Series([(5, *weak["ch_ciphers"].iloc[0])], index=weak.index, dtype=object)  # + RC4-SHA
    weak = add_fingerprints(weak)
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=payload(pd.concat([rows, weak], ignore_index=True)))
        spec = (await c.get("/openapi.json")).json()
    assert r.status_code == 200, r.text
    body = r.json()
    ScoreResponse.model_validate(body)
    reasons = [x for row in body["rows"] for x in row["reasons"]]
    assert next(x for x in body["rows"][-1]["reasons"] if x["code"] == "weak_ciphers")["observed"] == "1"
    for x in reasons:
        assert all(x[f] is None or isinstance(x[f], str) for f in ("expected", "observed")), x
    with pytest.raises(ValidationError, match="observed"):
        Reason.model_validate({"code": "weak_ciphers", "detail": "d", "observed": 1})
    props = spec["components"]["schemas"]["Reason"]["properties"]
    for f in ("expected", "observed"):
        assert {t.get("type") for t in props[f]["anyOf"]} == {"string", "null"}
    assert props["code"]["type"] == props["detail"]["type"] == "string"


@pytest.mark.anyio
async def test_score_rows_carry_the_server_side(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 16 item 7: a score row carries ``ja3s`` and ``sh_cipher`` as sent, and the OpenAPI model says so."""
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=payload(rows))
        spec = (await c.get("/openapi.json")).json()
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    sent = payload(rows)["connections"]
    assert [row["ja3s"] for row in got] == [row.get("ja3s") for row in sent]
    assert [row["sh_cipher"] for row in got] == [row.get("sh_cipher") for row in sent]
    assert any(row["ja3s"] for row in got)
    props = spec["components"]["schemas"]["ScoredConnection"]["properties"]
    assert {t.get("type") for t in props["ja3s"]["anyOf"]} == {"string", "null"}
    assert {t.get("type") for t in props["sh_cipher"]["anyOf"]} == {"integer", "null"}


@pytest.mark.anyio
async def test_score_rows_carry_resumption_and_flight_size(baseline_dir: Path, rows: pd.DataFrame) -> None:
    """issue 16 item 7: ``resumed`` (a boolean) and ``server_flight_bytes`` (an integer) come back as sent."""
    sent = payload(rows)["connections"][:4]
    for i, row in enumerate(sent):
        row["resumed"] = [True, False, None, True][i]
        row["server_flight"] = [[23, 3000 + i, 264, 52], [], None, [70000]][i]
        row["server_flight_bytes"] = [3339 + i, 0, None, 70000][i]
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json={"connections": sent})
        spec = (await c.get("/openapi.json")).json()
        bad = await c.post("/v1/score", json={"connections": [{**sent[0], "server_flight": [-1]}]})
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    assert [row["resumed"] for row in got] == [True, False, None, True]
    assert [row["server_flight_bytes"] for row in got] == [3339, 0, None, 70000]
    assert bad.status_code == 422
    props = spec["components"]["schemas"]["ScoredConnection"]["properties"]
    assert {t.get("type") for t in props["resumed"]["anyOf"]} == {"boolean", "null"}
    assert {t.get("type") for t in props["server_flight_bytes"]["anyOf"]} == {"integer", "null"}
