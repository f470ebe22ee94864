"""The REST API (``tlsdetect serve``) with httpx against the real app, and end to end as a process.

The baselines are fitted here from the project's own clean captures (``pcaps/``): one on the first
rows only, so scoring every row gives ok, suspicious and (with a known interception JA3)
intercepted rows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import tlsdetect.sinks.files as sinks
from tlsdetect import schema
from tlsdetect.detect.baseline import Baseline, BaselineError
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS, score
from tlsdetect.readers.inputs import Inputs
from tlsdetect.serve.app import Settings, create_app

from .conftest import CLEAN_PCAPS

ROOT = Path(__file__).resolve().parents[1]
ESET_JA3 = "2d0c1aa81856c537394b05616d38dbae"  # product_fingerprints.csv: eset-nod32-antivirus-9
UNKNOWN_JA4 = "t13d0000h2_000000000000_000000000000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def captures() -> pd.DataFrame:
    return Inputs([str(p) for p in CLEAN_PCAPS]).read_all()


@pytest.fixture(scope="module")
def rows(captures: pd.DataFrame) -> pd.DataFrame:
    """Every captured connection, plus one whose JA3/JA3N is a known interception product's."""
    x = captures.iloc[[0]].copy()
    x["ja3"] = ESET_JA3
    x["ja3n"] = ESET_JA3
    return pd.concat([captures, x], ignore_index=True)


@pytest.fixture(scope="module")
def baseline_dir(captures: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "current"
    Baseline().fit(captures.iloc[:8]).save(out)
    return out


def client(app: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)


def payload(df: pd.DataFrame) -> dict[str, Any]:
    return {"connections": sinks.to_records(df[list(schema.COLUMNS)])}


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert "Traceback" not in r.text
    if code is not None:
        assert body["error"] == code
    return body  # type: ignore[no-any-return]


# --- lookups ------------------------------------------------------------------------------------------------------
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


# --- scoring ------------------------------------------------------------------------------------------------------
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


@pytest.mark.anyio
async def test_too_many_rows_is_413(baseline_dir: Path) -> None:
    async with client(create_app(Settings(baseline_dir=baseline_dir, max_batch=3))) as c:
        r = await c.post("/v1/score", json={"connections": [{}] * 4})
        ok = await c.post("/v1/score", json={"connections": [{}] * 3})
    assert "at most 3" in assert_error(r, 413, "batch_too_large")["detail"]
    assert ok.status_code == 200


# --- auth ---------------------------------------------------------------------------------------------------------
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


# --- health, metrics, docs ----------------------------------------------------------------------------------------
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


def test_two_apps_have_their_own_registries(baseline_dir: Path) -> None:
    a = create_app(Settings(baseline_dir=baseline_dir))
    b = create_app(Settings(baseline_dir=baseline_dir))
    assert a.state.metrics.registry is not b.state.metrics.registry


def test_bad_baseline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no such baseline directory"):
        create_app(Settings(baseline_dir=tmp_path / "missing"))


# --- reloads ------------------------------------------------------------------------------------------------------
def _replace_dir(target: Path, df: pd.DataFrame) -> None:
    """Fit ``df`` beside ``target`` and swap it in (what a deploy does)."""
    new = target.with_name(target.name + ".new")
    Baseline().fit(df).save(new)
    old = target.with_name(target.name + ".old")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)


async def _wait_generation(c: httpx.AsyncClient, n: int, timeout: float = 20) -> dict[str, Any]:
    import anyio

    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = (await c.get("/healthz")).json()
        if health["baseline_generation"] >= n or time.monotonic() > deadline:
            return health
        await anyio.sleep(0.05)


@pytest.fixture
def own_baseline(captures: pd.DataFrame, tmp_path: Path) -> Path:
    out = tmp_path / "baseline"
    Baseline().fit(captures.iloc[:8]).save(out)
    return out


@pytest.mark.anyio
async def test_reload_when_directory_replaced(own_baseline: Path, captures: pd.DataFrame) -> None:
    app = create_app(Settings(baseline_dir=own_baseline, reload_check_seconds=0))
    ja4 = str(captures["ja4"].iloc[-1])
    async with client(app) as c:
        before = (await c.get(f"/v1/fingerprints/{ja4}")).json()
        _replace_dir(own_baseline, captures)
        await c.get("/healthz")  # notices the change, reloads in the background
        health = await _wait_generation(c, 2)
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
        return real(key)

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
            _replace_dir(own_baseline, captures)
            holder.request_reload()  # what the serve command's SIGHUP handler calls
            health = await _wait_generation(c, 2)
            during = await c.get(f"/v1/fingerprints/{ESET_JA3}")
            release.set()
    assert health["baseline_generation"] == 2
    assert during.json()["baseline_generation"] == 2
    assert results["lookup"].status_code == 200
    assert results["lookup"].json()["baseline_generation"] == 1
    assert results["score"].status_code == 200
    assert results["score"].json()["baseline_generation"] in (1, 2)


# --- end to end: the serve command as a process -------------------------------------------------------------------
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
        _replace_dir(own_baseline, captures)
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


def test_app_from_env(baseline_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``uvicorn --factory tlsdetect.serve.app:app_from_env`` (settings as JSON in TLSDETECT_SERVE_SETTINGS)."""
    from tlsdetect.serve.app import SETTINGS_ENV, app_from_env

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    with pytest.raises(RuntimeError, match=SETTINGS_ENV):
        app_from_env()
    monkeypatch.setenv(SETTINGS_ENV, Settings(baseline_dir=baseline_dir, token="t", max_batch=7).to_json())
    app = app_from_env()
    assert app.state.settings == Settings(baseline_dir=baseline_dir, token="t", max_batch=7)
