"""The REST API of ``tlsdetect serve``: fingerprint lookups and batch scoring over one loaded baseline.

Built by :func:`create_app` from :class:`Settings`. It adds no detection logic: a lookup is
:func:`tlsdetect.detect.lookup.describe`, a batch is :func:`tlsdetect.detect.scoring.score`, exactly as the
``lookup`` and ``score`` commands run them.

* The baseline lives in a :class:`BaselineHolder`. A reload (SIGHUP, :meth:`BaselineHolder.reload`,
  or a changed ``meta.json`` noticed at most every ``reload_check_seconds``) loads the new
  directory beside the old one and swaps a single reference: a request takes the current
  generation once and finishes on it, so in-flight requests are never dropped nor mixed. A
  baseline that fails to load leaves the old one serving.
* Lookups are cached per generation (LRU of the serialised JSON answer; the baseline's most used
  fingerprints are computed before a generation starts serving), and a cached answer is sent by
  the outermost middleware without entering the framework, so a hot fingerprint costs a dict hit.
  A miss runs ``describe`` in a worker thread, once however many requests ask at the same time.
* Every error reaches the caller as JSON ``{"error": <code>, "detail": ...}``; a request body is
  limited before anything parses it (``Content-Length`` and the bytes actually streamed).
* Metrics go to a registry of this app only (``/metrics``, Prometheus text format).
* ``/docs`` (Swagger UI) loads its script and style sheet from this server (``/docs/assets``, the files
  of the installed ``swagger-ui-bundle-v2``), never from a CDN: a SOC network is often air-gapped.
  There is no ReDoc page (its script would have to come from a CDN too).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount, Route

import tlsdetect.sinks.files as sinks
from tlsdetect import __version__, schema
from tlsdetect.detect.baseline import Baseline, BaselineError
from tlsdetect.detect.knowledge import Knowledge, load_knowledge
from tlsdetect.detect.lookup import FingerprintShapeError, describe
from tlsdetect.detect.scoring import SCORE_OUTPUT_COLUMNS  # a scored row, as `tlsdetect score -f jsonl` writes it

__all__ = ["SCORE_OUTPUT_COLUMNS", "SETTINGS_ENV", "BaselineHolder", "Settings", "app_from_env", "create_app"]

log = logging.getLogger(__name__)

#: Environment variable with the JSON :class:`Settings` for ``uvicorn --factory tlsdetect.serve.app:app_from_env``
#: (``tlsdetect serve`` itself builds the app once and forks its workers).
SETTINGS_ENV = "TLSDETECT_SERVE_SETTINGS"


#: A JA4 or a JA3/JA3N by shape (either case): the path parameter's documented and enforced pattern.
FINGERPRINT_PATTERN = (
    r"^(?:[tqdTQD](?:1[0-3]|[sS][23]|[dD][0-3]|00)[diDI][0-9]{4}[0-9a-zA-Z]{2}_[0-9a-fA-F]{12}_[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32})$"
)

_JSON = "application/json"


# --- settings ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What one API instance serves and its limits."""

    baseline_dir: Path
    token: str | None = None
    max_body_bytes: int = 1 << 20
    max_batch: int = 10_000
    reload_check_seconds: float = 5.0
    cache_size: int = 65_536
    warm_top: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "baseline_dir", Path(self.baseline_dir))
        if self.token is not None and not self.token:
            raise ValueError("the token must not be empty")
        if self.max_body_bytes < 1 or self.max_batch < 1 or self.cache_size < 1:
            raise ValueError("max_body_bytes, max_batch and cache_size must be positive")
        if self.reload_check_seconds < 0:
            raise ValueError("reload_check_seconds must not be negative")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["baseline_dir"] = str(self.baseline_dir)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        d = json.loads(text)
        return cls(**d)


