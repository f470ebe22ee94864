"""The REST API of ``tlsdetect serve``: fingerprint lookups and batch scoring over one loaded baseline.

:func:`create_app` wires the rooms of :mod:`tlsdetect.serve` together: the baseline holder
(:mod:`~tlsdetect.serve.holder`), the models (:mod:`~tlsdetect.serve.models`), the JSON answers and
error handlers (:mod:`~tlsdetect.serve.responses`), the middlewares (:mod:`~tlsdetect.serve.middleware`)
and the metrics (:mod:`~tlsdetect.serve.metrics`). The routes are the module-level functions below:
each reads what it serves from ``request.app.state`` (``settings``, ``holder``, ``metrics``,
``knowledge``, ``inflight``), so two apps in one process share nothing.

It adds no detection logic: a lookup is :func:`tlsdetect.detect.lookup.describe`, a batch is
:func:`tlsdetect.detect.scoring.score`, exactly as the ``lookup`` and ``score`` commands run them.
A lookup that misses the cache runs ``describe`` in a worker thread, once however many requests
ask at the same time.

``/docs`` (Swagger UI) loads its script and style sheet from this server (``/docs/assets``, the files
of the installed ``swagger-ui-bundle-v2``), never from a CDN: a SOC network is often air-gapped.
There is no ReDoc page (its script would have to come from a CDN too).

This module does not use ``from __future__ import annotations``: :func:`_score_endpoint` gives
FastAPI the app's request model as a real annotation, which a postponed (string) one cannot name.
"""

import asyncio
import datetime as dt
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount, Route

import tlsdetect.sinks.files as sinks
from tlsdetect import __version__
from tlsdetect.detect.knowledge import Knowledge, load_knowledge
from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS
from tlsdetect.serve.holder import BaselineHolder, Generation, Settings
from tlsdetect.serve.metrics import Metrics
from tlsdetect.serve.middleware import BodyLimit, Instrument
from tlsdetect.serve.models import (
    FINGERPRINT_PATTERN,
    FingerprintInfo,
    Health,
    ScoreResponse,
    connections_frame,
    score_request_model,
)
from tlsdetect.serve.responses import ERROR_RESPONSES, JSON, add_error_handlers, clean, dumps

__all__ = ["SETTINGS_ENV", "Settings", "app_from_env", "create_app"]

log = logging.getLogger(__name__)

#: Environment variable with the JSON :class:`Settings` for ``uvicorn --factory tlsdetect.serve.app:app_from_env``
#: (``tlsdetect serve`` itself builds the app once and forks its workers).
SETTINGS_ENV = "TLSDETECT_SERVE_SETTINGS"

#: Where /docs takes Swagger UI's script, style sheet and icon from (this server, not a CDN).
DOCS_ASSETS = "/docs/assets"

_BEARER = HTTPBearer(auto_error=False, description="the token of tlsdetect serve --token-file")


