"""JSON answers: the bytes every answer is made of, and every error as ``{"error": <code>, "detail": ...}``.

The exception handlers installed by :func:`add_error_handlers` turn whatever goes wrong (invalid
input, an unknown route, a bug) into that JSON body: never a stack trace to the caller, the details
of an unexpected failure go to the server's log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tlsdetect.detect.lookup import FingerprintShapeError, describe
from tlsdetect.serve.models import ErrorBody

__all__ = ["ERROR_RESPONSES", "JSON", "STATUS_CODES", "add_error_handlers", "clean", "dumps", "error_response"]

log = logging.getLogger("tlsdetect.serve.app")  # the name the server has always logged under

JSON = "application/json"

#: The ``error`` code of an HTTP error raised by the framework or a route, by status.
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 408: "request_timeout", 406: "not_acceptable", 413: "request_too_large",
                415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests"}

#: The error answers of the OpenAPI document; a route lists those it can give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a body that cannot be read (not UTF-8, bad Content-Length)"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token (when the server has one)"},
    408: {"model": ErrorBody, "description": "the request body did not arrive in time (--body-timeout)"},
    413: {"model": ErrorBody, "description": "request body or batch too large"},
    422: {"model": ErrorBody, "description": "invalid input"},
}


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


def clean(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; numpy and pandas scalars, timestamps and missing values as JSON values."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def error_response(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps({"error": code, "detail": detail}), status_code=status, media_type=JSON, headers=headers)


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """422 with the invalid fields; a path that is no fingerprint says why, a batch too long is 413."""
    problems = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
        if loc[:2] == ["path", "fingerprint"]:
            value = request.path_params.get("fingerprint", "")
            try:
                describe(str(value), None, request.app.state.knowledge)
            except FingerprintShapeError as shape:
                return error_response(422, "not_a_fingerprint", str(shape))
        if loc[:2] == ["body", "connections"] and len(loc) == 2 and e.get("type") == "too_long":
            max_batch = request.app.state.settings.max_batch
            return error_response(413, "batch_too_large", f"a batch holds at most {max_batch} connections")
        problems.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return error_response(422, "invalid_request", problems)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}"), exc.detail,
                          headers or None)


async def _not_a_fingerprint(request: Request, exc: FingerprintShapeError) -> Response:
    return error_response(422, "not_a_fingerprint", str(exc))


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed on this request; the details are in its log")


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON: invalid input, HTTP errors, a malformed fingerprint and anything unexpected."""
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(FingerprintShapeError, _not_a_fingerprint)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal)