# --- metrics ----------------------------------------------------------------------------------------------------
class Metrics:
    """The app's own Prometheus registry and instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tlsdetect_api_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "tlsdetect_api_request_duration_seconds", "Time to answer a request, by route", ["route"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.generation = Gauge("tlsdetect_api_baseline_generation",
                                "Generation of the loaded baseline (1 at start, +1 per reload)", registry=r)
        self.loaded_at = Gauge("tlsdetect_api_baseline_loaded_timestamp_seconds",
                               "When the serving baseline was loaded (Unix time)", registry=r)
        self.reloads = Counter("tlsdetect_api_baseline_reloads", "Baseline reload attempts by result",
                               ["result"], registry=r)
        self.rows_scored = Counter("tlsdetect_api_rows_scored", "Connections scored by POST /v1/score, by verdict",
                                   ["verdict"], registry=r)
        self.lookups = Counter("tlsdetect_api_lookups", "Fingerprint lookups by cache result", ["cache"], registry=r)
        self.body_rejected = Counter("tlsdetect_api_bodies_rejected",
                                     "Requests refused because the body exceeded the limit", registry=r)


# --- the baseline and its generations ---------------------------------------------------------------------------
def _signature(directory: Path) -> tuple[int, int, int] | None:
    """What changes when meta.json is rewritten or the directory replaced (None: not readable now)."""
    try:
        st = (directory / "meta.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Generation:
    """One loaded baseline and the lookup answers computed from it."""

    def __init__(self, baseline: Baseline, number: int, signature: tuple[int, int, int] | None,
                 cache_size: int, knowledge: Knowledge) -> None:
        self.baseline = baseline
        self.knowledge = knowledge
        self.number = number
        self.signature = signature
        self.loaded_at = time.time()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def describe_json(self, key: str) -> bytes:
        """The lookup answer for a lower-case fingerprint, as JSON bytes (not cached here)."""
        info = describe(key, self.baseline, self.knowledge)
        info["baseline_generation"] = self.number
        return _dumps(_clean(info))

    def warm(self, top: int) -> None:
        """Cache the answers for the baseline's ``top`` most used fingerprints (before serving them)."""
        fp = self.baseline.fingerprints_
        if not top or not len(fp):
            return
        counts = fp.groupby("value", observed=True)["count"].sum().sort_values(ascending=False, kind="stable")
        for value in counts.index[:top]:
            key = str(value).lower()
            try:
                self.remember(key, self.describe_json(key))
            except FingerprintShapeError:
                continue

    def cached(self, key: str) -> bytes | None:
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
            return body

    def remember(self, key: str, body: bytes) -> None:
        with self._lock:
            self._cache[key] = body
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


class BaselineHolder:
    """The serving baseline; reloads swap it atomically and keep the old one when the new one is broken."""

    def __init__(self, settings: Settings, metrics: Metrics, knowledge: Knowledge) -> None:
        self.settings = settings
        self.metrics = metrics
        self.knowledge = knowledge
        self._reload_lock = threading.Lock()  # one load at a time
        self._state_lock = threading.RLock()
        self._reloading = False
        self._pending = False
        self._next_check = time.monotonic() + settings.reload_check_seconds
        self.last_error: str | None = None
        sig = _signature(settings.baseline_dir)
        self.current = self._generation(Baseline.load(settings.baseline_dir), 1, sig)
        self._publish()

    def _generation(self, baseline: Baseline, number: int, sig: tuple[int, int, int] | None) -> Generation:
        gen = Generation(baseline, number, sig, self.settings.cache_size, self.knowledge)
        gen.warm(self.settings.warm_top)
        return gen

    def _publish(self) -> None:
        self.metrics.generation.set(self.current.number)
        self.metrics.loaded_at.set(self.current.loaded_at)

    def reload(self) -> int:
        """Load the baseline directory again and swap it in; returns the new generation number.

        Raises :class:`BaselineError` (the old baseline keeps serving) when the directory does not load.
        """
        with self._reload_lock:
            sig = _signature(self.settings.baseline_dir)
            try:
                baseline = Baseline.load(self.settings.baseline_dir)
            except BaselineError as exc:
                self.metrics.reloads.labels("error").inc()
                self.last_error = str(exc)
                log.error("baseline reload failed, still serving generation %d: %s", self.current.number, exc)
                raise
            except Exception as exc:  # a damaged file can fail in many ways; never take the server down
                self.metrics.reloads.labels("error").inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("baseline reload failed, still serving generation %d", self.current.number)
                raise BaselineError(f"{self.settings.baseline_dir}: {self.last_error}") from None
            # warmed before the swap: requests keep being answered from the old generation meanwhile
            self.current = self._generation(baseline, self.current.number + 1, sig)
            self.last_error = None
            self.metrics.reloads.labels("ok").inc()
            self._publish()
            log.warning("baseline reloaded from %s: generation %d", self.settings.baseline_dir, self.current.number)
            return self.current.number

    def request_reload(self) -> None:
        """Reload in the background; safe from a signal handler, never blocks on a load in progress.

        A request made while a reload runs is remembered and runs after it, so the last change wins.
        """
        with self._state_lock:  # re-entrant and held only for these lines: a signal landing here cannot deadlock
            if self._reloading:
                self._pending = True
                return
            self._reloading = True
        threading.Thread(target=self._background_reload, name="baseline-reload", daemon=True).start()

    def _background_reload(self) -> None:
        while True:
            with contextlib.suppress(BaselineError):
                self.reload()
            with self._state_lock:
                if not self._pending:
                    self._reloading = False
                    return
                self._pending = False

    def maybe_reload(self) -> None:
        """Called on every request: at most every ``reload_check_seconds``, reload if meta.json changed."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.settings.reload_check_seconds
        sig = _signature(self.settings.baseline_dir)
        if sig is not None and sig != self.current.signature and not self._reloading:
            self.request_reload()

    @property
    def reloading(self) -> bool:
        return self._reloading


# --- request and response models --------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error answer: a stable machine-readable code and a human-readable detail."""

    error: str = Field(description="machine-readable code, e.g. not_a_fingerprint, invalid_request, unauthorized")
    detail: Any = Field(description="what was wrong: a message, or the list of invalid fields")


