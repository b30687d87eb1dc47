"""Portal pages: login, password, dashboard (balance, commission, add funds, messages)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gateway.api.deps import SESSION_COOKIE
from gateway.api.portal.render import page, to_micros
from gateway.api.portal.session import Portal, redirect, set_session

router = APIRouter(prefix="/portal", include_in_schema=False)


def _safe_next(target: str) -> str:
    # Only our own pages: an open redirect would make the login page a phishing aid.
    return target if target.startswith("/portal") and not target.startswith("//") else "/portal"


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    return page(request, "login.html", next=next, values={}, errors={})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items()}
    portal = Portal(request)
    reply = await portal.api.post(
        "/api/v1/auth/login",
        {"login": values.get("login", ""), "password": values.get("password", "")},
    )
    if not reply.ok:
        error = "" if reply.status == 422 else reply.message()
        return page(
            request,
            "login.html",
            status=reply.status,
            next=values.get("next", ""),
            values={"login": values.get("login", "")},
            errors=reply.field_errors(),
            error=error,
        )
    response = RedirectResponse(_safe_next(values.get("next", "")), status_code=303)
    cfg = request.app.state.ctx.config.api
    set_session(response, reply.body["token"], cfg.session_ttl_s, cfg.cookie_secure)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    portal = Portal(request)
    if portal.api.token:
        await portal.api.post("/api/v1/auth/logout")
    response = redirect("/portal/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/password")
async def password_form(request: Request, done: str = "") -> Response:
    await Portal(request).login_required()
    return page(request, "password.html", errors={}, done=done)


@router.post("/password")
async def change_password(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    form = {k: str(v) for k, v in (await request.form()).items()}
    if form.get("new_password") != form.get("confirm"):
        return page(
            request, "password.html", status=422, errors={"confirm": "the two entries differ"}
        )
    reply = await portal.send(
        "POST",
        "/api/v1/auth/password",
        {
            "current_password": form.get("current_password", ""),
            "new_password": form.get("new_password", ""),
        },
    )
    if not reply.ok:
        return page(
            request,
            "password.html",
            status=reply.status,
            errors=reply.field_errors(),
            error="" if reply.status == 422 else reply.message(),
        )
    return redirect("/portal/password", "Password changed.")


async def _dashboard_data(portal: Portal) -> dict[str, Any]:
    account = await portal.get("/api/v1/me/account")
    news = await portal.get("/api/v1/announcements", limit=20, sort="published_at", order="desc")
    requests = await portal.get("/api/v1/me/add-funds-requests", limit=10)
    margins = None
    if account.ok and account.body.get("billing_mode") == "wholesale":
        report = await portal.get(f"/api/v1/accounts/{account.body['id']}/margin-report")
        margins = report.body if report.ok else None
    return {
        "margins": margins,
        "account": account.body if account.ok else None,
        "announcements": news.body.get("items", []) if news.ok else [],
        "funds_requests": requests.body.get("items", []) if requests.ok else [],
    }


@router.get("")
async def dashboard(request: Request, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    data = await _dashboard_data(portal)
    return page(
        request,
        "dashboard.html",
        done=done,
        errors={},
        values={"idempotency_key": uuid.uuid4().hex},
        **data,
    )


async def _dashboard_form(
    request: Request, path: str, fields: dict[str, Any], done: str, rename: dict[str, str]
) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("POST", path, fields)
    if reply.ok:
        return redirect("/portal", done)
    data = await _dashboard_data(portal)
    form = {k: str(v) for k, v in (await request.form()).items()}
    return page(
        request,
        "dashboard.html",
        status=reply.status,
        errors={rename.get(k, k): v for k, v in reply.field_errors().items()},
        error="" if reply.status == 422 else reply.message(),
        values=form,
        **data,
    )


@router.post("/commission/withdraw")
async def withdraw(request: Request) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    fields = {
        "amount_micros": to_micros(form.get("amount", "")),
        "idempotency_key": form.get("idempotency_key") or uuid.uuid4().hex,
    }
    return await _dashboard_form(
        request,
        "/api/v1/me/commission/withdraw",
        fields,
        "Commission moved to your balance.",
        {"amount_micros": "amount"},
    )


@router.post("/add-funds")
async def add_funds(request: Request) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    fields = {
        "amount_micros": to_micros(form.get("funds_amount", "")),
        "note": form.get("note", ""),
    }
    return await _dashboard_form(
        request,
        "/api/v1/me/add-funds-requests",
        fields,
        "Request sent to the operator.",
        {"amount_micros": "funds_amount"},
    )
