"""The one table from management refusals to HTTP statuses.

Every error body has the FastAPI shape ``{"detail": ...}``: field errors are a list
of ``{"loc", "msg", "type"}`` (as for request validation, so a form handles both
alike), anything else ``{"code", "message"}``.
"""

from __future__ import annotations

import logging

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
from gateway.errors import BackendUnavailable

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
        body: object = [{"loc": ["body", exc.field], "msg": exc.message, "type": exc.code}]
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


def install(app: FastAPI) -> None:
    app.add_exception_handler(ManagementError, _management_error)
    app.add_exception_handler(MoveRefused, _move_refused)
    app.add_exception_handler(BackendUnavailable, _backend_unavailable)