class KnownProduct(BaseModel):
    product: str
    product_type: str | None
    kind: str
    source: str | None


class KnownApplication(BaseModel):
    application: str
    family: str | None
    kind: str
    source: str | None


class KnownStack(BaseModel):
    stack: str
    version: str | None
    kind: str
    source: str | None


class Prevalence(BaseModel):
    kind: str
    connections: int
    clients: int
    share_of_connections: float
    first_seen: str | None
    last_seen: str | None


class ClientUse(BaseModel):
    client_id: str
    count: int
    first_seen: str | None
    last_seen: str | None


class FingerprintInfo(BaseModel):
    """What the knowledge base and the baseline say about one fingerprint (``tlsdetect lookup --json``)."""

    fingerprint: str = Field(description="the fingerprint, lower case")
    kind: str = Field(description="ja4, or ja3/ja3n for 32 hex digits (the two cannot be told apart by shape)")
    verdict: Literal["intercepted", "suspicious", "ok", "unknown"]
    known_products: list[KnownProduct] = Field(description="interception products with this fingerprint, and sources")
    applications: list[KnownApplication]
    stacks: list[KnownStack]
    prevalence: Prevalence | None = Field(description="use in the baseline; null when never seen there")
    clients: list[ClientUse] = Field(description="the baseline's clients that send it most")
    why: list[str]
    baseline_generation: int


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    baseline: str
    baseline_generation: int
    baseline_loaded_at: str
    baseline_connections: int
    last_reload_error: str | None


def _timestamp(value: str | None) -> str | None:
    """An ISO 8601 time (UTC when no offset is given), kept to the nanosecond, as ISO text in UTC."""
    if value is None:
        return None
    if not value[:4].isdigit():
        raise ValueError("not an ISO 8601 time (YYYY-MM-DDTHH:MM:SS[.fraction][offset])")
    try:
        ts = pd.Timestamp(value).as_unit("ns")
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise ValueError(f"not an ISO 8601 time within 1677..2262 ({exc})") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return str(ts.isoformat())


_U16 = Annotated[int, Field(ge=0, le=0xFFFF)]
_HEX = Annotated[str, Field(pattern=r"^[0-9a-fA-F]*$", max_length=510)]
_INT32 = Annotated[int | None, Field(ge=-(2**31), le=2**31 - 1)]


def _input_field(name: str, dtype: str) -> tuple[Any, Any]:
    if dtype in ("string", "category"):  # category: the certificate columns, text on the wire
        return (str | None, Field(default=None, max_length=65_536))
    if dtype == "Int32":
        return (_INT32, None)
    if dtype == "boolean":
        return (bool | None, None)
    if dtype.startswith("datetime64"):
        return (Annotated[str | None, AfterValidator(_timestamp)],
                Field(default=None, max_length=64, description="ISO 8601 (to the nanosecond); UTC when no offset"))
    if name == "ch_alpn":
        return (list[_HEX] | None, Field(default=None, max_length=256,
                                         description="each offered protocol as hex (e.g. 6832 for h2)"))
    return (list[_U16] | None, Field(default=None, max_length=4096, description="16-bit values in wire order"))


#: One row of the connections table (``tlsdetect fingerprint --format jsonl``); every column optional.
Connection: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Connection",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One TLS connection: the columns of the connections table (tlsdetect fingerprint -f jsonl), all optional.",
    **{name: _input_field(name, dtype) for name, dtype in schema.COLUMNS.items()},
)


class Reason(BaseModel):
    """One piece of evidence for a verdict; every field is text (numbers too), see ``schema.REASON_FIELDS``."""

    code: str = Field(description="the signal that fired (tlsdetect.detect.scoring.SIGNALS)")
    detail: str = Field(description="what was seen, in a sentence for an analyst")
    expected: str | None = Field(default=None, description="what the baseline or knowledge predicts, as text")
    observed: str | None = Field(default=None, description="what this connection shows, as text (numbers too)")


