"""One JSON shape for every 4xx and 5xx answer (`ErrorOut`), and the handlers that make it.

HTTP errors, validation errors (which never echo the input back), a database that cannot
answer (503 with Retry-After) and unexpected exceptions (500, logged with the traceback) all
answer `{"status", "code", "detail", "errors"}`. `error_responses` documents them in OpenAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from evotune.api.schemas import ErrorOut, FieldError
from evotune.errors import ServiceUnavailableError

__all__ = [
    "error_body",
    "error_response",
    "error_responses",
    "install_error_handlers",
]

log = logging.getLogger("evotune.api")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}
_DESCRIPTIONS = {
    400: "the request cannot be read",
    401: "missing or wrong bearer token",
    403: "the service has no token: this operation is off",
    404: "not found",
    408: "the request body did not arrive in time",
    409: "conflicts with what is running",
    413: "the request body is too large",
    422: "a parameter or the body is invalid",
    500: "an unexpected error (logged by the service)",
    503: "the database is unavailable or busy; retry after Retry-After seconds",
}
_MAX_DETAIL = 500


def error_body(
    status: int, detail: str, code: str | None = None, errors: Sequence[FieldError] = ()
) -> bytes:
    body = ErrorOut(
        status=status,
        code=code or CODES.get(status, "error"),
        detail=detail[:_MAX_DETAIL],
        errors=list(errors),
    )
    return body.model_dump_json().encode()


def error_response(
    status: int,
    detail: str,
    code: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, detail, code, errors),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the ErrorOut body.

    `descriptions` override the default text by status (keys like `s404="no such study"`).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorOut,
            "description": descriptions.get(f"s{status}", _DESCRIPTIONS.get(status, "error")),
        }
        if status == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        out[status] = entry
    return out


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    # Only where and why: the rejected input (up to the body size limit) is never echoed.
    return [
        FieldError(
            loc=[str(part) if not isinstance(part, int) else part for part in error.get("loc", ())],
            msg=str(error.get("msg", "invalid")),
            type=str(error.get("type", "value_error")),
        )
        for error in exc.errors()
    ]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    detail = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors) or "invalid"
    return error_response(422, detail, errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path allows (FastAPI's 405 names one route's only)."""
    return sorted(
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceUnavailableError)
    return error_response(
        503, exc.detail, code=exc.code, headers={"Retry-After": str(exc.retry_after)}
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error; the service log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ServiceUnavailableError, _unavailable)
    app.add_exception_handler(Exception, _internal_error)
