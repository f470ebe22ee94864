"""The two ASGI middlewares, plain ASGI (no per-request task or buffering on the hot path).

* :class:`BodyLimit` refuses a request body over the limit before anything parses it
  (``Content-Length`` and the bytes actually streamed), and one that does not arrive within its
  deadline (408: a slow client must not hold a connection and a task, issue 18 #12).
* :class:`Instrument`, the outermost, counts and times every request by route and status, gives
  the baseline a chance to reload, and sends a cached lookup answer without entering the framework,
  so a hot fingerprint costs a dict hit.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio

from tlsdetect.serve.holder import BaselineHolder
from tlsdetect.serve.metrics import Metrics
from tlsdetect.serve.models import FINGERPRINT_PATTERN
from tlsdetect.serve.responses import JSON, dumps

__all__ = ["ASGIApp", "BodyLimit", "Instrument"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    """An error answered before the app runs (the body is not read further: the connection closes)."""
    body = dumps({"error": code, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413 before the app parses any of it, and one that is not
    all there ``timeout`` seconds after its head with 408."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics, timeout: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.timeout = timeout

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
        # read the body here (bounded in size and time), then hand the app a replay: a chunked body cannot
        # exceed the limit either
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.timeout) as deadline:
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
        if deadline.cancelled_caught:
            self.metrics.timeouts.labels("body").inc()
            await _send_error(send, 408, "request_timeout",
                              f"the request body did not arrive within {self.timeout:g} s")
            return
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