def _output_field(name: str) -> tuple[Any, Any]:
    if name == "score":
        return (float, ...)
    if name == "verdict":
        return (Literal["ok", "suspicious", "intercepted"], ...)
    if name == "reasons":
        return (list[Reason], ...)
    if schema.COLUMNS.get(name) == "Int32":
        return (int | None, None)
    return (str | None, None)


ScoredConnection: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ScoredConnection",
    __doc__="A scored connection: the columns tlsdetect score --format jsonl writes.",
    **{name: _output_field(name) for name in SCORE_OUTPUT_COLUMNS},
)


class ScoreSummary(BaseModel):
    connections: int
    verdicts: dict[str, int]
    top_reasons: dict[str, int]
    top_flagged_clients: dict[str, int]


class ScoreResponse(BaseModel):
    rows: list[ScoredConnection]  # type: ignore[valid-type]
    summary: ScoreSummary
    baseline_generation: int


def _score_request_model(max_batch: int) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A batch of at most {max_batch} connections to score.",
        connections=(list[Connection], Field(max_length=max_batch)),  # type: ignore[valid-type]
    )
    return model


# --- conversions ------------------------------------------------------------------------------------------------
def connections_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated request rows -> a connections table with the schema's dtypes."""
    df = pd.DataFrame.from_records(rows, columns=list(schema.COLUMNS)) if rows else schema.empty()
    for col in schema.LIST_COLUMNS:
        df[col] = pd.Series([tuple(v) if isinstance(v, list) else None for v in df[col]], index=df.index,
                            dtype=object)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    return schema.conform(df)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def _error(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps({"error": code, "detail": detail}), status_code=status, media_type=_JSON, headers=headers)


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "request_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests"}


