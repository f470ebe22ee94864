"""Error answers (``tlsdetect.serve.responses``): always ``{error, detail}`` JSON with a stable code, never a
stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tlsdetect.serve.app import Settings, create_app

from .serve_support import ESET_JA3, assert_error, client

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["garbage", "t13d1516h2_8daaf6152771", "0" * 31, "g" * 32, "x" * 300,
                                   "t99d1516h2_8daaf6152771_02713d6af862", "%00", "'; DROP TABLE x"])
async def test_lookup_not_a_fingerprint(baseline_dir: Path, value: str) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.get(f"/v1/fingerprints/{value}")
    body = assert_error(r, 422, "not_a_fingerprint")
    assert "not a fingerprint" in body["detail"]


@pytest.mark.anyio
async def test_unknown_route_and_method_are_json(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        assert_error(await c.get("/v1/nothing"), 404, "not_found")
        assert_error(await c.delete(f"/v1/fingerprints/{ESET_JA3}"), 405, "method_not_allowed")
        assert_error(await c.get("/v1/fingerprints/"), 404, "not_found")


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "where"), [
    ({"connections": [{"client_port": "not a port"}]}, ["body", "connections", "0", "client_port"]),
    ({"connections": [{"client_port": 2**40}]}, ["body", "connections", "0", "client_port"]),
    ({"connections": [{"ch_ciphers": [4865, -1]}]}, ["body", "connections", "0", "ch_ciphers", "1"]),
    ({"connections": [{"ch_ciphers": "4865,4866"}]}, ["body", "connections", "0", "ch_ciphers"]),
    ({"connections": [{"ch_alpn": ["not hex"]}]}, ["body", "connections", "0", "ch_alpn", "0"]),
    ({"connections": [{"ja4": 12}]}, ["body", "connections", "0", "ja4"]),
    ({"connections": [{"ts": "yesterday"}]}, ["body", "connections", "0", "ts"]),
    ({"connections": [{"ts": "0001-01-01T00:00:00"}]}, ["body", "connections", "0", "ts"]),
    ({"connections": [{"no_such_column": 1}]}, ["body", "connections", "0", "no_such_column"]),
    ({"connections": {"ja3": ESET_JA3}}, ["body", "connections"]),
    ({"rows": []}, ["body", "connections"]),
    ([], ["body"]),
])
async def test_score_wrong_types_are_422(baseline_dir: Path, body: Any, where: list[str]) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=body)
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert any(d["loc"][:len(where)] == where for d in detail), detail
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)


@pytest.mark.anyio
async def test_score_not_json(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
        r2 = await c.post("/v1/score", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request")
    assert r2.status_code in (400, 422)
    assert_error(r2, r2.status_code)


@pytest.mark.anyio
async def test_too_many_rows_is_413(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir, max_batch=3))) as c:
        r = await c.post("/v1/score", json={"connections": [{}] * 4})
        ok = await c.post("/v1/score", json={"connections": [{}] * 3})
    assert "at most 3" in assert_error(r, 413, "batch_too_large")["detail"]
    assert ok.status_code == 200