# --- authentication ----------------------------------------------------------------------------------------------
def check_token(request: Request,
                credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
    """The dependency of the protected routes (only when the app has a token): the bearer token or 401."""
    token: str | None = request.app.state.settings.token
    if token is None:
        return
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise StarletteHTTPException(401, "missing or wrong bearer token")


# --- routes ------------------------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    """Up, and on which baseline; ``degraded`` while the last reload failed (an older baseline still serves),
    with 503 instead of 200 when the settings say so (a balancer then takes the instance out)."""
    state = request.app.state
    gen = state.holder.current
    error = state.holder.last_error
    code = 503 if error is not None and state.settings.unhealthy_when_degraded else 200
    return Response(dumps({
        "status": "ok" if error is None else "degraded", "version": __version__,
        "baseline": str(state.settings.baseline_dir),
        "baseline_generation": gen.number,
        "baseline_loaded_at": dt.datetime.fromtimestamp(gen.loaded_at, dt.UTC).isoformat(timespec="seconds"),
        "baseline_connections": int(gen.baseline.n_connections_),
        "last_reload_error": error,
    }), status_code=code, media_type=JSON)


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _lookup(state: State, gen: Generation, key: str) -> bytes:
    """One computation per (generation, fingerprint) however many requests ask for it at once."""
    metrics: Metrics = state.metrics
    body = gen.cached(key)
    if body is not None:
        metrics.lookups.labels("hit").inc()
        return body
    metrics.lookups.labels("miss").inc()
    inflight: dict[tuple[int, str], asyncio.Future[bytes]] = state.inflight
    pending = inflight.get((gen.number, key))
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    inflight[(gen.number, key)] = future
    try:
        body = await run_in_threadpool(gen.describe_json, key)
        gen.remember(key, body)
        future.set_result(body)
        return body
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
        raise
    finally:
        del inflight[(gen.number, key)]


async def fingerprint(
    request: Request,
    fingerprint: Annotated[str, PathParam(pattern=FINGERPRINT_PATTERN, description=(
        "a JA4 (t13d1516h2_8daaf6152771_02713d6af862) or a JA3/JA3N (32 hex digits)"))],
) -> Response:
    state = request.app.state
    gen = state.holder.current  # the whole request uses this generation, whatever reloads meanwhile
    return Response(await _lookup(state, gen, fingerprint.lower()), media_type=JSON)


def _score_json(rows: list[dict[str, Any]], gen: Generation, metrics: Metrics) -> bytes:
    from tlsdetect.detect.scoring import score, summarize

    scored = score(connections_frame(rows), gen.baseline, gen.knowledge, policies=gen.policies)
    summary = summarize(scored)
    for verdict, n in summary["verdicts"].items():
        if n:
            metrics.rows_scored.labels(verdict).inc(n)
    records = sinks.to_records(scored[list(SCORE_OUTPUT_COLUMNS)])
    return dumps(clean({"rows": records, "summary": summary, "baseline_generation": gen.number}))


async def score_connections(request: Request, batch: BaseModel) -> Response:
    """``POST /v1/score``: the validated batch scored on the current generation, off the event loop."""
    state = request.app.state
    gen = state.holder.current
    rows: list[dict[str, Any]] = batch.model_dump()["connections"]
    body = await run_in_threadpool(_score_json, rows, gen, state.metrics)
    return Response(body, media_type=JSON)


def _score_endpoint(request_model: type[BaseModel]) -> Callable[[Request, BaseModel], Awaitable[Response]]:
    """:func:`score_connections` with its body typed as this app's request model: FastAPI reads the model
    (and so the configured max batch, in validation and in the OpenAPI document) from the signature."""

    async def score_batch(request: Request, batch: request_model) -> Response:  # type: ignore[valid-type]
        return await score_connections(request, batch)

    return score_batch


async def docs(request: Request) -> HTMLResponse:
    """Swagger UI, its files from :data:`DOCS_ASSETS`."""
    app: FastAPI = request.app
    root = request.scope.get("root_path", "")  # behind a proxy that strips a prefix
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to come back from
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the public validator
    )


# --- the app -----------------------------------------------------------------------------------------------------
def _add_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the files of the installed ``swagger-ui-bundle-v2`` (Swagger UI 5, which
    reads OpenAPI 3.1); without that package there is no ``/docs`` rather than a page that needs a CDN."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError:
        log.warning("no /docs page: swagger-ui-bundle-v2 is not installed (pip install 'tlsdetect[serve]')")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def _add_routes(app: FastAPI, settings: Settings) -> None:
    """The API routes; with a token, the protected ones depend on :func:`check_token` and document 401."""
    protected = [Depends(check_token)] if settings.token is not None else []
    errors = {k: v for k, v in ERROR_RESPONSES.items() if settings.token is not None or k != 401}
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, tags=["operations"],
                      summary="Liveness and the loaded baseline",
                      responses={503: {"model": Health, "description": "degraded: the last baseline reload failed "
                                       "and an older baseline serves (with --unhealthy-when-degraded)"}})
    app.add_api_route("/metrics", prometheus, methods=["GET"], tags=["operations"],
                      summary="Prometheus metrics of this server process", dependencies=protected,
                      responses={**{k: v for k, v in errors.items() if k == 401},
                                 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
                      response_class=Response)
    app.add_api_route("/v1/fingerprints/{fingerprint}", fingerprint, methods=["GET"],
                      response_model=FingerprintInfo, dependencies=protected,
                      responses={k: v for k, v in errors.items() if k not in (400, 408, 413)}, tags=["detection"],
                      summary="Verdict, known products, prevalence and clients of a JA3, JA3N or JA4")
    app.add_api_route("/v1/score", _score_endpoint(score_request_model(settings.max_batch)), methods=["POST"],
                      response_model=ScoreResponse, dependencies=protected, responses=errors,
                      tags=["detection"], summary="Score a batch of connections as tlsdetect score does")


def _route_labels(app: FastAPI) -> dict[int, str]:
    """Metric labels of the routes that are not API routes (the OpenAPI document, the docs' files): the
    framework records only API routes in the request scope, and these would all count as ``unmatched``."""
    labels: dict[int, str] = {}
    for r in app.routes:
        if isinstance(r, Mount):
            labels[id(r.app)] = r.path + "/{path}"
        elif isinstance(r, Route) and not isinstance(r, APIRoute):
            labels[id(r.endpoint)] = r.path
    return labels


def create_app(settings: Settings, kb: Knowledge | None = None) -> FastAPI:
    """The API over ``settings.baseline_dir``; raises :class:`BaselineError` when it does not load."""
    metrics = Metrics()
    knowledge = kb or load_knowledge()
    holder = BaselineHolder(settings, metrics, knowledge)
    _warm_scoring(holder.current)
    app = FastAPI(
        title="tlsdetect",
        version=__version__,
        description="Detect TLS interception: look up JA3/JA3N/JA4 fingerprints and score connections against a "
                    "baseline. Errors are JSON objects {error, detail}.",
        docs_url=None,  # served from local files by _add_docs, not from a CDN
        redoc_url=None,
    )
    _add_docs(app)
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.knowledge = knowledge
    app.state.inflight = {}  # (generation, fingerprint) -> the lookup being computed, see _lookup
    add_error_handlers(app)
    _add_routes(app, settings)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics, timeout=settings.body_timeout)
    app.add_middleware(Instrument, metrics=metrics, holder=holder, token=settings.token, labels=_route_labels(app))
    return app


def _warm_scoring(gen: Generation) -> None:
    """Score one empty row once, so the first real batch does not pay for lazy imports and first-call setup."""
    from tlsdetect.detect.scoring import score

    row = {"ts": "2026-01-01T00:00:00Z", "source": "warm-up", "client_ip": "192.0.2.1", "client_port": 50000,
           "server_ip": "192.0.2.2", "server_port": 443, "sni": "warm-up.invalid", "tls_version": "TLSv1.3",
           "ja3": "0" * 32, "ja3n": "0" * 32, "ja4": "t13d0101h2_000000000000_000000000000",
           "server_issuer": "CN=warm-up", "user_agent": "curl/8.0", "ch_version": 771, "ch_ciphers": [4865],
           "ch_extensions": [0, 43], "ch_groups": [29], "ch_point_formats": [0], "ch_sig_algs": [1027],
           "ch_supported_versions": [772], "ch_alpn": ["6832"]}
    score(connections_frame([row, {}]), gen.baseline, gen.knowledge, policies=gen.policies)
    if gen.baseline.model_ is not None:  # the population model imports scikit-learn on first use: seconds
        import sklearn.neighbors  # noqa: F401


def app_from_env() -> FastAPI:
    """The app for another ASGI server (:data:`SETTINGS_ENV` set).

    ``uvicorn --factory tlsdetect.serve.app:app_from_env``.
    """
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with 'tlsdetect serve'")
    return create_app(Settings.from_json(text))
