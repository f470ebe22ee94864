"""The middlewares (``tlsdetect.serve.middleware``): the body limit, and cached lookups answered on the fast path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tlsdetect.serve.app import Settings, create_app

from .serve_support import ESET_JA3, UNKNOWN_JA4, assert_error, client

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


@pytest.mark.anyio
async def test_lookup_unknown_and_cached(baseline_dir: Path) -> None:
    app = create_app(Settings(baseline_dir=baseline_dir))
    async with client(app) as c:
        first = await c.get(f"/v1/fingerprints/{UNKNOWN_JA4}")
        second = await c.get(f"/v1/fingerprints/{UNKNOWN_JA4}")
        metrics = (await c.get("/metrics")).text
    assert first.status_code == 200
    assert first.json()["verdict"] == "unknown"
    assert first.json()["prevalence"] is None
    assert second.content == first.content
    assert 'tlsdetect_api_lookups_total{cache="hit"}' in metrics


@pytest.mark.anyio
async def test_oversized_body_is_413(baseline_dir: Path) -> None:
    app = create_app(Settings(baseline_dir=baseline_dir, max_body_bytes=4096))

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"connections": ['
        for _ in range(200):
            yield b'{"ja3": "' + ESET_JA3.encode() + b'"},'
        yield b"{}]}"

    async with client(app) as c:
        declared = await c.post("/v1/score", json={"connections": [{"sni": "x" * 5000}]})
        streamed = await c.post("/v1/score", content=chunked(), headers={"content-type": "application/json"})
        small = await c.post("/v1/score", json={"connections": [{"sni": "x" * 100}]})
        metrics = (await c.get("/metrics")).text
    assert_error(declared, 413, "request_too_large")
    assert_error(streamed, 413, "request_too_large")
    assert small.status_code == 200
    assert "tlsdetect_api_bodies_rejected_total 2.0" in metrics
