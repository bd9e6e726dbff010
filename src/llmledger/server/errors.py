"""One JSON error shape for the whole API, and the mapping of llmledger's errors onto it.

Every error answer, whatever raised it, is::

    {"ok": false, "status": 422, "error": "invalid_event", "message": "usage.input_tokens: ...",
     "details": ["..."]}

``error`` is a stable code for programs, ``message`` a sentence for people and
``details`` (optional) lists the individual problems.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmledger.core.errors import (
    BudgetError,
    ConfigError,
    CurrencyError,
    InvalidEventError,
    InvalidLimitError,
    LedgerError,
    StoreUnavailableError,
)
from llmledger.query import InvalidQueryError
from llmledger.server.keys import UnknownKeyError
from llmledger.store import WriteError
from llmledger.store.budget import QueryTimeoutError
from llmledger.wire.parse import describe_validation_error

__all__ = [
    "AnswerUnexpected",
    "ApiError",
    "ConflictError",
    "NotFoundError",
    "classify_error",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("llmledger.server")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(LedgerError):
    """An error answer with a status and a code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers


class NotFoundError(ApiError, LookupError):
    """The resource does not exist (or is outside the caller's tenant)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class ConflictError(ApiError):
    """The resource exists already (a dated price row or rate is never overwritten)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error shape as a response.

    Example:
        >>> error_response(404, "no event 'x'").body
        b'{"ok":false,"status":404,"error":"not_found","message":"no event \\'x\\'"}'
    """
    body: dict[str, Any] = {
        "ok": False,
        "status": status,
        "error": code or _CODES.get(status, "error"),
        "message": message,
    }
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def classify_error(exc: Exception) -> tuple[int, str, dict[str, str] | None]:
    """The status, error code and headers of the answer to a library error."""
    if isinstance(exc, UnknownKeyError):
        return 404, "not_found", None
    if isinstance(exc, InvalidQueryError):
        return 400, "invalid_query", None
    if isinstance(exc, CurrencyError):
        return 400, "unknown_currency", None
    if isinstance(exc, InvalidEventError):
        return 422, "invalid_event", None
    if isinstance(exc, InvalidLimitError):
        return 422, "invalid_limit", None
    if isinstance(exc, BudgetError):
        return 422, "invalid_budget", None
    if isinstance(exc, ConfigError):
        return 422, "invalid_request", None
    if isinstance(exc, WriteError) and not exc.retryable:
        return 500, "internal_error", None
    if isinstance(exc, QueryTimeoutError):
        return 503, "query_timeout", {"Retry-After": "5"}
    if isinstance(exc, StoreUnavailableError | WriteError):
        # The database unreachable, restarting, locked or out of connections.
        return 503, "unavailable", {"Retry-After": "1"}
    return 500, "internal_error", None


class AnswerUnexpected:
    """Answer an error no handler knows with the one shape, keeping the connection open.

    Starlette's outermost layer answers such an error too, then raises it again
    to the server, which closes the connection; here it is answered and logged,
    and the client's connection stays usable.  An error after the answer has
    started goes on up.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            log.error("llmledger service: unexpected error", exc_info=exc)
            await error_response(500, "internal error")(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through :func:`error_response`."""
    app.add_middleware(AnswerUnexpected)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers
        )

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else _CODES.get(exc.status_code, "")
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            message = "unknown field" if item.get("type") == "extra_forbidden" else item["msg"]
            details.append(f"{where}: {message}" if where else str(message))
        return error_response(422, "; ".join(details), details=details)

    @app.exception_handler(pydantic.ValidationError)
    async def _invalid_model(_request: Request, exc: pydantic.ValidationError) -> JSONResponse:
        message = describe_validation_error(exc)
        return error_response(422, message, details=message.split("; "))

    @app.exception_handler(LedgerError)
    async def _ledger_error(_request: Request, exc: LedgerError) -> JSONResponse:
        status, code, headers = classify_error(exc)
        if status >= 500:
            log.error("llmledger service: %s", exc, exc_info=exc)
            message = str(exc) if status == 503 else "internal error"
        else:
            message = str(exc)
        return error_response(status, message, code=code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("llmledger service: unexpected error", exc_info=exc)
        return error_response(500, "internal error")
