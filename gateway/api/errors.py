"""The one table from management refusals to HTTP statuses.

Every error body has the FastAPI shape ``{"detail": ...}``: field errors are a list
of ``{"loc", "msg", "type"}`` (as for request validation, so a form handles both
alike), anything else ``{"code", "message"}``.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.agents.errors import (
    Conflict,
    Forbidden,
    Invalid,
    ManagementError,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from gateway.balance.moves import MoveRefused
from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

STATUS: dict[type[ManagementError], int] = {
    NotFound: 404,
    Unauthenticated: 401,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
    RateLimited: 429,
}


def _status(exc: ManagementError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


async def _management_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ManagementError)
    headers: dict[str, str] = {}
    if isinstance(exc, Invalid):
        # Where the refused value came from, as FastAPI's own 422s say it.
        where = "query" if exc.field in request.query_params else "body"
        body: object = [{"loc": [where, exc.field], "msg": exc.message, "type": exc.code}]
    else:
        body = {"code": exc.code, "message": exc.message}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": body}, status_code=_status(exc), headers=headers)


async def _move_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MoveRefused)
    return JSONResponse({"detail": {"code": exc.code, "message": exc.detail}}, status_code=409)


async def _backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackendUnavailable)
    log.warning("api.backend_unavailable", extra={"backend": exc.backend, "error": exc.reason})
    return JSONResponse(
        {"detail": {"code": "BACKEND_UNAVAILABLE", "message": f"{exc.backend} unavailable"}},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _unstorable(reason: str) -> JSONResponse:
    body = [{"loc": ["body"], "msg": reason, "type": "value_error"}]
    return JSONResponse({"detail": body}, status_code=422)


async def _bad_text(request: Request, exc: Exception) -> JSONResponse:
    # Lone surrogates survive JSON decoding but not UTF-8 encoding on the way to a store.
    return _unstorable("text is not valid Unicode (unpaired surrogate)")


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The last line of defence: a value PostgreSQL (or asyncpg's encoder) refuses, such
    # as NUL in text or an integer beyond 64 bits, is the client's input, not our crash.
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.info("api.value_refused", extra={"path": request.url.path, "error": reason})
    return _unstorable(f"a value cannot be stored: {reason}")


async def _constraint(request: Request, exc: Exception) -> JSONResponse:
    # Services check what they know; a constraint that still fires means a rule the
    # service does not check itself yet: refuse clearly and leave a trace.
    log.warning(
        "api.constraint_violation",
        extra={"path": request.url.path, "error": str(exc).splitlines()[0]},
    )
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        body = {"code": "ALREADY_EXISTS", "message": "a record with these values already exists"}
        return JSONResponse({"detail": body}, status_code=409)
    return _unstorable("the change breaks a rule of the data: " + str(exc).splitlines()[0])


def install(app: FastAPI) -> None:
    app.add_exception_handler(UnicodeEncodeError, _bad_text)
    app.add_exception_handler(asyncpg.exceptions.DataError, _data_error)
    app.add_exception_handler(asyncpg.exceptions._base.DataError, _data_error)
    app.add_exception_handler(asyncpg.exceptions.IntegrityConstraintViolationError, _constraint)
    app.add_exception_handler(ManagementError, _management_error)
    app.add_exception_handler(MoveRefused, _move_refused)
    app.add_exception_handler(BackendUnavailable, _backend_unavailable)
