"""The baseline holder (``tlsdetect.serve.holder``): reloads swap generations, keep a broken one out, and let
in-flight requests finish on the generation they started on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tlsdetect.detect.baseline_dir import BaselineError
from tlsdetect.serve.app import Settings, create_app

from .serve_support import ESET_JA3, UNKNOWN_JA4, client, payload, replace_dir

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


async def wait_generation(c: httpx.AsyncClient, n: int, timeout: float = 20) -> dict[str, Any]:
    import anyio

    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = (await c.get("/healthz")).json()
        if health["baseline_generation"] >= n or time.monotonic() > deadline:
            return health
        await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_reload_when_directory_replaced(own_baseline: Path, captures: pd.DataFrame) -> None:
    app = create_app(Settings(baseline_dir=own_baseline, reload_check_seconds=0))
    ja4 = str(captures["ja4"].iloc[-1])
    async with client(app) as c:
        before = (await c.get(f"/v1/fingerprints/{ja4}")).json()
        replace_dir(own_baseline, captures)
        await c.get("/healthz")  # notices the change, reloads in the background
        health = await wait_generation(c, 2)
        after = (await c.get(f"/v1/fingerprints/{ja4}")).json()
        metrics = (await c.get("/metrics")).text
    assert health["baseline_generation"] == 2
    assert health["baseline_connections"] == len(captures)
    assert before["baseline_generation"] == 1
    assert after["baseline_generation"] == 2  # the cache of generation 1 is not used
    assert (before["prevalence"] or {}).get("connections", 0) < after["prevalence"]["connections"]
    assert 'tlsdetect_api_baseline_reloads_total{result="ok"} 1.0' in metrics
    assert "tlsdetect_api_baseline_generation 2.0" in metrics


@pytest.mark.anyio
async def test_broken_baseline_keeps_the_old_one(own_baseline: Path) -> None:
    app = create_app(Settings(baseline_dir=own_baseline, reload_check_seconds=3600))
    (own_baseline / "meta.json").write_text("{ broken", encoding="utf-8")
    with pytest.raises(BaselineError, match="not valid JSON"):
        app.state.holder.reload()
    async with client(app) as c:
        health = (await c.get("/healthz")).json()
        assert (await c.get(f"/v1/fingerprints/{ESET_JA3}")).status_code == 200
        metrics = (await c.get("/metrics")).text
    assert health["baseline_generation"] == 1
    assert "not valid JSON" in health["last_reload_error"]
    assert 'tlsdetect_api_baseline_reloads_total{result="error"} 1.0' in metrics


@pytest.mark.anyio
@pytest.mark.parametrize("unhealthy", [False, True], ids=["200-degraded", "503-by-flag"])
async def test_health_says_degraded_after_a_failed_reload(own_baseline: Path, unhealthy: bool) -> None:
    """issue 18 #15: /healthz said ok after a failed reload. It says ``degraded`` (200, or 503 with the flag) until a
    reload succeeds; the other routes keep answering from the old baseline meanwhile."""
    app = create_app(Settings(baseline_dir=own_baseline, reload_check_seconds=3600, unhealthy_when_degraded=unhealthy))
    meta = own_baseline / "meta.json"
    good = meta.read_text(encoding="utf-8")
    async with client(app) as c:
        before = await c.get("/healthz")
        meta.write_text("{ broken", encoding="utf-8")
        with pytest.raises(BaselineError):
            app.state.holder.reload()
        during = await c.get("/healthz")
        lookup = await c.get(f"/v1/fingerprints/{ESET_JA3}")
        meta.write_text(good, encoding="utf-8")
        app.state.holder.reload()
        after = await c.get("/healthz")
    assert (before.status_code, before.json()["status"]) == (200, "ok")
    assert (during.status_code, during.json()["status"]) == (503 if unhealthy else 200, "degraded")
    assert "not valid JSON" in during.json()["last_reload_error"]
    assert during.json()["baseline_generation"] == 1
    assert lookup.status_code == 200
    assert (after.status_code, after.json()["status"], after.json()["last_reload_error"]) == (200, "ok", None)
    assert after.json()["baseline_generation"] == 2


@pytest.mark.anyio
async def test_reload_with_requests_in_flight(own_baseline: Path, captures: pd.DataFrame,
                                              rows: pd.DataFrame) -> None:
    """A request that started on generation 1 finishes on it while generation 2 is swapped in (SIGHUP's path)."""
    import anyio

    app = create_app(Settings(baseline_dir=own_baseline, reload_check_seconds=3600))
    holder = app.state.holder
    old = holder.current
    started, release = threading.Event(), threading.Event()
    real = old.describe_json

    def slow(key: str) -> bytes:
        started.set()
        release.wait(20)
        return bytes(real(key))

    old.describe_json = slow
    async with client(app) as c:
        results: dict[str, httpx.Response] = {}

        async def lookup() -> None:
            results["lookup"] = await c.get(f"/v1/fingerprints/{UNKNOWN_JA4}")

        async def batch() -> None:
            results["score"] = await c.post("/v1/score", json=payload(rows))

        async with anyio.create_task_group() as tg:
            tg.start_soon(lookup)
            await anyio.to_thread.run_sync(started.wait, 20)
            tg.start_soon(batch)
            replace_dir(own_baseline, captures)
            holder.request_reload()  # what the serve command's SIGHUP handler calls
            health = await wait_generation(c, 2)
            during = await c.get(f"/v1/fingerprints/{ESET_JA3}")
            release.set()
    assert health["baseline_generation"] == 2
    assert during.json()["baseline_generation"] == 2
    assert results["lookup"].status_code == 200
    assert results["lookup"].json()["baseline_generation"] == 1
    assert results["score"].status_code == 200
    assert results["score"].json()["baseline_generation"] in (1, 2)