# --- ASGI middleware (plain ASGI: no per-request task or buffering on the hot path) -----------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    body = _dumps({"error": code, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413 before the app parses any of it."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"request body over the limit of {self.limit} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > self.limit:
                    self.metrics.body_rejected.inc()
                    await _send_error(send, 413, "request_too_large", too_big)
                    return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # read the body here (bounded), then hand the app a replay: a chunked body cannot exceed the limit either
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                self.metrics.body_rejected.inc()
                await _send_error(send, 413, "request_too_large", too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # bounded label values


class Instrument:
    """Count requests by route and status, time them, give the baseline a chance to reload, and answer
    a lookup whose answer is cached (the hot path) without going through the framework."""

    LOOKUP_ROUTE = "/v1/fingerprints/{fingerprint}"
    _PREFIX = "/v1/fingerprints/"

    def __init__(self, app: ASGIApp, metrics: Metrics, holder: BaselineHolder, token: str | None,
                 labels: Mapping[int, str] | None = None) -> None:
        self.app = app
        self.labels = dict(labels or {})
        self.metrics = metrics
        self.holder = holder
        self.auth = None if token is None else b"Bearer " + token.encode()
        self.shape = re.compile(FINGERPRINT_PATTERN)
        self.hit_requests = metrics.requests.labels(self.LOOKUP_ROUTE, "GET", "200")
        self.hit_latency = metrics.latency.labels(self.LOOKUP_ROUTE)
        self.hit_lookups = metrics.lookups.labels("hit")

    def _cached_lookup(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(self._PREFIX):
            return None
        value = path[len(self._PREFIX):]
        if not self.shape.match(value):
            return None
        if self.auth is not None:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not secrets.compare_digest(given, self.auth):
                return None  # the route answers 401
        return self.holder.current.cached(value.lower())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.holder.maybe_reload()
        start = time.perf_counter()
        body = self._cached_lookup(scope)
        if body is not None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            self.hit_lookups.inc()
            self.hit_requests.inc()
            self.hit_latency.observe(time.perf_counter() - start)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set for API routes only: the others are known by their endpoint
            path = getattr(route, "path", None) or self.labels.get(id(scope.get("endpoint")), "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(path, method if method in _METHODS else "other", str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


#: A module global: FastAPI resolves the (string) annotations of the dependency against this module.
_BEARER = HTTPBearer(auto_error=False, description="the token of tlsdetect serve --token-file")

# --- the app ----------------------------------------------------------------------------------------------------
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a body that cannot be read (not UTF-8, bad Content-Length)"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token (when the server has one)"},
    413: {"model": ErrorBody, "description": "request body or batch too large"},
    422: {"model": ErrorBody, "description": "invalid input"},
}


#: Where /docs takes Swagger UI's script, style sheet and icon from (this server, not a CDN).
DOCS_ASSETS = "/docs/assets"


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the files of the installed ``swagger-ui-bundle-v2`` (Swagger UI 5, which
    reads OpenAPI 3.1); without that package there is no ``/docs`` rather than a page that needs a CDN."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError:
        log.warning("no /docs page: swagger-ui-bundle-v2 is not installed (pip install 'tlsdetect[serve]')")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that strips a prefix
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,  # bearer tokens only: no OAuth2 flow to come back from
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the public validator
        )


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

    def check_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        token = settings.token
        if token is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise StarletteHTTPException(401, "missing or wrong bearer token")

    protected = [Depends(check_token)] if settings.token is not None else []
    errors = {k: v for k, v in _ERRORS.items() if settings.token is not None or k != 401}

    # --- errors: always JSON, never a traceback ---
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            if loc[:2] == ["path", "fingerprint"]:
                value = request.path_params.get("fingerprint", "")
                try:
                    describe(str(value), None, knowledge)
                except FingerprintShapeError as shape:
                    return _error(422, "not_a_fingerprint", str(shape))
            if loc[:2] == ["body", "connections"] and len(loc) == 2 and e.get("type") == "too_long":
                return _error(413, "batch_too_large", f"a batch holds at most {settings.max_batch} connections")
            problems.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
        return _error(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return _error(exc.status_code, _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}"), exc.detail,
                      headers or None)

    @app.exception_handler(FingerprintShapeError)
    async def not_a_fingerprint(request: Request, exc: FingerprintShapeError) -> Response:
        return _error(422, "not_a_fingerprint", str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "the server failed on this request; the details are in its log")

    # --- routes ---
    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness and the loaded baseline")
    async def healthz() -> Response:
        gen = holder.current
        return Response(_dumps({
            "status": "ok", "version": __version__, "baseline": str(settings.baseline_dir),
            "baseline_generation": gen.number,
            "baseline_loaded_at": dt.datetime.fromtimestamp(gen.loaded_at, dt.UTC).isoformat(timespec="seconds"),
            "baseline_connections": int(gen.baseline.n_connections_),
            "last_reload_error": holder.last_error,
        }), media_type=_JSON)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics of this server process",
             dependencies=protected, responses={**{k: v for k, v in errors.items() if k == 401},
                                                200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
             response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    inflight: dict[tuple[int, str], asyncio.Future[bytes]] = {}

    async def lookup(gen: Generation, key: str) -> bytes:
        """One computation per (generation, fingerprint) however many requests ask for it at once."""
        body = gen.cached(key)
        if body is not None:
            metrics.lookups.labels("hit").inc()
            return body
        metrics.lookups.labels("miss").inc()
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

    @app.get("/v1/fingerprints/{fingerprint}", response_model=FingerprintInfo, dependencies=protected,
             responses={k: v for k, v in errors.items() if k not in (400, 413)}, tags=["detection"],
             summary="Verdict, known products, prevalence and clients of a JA3, JA3N or JA4")
    async def fingerprint(
        fingerprint: Annotated[str, PathParam(pattern=FINGERPRINT_PATTERN, description=(
            "a JA4 (t13d1516h2_8daaf6152771_02713d6af862) or a JA3/JA3N (32 hex digits)"))],
    ) -> Response:
        gen = holder.current  # the whole request uses this generation, whatever reloads meanwhile
        return Response(await lookup(gen, fingerprint.lower()), media_type=_JSON)

    score_request = _score_request_model(settings.max_batch)

    def score_json(rows: list[dict[str, Any]], gen: Generation) -> bytes:
        from tlsdetect.detect.scoring import score, summarize

        scored = score(connections_frame(rows), gen.baseline, knowledge)
        summary = summarize(scored)
        for verdict, n in summary["verdicts"].items():
            if n:
                metrics.rows_scored.labels(verdict).inc(n)
        records = sinks.to_records(scored[list(SCORE_OUTPUT_COLUMNS)])
        return _dumps(_clean({"rows": records, "summary": summary, "baseline_generation": gen.number}))

    async def score_batch(batch: BaseModel) -> Response:
        gen = holder.current
        rows: list[dict[str, Any]] = batch.model_dump()["connections"]
        body = await run_in_threadpool(score_json, rows, gen)
        return Response(body, media_type=_JSON)

    # the request model depends on settings.max_batch: give FastAPI the class itself, not a string annotation
    score_batch.__annotations__["batch"] = score_request
    app.post("/v1/score", response_model=ScoreResponse, dependencies=protected, responses=errors,
             tags=["detection"], summary="Score a batch of connections as tlsdetect score does")(score_batch)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
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
    score(connections_frame([row, {}]), gen.baseline, gen.knowledge)
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
