"""Portal pages: invoices — the list the user may see, downloads, issuing one.

An account sees its own invoices, an agent also its customers' (the API decides);
PDF and CSV downloads pass the API's attachment through. Agents and the operator
may issue the previous month's invoice of an account below them on demand (the
monthly job does it for everyone anyway).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.listing import attachment, error_page, pager_base
from gateway.api.portal.render import page
from gateway.api.portal.session import Portal, redirect

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 50
FORMATS = ("pdf", "csv")


async def _list_page(request: Request, portal: Portal, status: int = 200, **extra: Any) -> Response:
    q = {k: v.strip() for k, v in request.query_params.items()}
    params = {"account_id": q.get("account_id", "")}
    reply = await portal.get(
        "/api/v1/invoices",
        account_id=params["account_id"] or None,
        offset=q.get("offset"),
        limit=PAGE_SIZE,
    )
    context: dict[str, Any] = {
        "filters": params,
        "listing": reply.body if reply.ok else None,
        "pager_base": pager_base("/portal/invoices", params),
        "values": {},
        "errors": {},
        "done": q.get("done", ""),
    }
    if reply.status == 422:
        context["filter_errors"] = reply.field_errors()
    elif not reply.ok:
        return error_page(request, reply, "Invoices cannot be shown")
    context.update(extra)
    return page(request, "invoices.html", status=status, **context)


@router.get("/invoices")
async def invoices_list(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _list_page(request, portal)


@router.post("/invoices")
async def issue_invoice(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    account = form.get("account_id", "")
    reply = await portal.send(
        "POST", "/api/v1/invoices", {"account_id": int(account) if account.isdigit() else account}
    )
    if reply.ok:
        number = reply.body["number"]
        done = f"Invoice {number} issued." if reply.status == 201 else f"Already issued: {number}."
        return redirect("/portal/invoices", done)
    return await _list_page(
        request,
        portal,
        status=reply.status,
        values=form,
        errors=reply.field_errors(),
        error="" if reply.status == 422 else reply.message(),
    )


@router.get("/invoices/{invoice_id}.{fmt}")
async def invoice_download(request: Request, invoice_id: str, fmt: str) -> Response:
    portal = Portal(request)
    await portal.login_required()
    if not invoice_id.isdigit() or fmt not in FORMATS:
        return page(request, "error.html", status=404, title="No such invoice")
    reply = await portal.get(f"/api/v1/invoices/{invoice_id}/{fmt}")
    if not reply.ok:
        return error_page(request, reply, "The invoice cannot be downloaded")
    return attachment(reply, f"invoice-{invoice_id}.{fmt}")
