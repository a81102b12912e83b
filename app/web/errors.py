"""The one boundary where errors become HTTP answers.

Every error answer has the same body, `{"error": {"code", "message",
"field"}}`, where `field` names the offending input (`data.platform`,
`cursor`, `ids[2]`) or is null.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg_pool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.exceptions import (
    ConfigurationError,
    IllegalTransition,
    InvalidInput,
    PostNotFound,
)

logger = logging.getLogger(__name__)

# Codes for Starlette's own HTTP errors (unknown route, wrong method).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A request the web layer refuses, with its HTTP status and error code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def invalid(message: str, field: str | None) -> ApiError:
    """A 422 naming the field at fault."""
    return ApiError(422, "invalid", message, field=field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message, error.field),
        status_code=error.status,
        headers=error.headers,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PostNotFound)
    return error_response(ApiError(404, "not_found", str(exc), field="id"))


async def _illegal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IllegalTransition)
    return error_response(ApiError(409, "illegal_transition", str(exc)))


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return error_response(invalid(str(exc), exc.context.get("field")))


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    # The database is down or saturated: a 503 makes iCadence retry later
    # instead of treating the event as delivered.
    logger.warning(
        "event=http.unavailable path=%s error=%s",
        request.url.path,
        type(exc).__name__,
    )
    return JSONResponse(
        error_body("unavailable", "the database is unavailable; retry later"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _data_error(request: Request, exc: Exception) -> Response:
    # A value PostgreSQL cannot store (a NUL character, an out-of-range
    # time): the input's fault, whichever field carried it.
    message = str(exc).splitlines()[0] if str(exc) else "a value cannot be stored"
    return error_response(invalid(message, None))


async def _internal(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so the server logs the traceback.
    logger.error(
        "event=http.error path=%s error=%s", request.url.path, type(exc).__name__
    )
    return JSONResponse(
        error_body("internal", "internal error; it was logged"), status_code=500
    )


async def _misconfigured(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body("misconfigured", str(exc)), status_code=503)


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    PostNotFound: _not_found,
    IllegalTransition: _illegal,
    InvalidInput: _invalid,
    ConfigurationError: _misconfigured,
    HTTPException: _http,
    psycopg.DataError: _data_error,
    psycopg.OperationalError: _unavailable,
    psycopg_pool.PoolTimeout: _unavailable,
    Exception: _internal,
}
