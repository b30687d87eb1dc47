"""Portal pages: tickets — the list, opening one, a ticket's messages, reply and close.

A customer's ticket goes to its agent, an agent's to the operator (the API decides);
the list shows what the API lets the user see: an agent's own tickets and its
customers', a customer's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.listing import error_page, pager_base
from gateway.api.portal.render import page
from gateway.api.portal.session import Portal, redirect

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 50
STATUSES = (("", "Any status"), ("open", "Open"), ("answered", "Answered"), ("closed", "Closed"))
SCOPES = (("all", "All I can see"), ("mine", "Mine"), ("handled", "To answer"))


def _form(raw: Any) -> dict[str, str]:
    return {k: str(v) for k, v in raw.items()}


async def _list_page(request: Request, portal: Portal, status: int = 200, **extra: Any) -> Response:
    q = {k: v.strip() for k, v in request.query_params.items()}
    params = {"status": q.get("status", ""), "scope": q.get("scope", "")}
    reply = await portal.get(
        "/api/v1/tickets",
        status=params["status"],
        scope=params["scope"] or None,
        sort="updated_at",
        order="desc",
        offset=q.get("offset"),
        limit=PAGE_SIZE,
    )
    context: dict[str, Any] = {
        "filters": params,
        "statuses": STATUSES,
        "scopes": SCOPES,
        "listing": reply.body if reply.ok else None,
        "pager_base": pager_base("/portal/tickets", params),
        "values": {},
        "errors": {},
        "done": q.get("done", ""),
    }
    if reply.status == 422:
        context["filter_errors"] = reply.field_errors()
    elif not reply.ok:
        return error_page(request, reply, "Tickets cannot be shown")
    context.update(extra)
    return page(request, "tickets.html", status=status, **context)


@router.get("/tickets")
async def tickets_list(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _list_page(request, portal)


@router.post("/tickets")
async def open_ticket(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    form = _form(await request.form())
    reply = await portal.send(
        "POST",
        "/api/v1/tickets",
        {"subject": form.get("subject", "").strip(), "body": form.get("body", "").strip()},
    )
    if reply.ok:
        return redirect(f"/portal/tickets/{reply.body['id']}", "Ticket opened.")
    return await _list_page(
        request,
        portal,
        status=reply.status,
        values=form,
        errors=reply.field_errors(),
        error="" if reply.status == 422 else reply.message(),
    )


async def _ticket_page(
    request: Request, portal: Portal, ticket_id: str, status: int = 200, **extra: Any
) -> Response:
    if not ticket_id.isdigit():
        return page(request, "error.html", status=404, title="No such ticket")
    reply = await portal.get(f"/api/v1/tickets/{ticket_id}")
    if reply.status in (404, 422):
        return page(request, "error.html", status=404, title="No such ticket")
    if not reply.ok:
        return error_page(request, reply, "The ticket cannot be shown")
    context: dict[str, Any] = {"ticket": reply.body, "values": {}, "errors": {}}
    context["done"] = request.query_params.get("done", "")
    context.update(extra)
    return page(request, "tickets_detail.html", status=status, **context)


@router.get("/tickets/{ticket_id}")
async def ticket_detail(request: Request, ticket_id: str) -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _ticket_page(request, portal, ticket_id)


@router.post("/tickets/{ticket_id}/reply")
async def reply_to_ticket(request: Request, ticket_id: str) -> Response:
    portal = Portal(request)
    await portal.login_required()
    if not ticket_id.isdigit():
        return page(request, "error.html", status=404, title="No such ticket")
    form = _form(await request.form())
    reply = await portal.send(
        "POST", f"/api/v1/tickets/{ticket_id}/messages", {"body": form.get("body", "").strip()}
    )
    if reply.ok:
        return redirect(f"/portal/tickets/{ticket_id}", "Reply sent.")
    return await _ticket_page(
        request,
        portal,
        ticket_id,
        status=reply.status,
        values=form,
        errors=reply.field_errors(),
        error="" if reply.status == 422 else reply.message(),
    )


@router.post("/tickets/{ticket_id}/close")
async def close_ticket(request: Request, ticket_id: str) -> Response:
    portal = Portal(request)
    await portal.login_required()
    if not ticket_id.isdigit():
        return page(request, "error.html", status=404, title="No such ticket")
    reply = await portal.send("POST", f"/api/v1/tickets/{ticket_id}/close")
    if reply.ok:
        return redirect(f"/portal/tickets/{ticket_id}", "Ticket closed.")
    return await _ticket_page(
        request, portal, ticket_id, status=reply.status, error=reply.message()
    )
