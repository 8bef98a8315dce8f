"""Every error becomes JSON ``{"error": {"code", "message"}}``; never a traceback in a body.

    >>> body = error_body("NOT_FOUND", "no bundle waggle/x")
    >>> body
    {'error': {'code': 'NOT_FOUND', 'message': 'no bundle waggle/x'}}

Status codes: the service's own errors by class (400 invalid input, 401, 403, 404, 409), FastAPI's
request validation → 400 ``BAD_REQUEST`` (with the first problem in the message), HTTP errors
raised by Starlette (404 unknown path, 405 …) keep their status, library errors with exit code 2
(bad reference, input too large) → 400, a registry failure → 502 ``REGISTRY_UNAVAILABLE``, and
anything else → 500 ``INTERNAL`` with a fixed message. Server errors are logged with their
traceback (secrets never reach the log: settings hold them as ``SecretStr``, URLs are redacted by
the registry client).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ecr_oci.errors import Error, RegistryError
from ecr_oci.server.services.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    ServiceError,
    UnauthorizedError,
)

__all__ = ["ErrorBody", "ErrorDetail", "error_body", "error_response", "install_error_handlers"]

log = logging.getLogger("ecr_oci.server")

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The JSON of every error response; routes name it in ``responses=`` for the OpenAPI."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, InvalidInputError):
        return error_response(400, exc.code, str(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, exc.code, str(exc))
    if isinstance(exc, UnauthorizedError):
        return error_response(401, exc.code, str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ForbiddenError):
        return error_response(403, exc.code, str(exc))
    if isinstance(exc, ConflictError):
        return error_response(409, exc.code, str(exc))
    return error_response(400, exc.code, str(exc))


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    message = "invalid request"
    if errors:
        first = errors[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        # the message names the field and the rule, never echoes the (possibly huge) input
        message = f"{where}: {first.get('msg', 'invalid')}"
    return error_response(400, "BAD_REQUEST", message[:500])


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    code = _STATUS_CODES.get(status, "ERROR" if status < 500 else "INTERNAL")
    message = exc.detail if isinstance(exc.detail, str) and status < 500 else code.lower()
    return error_response(status, code, message, headers=getattr(exc, "headers", None))


def _library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Error)
    if isinstance(exc, RegistryError):
        log.warning("registry error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(502, "REGISTRY_UNAVAILABLE", "the registry failed; try again later")
    if exc.exit_code == 2:
        return error_response(400, "BAD_REQUEST", str(exc)[:500])
    return _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal server error")


class _RefuseNul:
    """400 for a NUL character anywhere in the path or query, before any route sees it.

    Why here: PostgreSQL text cannot hold NUL (the driver raises, which would be a 500), and every
    route takes strings from the path or the query; one check at the edge covers them all. A pure
    ASGI middleware, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` wraps
    every request in extra tasks and streams, ~0.3 ms of the ~1 ms an ``/events`` POST costs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            response = error_response(
                400, "BAD_REQUEST", "a NUL character is not allowed in the path or query"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    """The decoded path or any decoded query key or value holds NUL (``%00`` included)."""
    if "\x00" in scope.get("path", ""):
        return True
    query: bytes = scope.get("query_string", b"")
    if not query:
        return False
    return any(
        "\x00" in k or "\x00" in v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app`` (``create_app`` calls it)."""
    app.add_middleware(_RefuseNul)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Error, _library_error)
    app.add_exception_handler(Exception, _unexpected)
