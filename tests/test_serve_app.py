"""The app (``tlsdetect.serve.app``) with httpx against the real app: lookups, scoring, auth, health and docs;
and end to end as a process (``tlsdetect serve``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import tlsdetect.sinks.files as sinks
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_dir import BaselineError
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS, score
from tlsdetect.serve.app import Settings, create_app

from .serve_support import ESET_JA3, ROOT, assert_error, client, payload, replace_dir

pytest_plugins = ["tests.serve_fixtures"]  # captures, rows, baseline_dir, own_baseline


@pytest.mark.anyio
async def test_lookup_known_ja4_in_baseline(baseline_dir: Path, captures: pd.DataFrame) -> None:
    ja4 = str(captures["ja4"].iloc[0])
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.get(f"/v1/fingerprints/{ja4}")
        r2 = await c.get(f"/v1/fingerprints/{ja4.upper()}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fingerprint"] == ja4
    assert body["kind"] == "ja4"
    assert body["verdict"] == "ok"
    assert body["prevalence"]["connections"] >= 1
    assert body["prevalence"]["first_seen"] <= body["prevalence"]["last_seen"]
    assert body["clients"][0]["client_id"]
    assert body["why"]
    assert body["baseline_generation"] == 1
    assert r2.json() == body  # case does not matter


@pytest.mark.anyio
async def test_lookup_known_interception_ja3(baseline_dir: Path) -> None:
    kb = load_knowledge()
    eset = kb.product_fingerprints[kb.product_fingerprints["value"] == ESET_JA3]
    assert len(eset), "the test's JA3 is no longer in product_fingerprints.csv"
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.get(f"/v1/fingerprints/{ESET_JA3}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "intercepted"
    assert body["kind"] == "ja3/ja3n"
    assert {p["product"] for p in body["known_products"]} == set(eset["product"])
    assert all(p["source"] for p in body["known_products"])
    assert body["prevalence"] is None
    assert any("eset" in w for w in body["why"])


@pytest.mark.anyio
async def test_score_equals_score_function(baseline_dir: Path, rows: pd.DataFrame) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        r = await c.post("/v1/score", json=payload(rows))
    assert r.status_code == 200, r.text
    body = r.json()
    expected = score(rows, Baseline.load(baseline_dir))
    got = body["rows"]
    assert len(got) == len(expected)
    for g, (_, e) in zip(got, expected.iterrows(), strict=True):
        assert list(g) == list(SCORE_OUTPUT_COLUMNS)
        assert g["verdict"] == e["verdict"]
        assert g["score"] == pytest.approx(float(e["score"]))
        assert g["reasons"] == list(e["reasons"])
        assert g["client_id"] == e["client_id"]
    # the very rows `tlsdetect score --format jsonl` writes
    assert got == sinks.to_records(expected[list(SCORE_OUTPUT_COLUMNS)])
    verdicts = {g["verdict"] for g in got}
    assert {"ok", "suspicious", "intercepted"} <= verdicts
    assert got[-1]["reasons"][0]["code"] == "known_interception_fingerprint"
    assert body["summary"]["connections"] == len(rows)
    assert body["summary"]["verdicts"]["intercepted"] >= 1
    assert body["baseline_generation"] == 1


@pytest.mark.anyio
async def test_score_minimal_and_empty_batches(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        empty = await c.post("/v1/score", json={"connections": []})
        minimal = await c.post("/v1/score", json={"connections": [{"ja3": ESET_JA3, "ts": "2026-01-01T00:00:00"}]})
    assert empty.status_code == 200, empty.text
    assert empty.json()["rows"] == []
    assert minimal.status_code == 200, minimal.text
    row = minimal.json()["rows"][0]
    assert row["verdict"] == "intercepted"
    assert row["ts"] == "2026-01-01T00:00:00Z"  # no offset: UTC


@pytest.mark.anyio
async def test_auth_on(baseline_dir: Path) -> None:
    app = create_app(Settings(baseline_dir=baseline_dir, token="s3cret-token"))
    url = f"/v1/fingerprints/{ESET_JA3}"
    async with client(app) as anon, client(app, "s3cret-token") as good, client(app, "wrong") as bad:
        assert (await anon.get("/healthz")).status_code == 200
        assert_error(await anon.get(url), 401, "unauthorized")
        assert (await good.get(url)).status_code == 200  # now cached: the fast path must check the token too
        r = await bad.get(url)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(await anon.get(url, headers={"Authorization": "s3cret-token"}), 401)
        assert_error(await anon.post("/v1/score", json={"connections": []}), 401)
        assert (await good.post("/v1/score", json={"connections": []})).status_code == 200
        assert_error(await anon.get("/metrics"), 401)
        assert (await good.get("/metrics")).status_code == 200
        spec = (await anon.get("/openapi.json")).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.anyio
async def test_auth_off(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        assert (await c.get(f"/v1/fingerprints/{ESET_JA3}")).status_code == 200
        assert (await c.get(f"/v1/fingerprints/{ESET_JA3}", headers={"Authorization": "Bearer x"})).status_code == 200
        assert (await c.get("/metrics")).status_code == 200
        assert "securitySchemes" not in (await c.get("/openapi.json")).json().get("components", {})


@pytest.mark.anyio
async def test_health_metrics_docs(baseline_dir: Path, rows: pd.DataFrame) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        health = (await c.get("/healthz")).json()
        await c.get(f"/v1/fingerprints/{ESET_JA3}")
        await c.get("/v1/fingerprints/garbage")
        await c.post("/v1/score", json=payload(rows))
        metrics = (await c.get("/metrics"))
        docs = await c.get("/docs")
        spec = (await c.get("/openapi.json")).json()
    assert health["status"] == "ok"
    assert health["baseline_generation"] == 1
    assert health["baseline_connections"] == 8
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in (
        'tlsdetect_api_requests_total{method="GET",route="/v1/fingerprints/{fingerprint}",status="200"} 1.0',
        'tlsdetect_api_requests_total{method="GET",route="/v1/fingerprints/{fingerprint}",status="422"} 1.0',
        'tlsdetect_api_requests_total{method="POST",route="/v1/score",status="200"} 1.0',
        'tlsdetect_api_request_duration_seconds_bucket{le="+Inf",route="/v1/score"} 1.0',
        "tlsdetect_api_baseline_generation 1.0",
        'tlsdetect_api_rows_scored_total{verdict="intercepted"}',
        'tlsdetect_api_rows_scored_total{verdict="ok"}',
    ):
        assert line in text, line
    scored = sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                 if ln.startswith("tlsdetect_api_rows_scored_total{"))
    assert scored == len(rows)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert {"/v1/fingerprints/{fingerprint}", "/v1/score", "/healthz", "/metrics"} <= set(spec["paths"])
    assert "Connection" in spec["components"]["schemas"]


@pytest.mark.anyio
async def test_docs_served_locally_and_labelled(baseline_dir: Path) -> None:
    """issue 14 item 12: /docs loaded Swagger UI from a public CDN (blank when air-gapped), and /docs and
    /openapi.json were counted as route "unmatched" in the metrics."""
    import re

    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    async with client(create_app(Settings(baseline_dir=baseline_dir))) as c:
        docs = await c.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "http://" not in docs.text  # nothing from another host
        assert "https://" not in docs.text
        urls = re.findall(r'<script src="([^"]+)"', docs.text) + re.findall(r'<link[^>]*href="([^"]+)"', docs.text)
        assert any(u.endswith(".js") for u in urls), urls
        assert any(u.endswith(".css") for u in urls), urls
        for url in urls:
            assert url.startswith("/docs/assets/"), url
            asset = await c.get(url)
            assert asset.status_code == 200, url
            assert asset.content == (Path(str(swagger_ui_path)) / url.rsplit("/", 1)[1]).read_bytes()
        assert "SwaggerUIBundle" in (await c.get(next(u for u in urls if u.endswith(".js")))).text
        assert (await c.get("/openapi.json")).json()["openapi"].startswith("3.")
        assert_error(await c.get("/redoc"), 404)  # no ReDoc: its script would come from a CDN
        text = (await c.get("/metrics")).text
    labels = set(re.findall(r'tlsdetect_api_requests_total\{method="GET",route="([^"]+)",status="200"\}', text))
    assert {"/docs", "/docs/assets/{path}", "/openapi.json"} <= labels, labels
    assert 'route="unmatched",status="200"' not in text


def test_bad_baseline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no such baseline directory"):
        create_app(Settings(baseline_dir=tmp_path / "missing"))


def test_app_from_env(baseline_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``uvicorn --factory tlsdetect.serve.app:app_from_env`` (settings as JSON in TLSDETECT_SERVE_SETTINGS)."""
    from tlsdetect.serve.app import SETTINGS_ENV, app_from_env

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    with pytest.raises(RuntimeError, match=SETTINGS_ENV):
        app_from_env()
    monkeypatch.setenv(SETTINGS_ENV, Settings(baseline_dir=baseline_dir, token="t", max_batch=7).to_json())
    app = app_from_env()
    assert app.state.settings == Settings(baseline_dir=baseline_dir, token="t", max_batch=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_process(own_baseline: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    workers = getattr(request, "param", 1)
    port = _free_port()
    token = tmp_path / "token"
    token.write_text("e2e-token\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(own_baseline), "--port", str(port),
         "--token-file", str(token), "--workers", str(workers), "--reload-check-seconds", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"tlsdetect serve did not start: {out}")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("serve_process", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_serve_sighup_reload_drops_nothing(serve_process: tuple[str, Any], own_baseline: Path,
                                           captures: pd.DataFrame) -> None:
    url, proc = serve_process
    headers = {"Authorization": "Bearer e2e-token"}
    assert httpx.get(f"{url}/v1/fingerprints/{ESET_JA3}", timeout=5).status_code == 401
    failures: list[str] = []
    generations: set[int] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.get(f"/v1/fingerprints/{ESET_JA3}")
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                    else:
                        generations.add(r.json()["baseline_generation"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        replace_dir(own_baseline, captures)
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while time.monotonic() < deadline:
            # new connections spread over the workers: all of them must have reloaded
            seen = {httpx.get(f"{url}/healthz", timeout=5).json()["baseline_generation"] for _ in range(12)}
            if seen == {2}:
                break
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen == {2}
    assert not failures, failures[:5]
    assert 2 in generations
    health = httpx.get(f"{url}/healthz", timeout=5).json()
    assert health["baseline_connections"] == len(captures)
    assert proc.poll() is None


@pytest.mark.slow
def test_serve_bad_baseline_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tlsdetect", "serve", "--baseline", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("Error:")
    assert "no such baseline directory" in r.stderr
    assert "Traceback" not in r.stderr
