"""Portal pages of an agent's customers: list, create (one or a batch), edit, remove,
money in, caller-IDs, extensions and the latest calls.

Every page reads and writes through the JSON API (``/api/v1/customers``,
``/api/v1/transfers``, ``/api/v1/accounts/{id}/refills|payments``, ``/api/v1/cdrs``);
a refusal is shown next to its form field, or as an alert when it is about no field.
Passwords and SIP secrets of new customers are shown once, on the page that answers
the creating POST (marked ``no-store``): the portal keeps no copy of them.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal import care
from gateway.api.portal.client import ApiReply
from gateway.api.portal.listing import error_page, pager_base, sort_columns
from gateway.api.portal.render import page, to_micros
from gateway.api.portal.session import Portal, PortalUser, redirect

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 25
OPTIONS_MAX = 500
NO_STORE = {"Cache-Control": "no-store"}
LIST_COLUMNS = (
    ("ID", "id", True),
    ("Name", "name", False),
    ("Balance", "balance_micros", True),
    ("Status", "status", False),
    ("Credit limit", "", True),
    ("Agent", "", False),
    ("Created", "created_at", False),
)
# 409 codes that are about one field of the form that was sent: (field, reason shown;
# None: the API's own message).
CONFLICT_FIELDS: dict[str, tuple[str, str | None]] = {
    "LOGIN_TAKEN": ("login", None),
    "EXTENSION_TAKEN": ("username", None),
    "CALLER_ID_TAKEN": ("number", None),
    # Only the paying agent can run short: the API's text is in micro-units.
    "INSUFFICIENT_FUNDS": ("amount", "more than your available balance"),
}


def problems(
    reply: ApiReply, rename: Mapping[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """The refusal as ``({form field: reason}, alert text)``: API field names become the
    form's (``rename``; ``a.b.0`` matches ``a.b``), known 409 codes land on their field."""
    rename = rename or {}
    errors: dict[str, str] = {}
    for name, reason in reply.field_errors().items():
        key = next((rename[p] for p in _prefixes(name) if p in rename), name)
        errors.setdefault(key, reason)
    if reply.status == 422:
        return errors, ""
    body = reply.body if isinstance(reply.body, dict) else {}
    detail = body.get("detail")
    code = detail.get("code") if isinstance(detail, dict) else None
    if isinstance(code, str) and code in CONFLICT_FIELDS:
        field, text = CONFLICT_FIELDS[code]
        errors[field] = text or reply.message()
        return errors, ""
    return errors, reply.message()


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def number_or_text(text: str) -> int | str | None:
    """A typed whole number as int, blank as None, anything else as the text itself (so
    the API's validation names the field)."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def amount(text: str) -> int | str:
    """A typed amount in micro-units (blank: 0 is NOT assumed; the API names the field)."""
    return to_micros(text) if text.strip() else ""


def emails(text: str) -> list[str]:
    """Contact e-mails typed separated by commas, spaces or lines."""
    return [e for e in text.replace(",", " ").split() if e]


async def form_of(request: Request) -> dict[str, str]:
    return {k: str(v).strip() for k, v in (await request.form()).items()}


async def own_account(portal: Portal) -> dict[str, Any] | None:
    reply = await portal.get("/api/v1/me/account")
    return reply.body if reply.ok else None


async def agent_names(portal: Portal) -> dict[int, str]:
    """Names of the caller's own account and the sub-agents it sees."""
    names: dict[int, str] = {}
    mine = await own_account(portal)
    if mine is not None:
        names[int(mine["id"])] = f"{mine['name']} (you)"
    agents = await portal.get("/api/v1/agents", limit=OPTIONS_MAX, sort="name")
    if agents.ok:
        names.update({int(a["id"]): str(a["name"]) for a in agents.body["items"]})
    return names


async def rate_group_options(portal: Portal) -> list[tuple[str, str]]:
    groups = await portal.get("/api/v1/rate-groups", limit=OPTIONS_MAX, sort="name")
    items = groups.body["items"] if groups.ok else []
    return [("", "— choose —")] + [(str(g["id"]), f"{g['name']} · {g['currency']}") for g in items]


# -- the list -----------------------------------------------------------------------------


@router.get("/customers")
async def customer_list(request: Request, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    q = {k: v.strip() for k, v in request.query_params.items() if k != "done"}
    params = {
        "q": q.get("q"),
        "status": q.get("status"),
        "sort": q.get("sort") or "name",
        "order": q.get("order") or "asc",
    }
    reply = await portal.get("/api/v1/customers", **params, offset=q.get("offset"), limit=PAGE_SIZE)
    if not reply.ok and reply.status != 422:
        return error_page(request, reply, "Customers cannot be shown")
    errors, _ = problems(reply)
    return page(
        request,
        "customers.html",
        status=reply.status if reply.status == 422 else 200,
        done=done,
        values=q,
        errors=errors,
        listing=reply.body if reply.ok else None,
        columns=sort_columns("/portal/customers", params, LIST_COLUMNS),
        pager_base=pager_base("/portal/customers", params),
        agents=await agent_names(portal),
    )


# -- create one ---------------------------------------------------------------------------

CREATE_RENAME = {
    "credit_limit_micros": "credit_limit",
    "max_concurrent_calls": "max_calls",
    "extension.username": "username",
    "extension.secret": "secret",
    "extension": "username",
}


async def _create_form(
    request: Request, portal: Portal, user: PortalUser, status: int = 200, **ctx: Any
) -> Response:
    parents = [("", "Me" if user.account_id else "No agent (top level)")]
    parents += [(str(i), n) for i, n in (await agent_names(portal)).items() if i != user.account_id]
    ctx.setdefault("values", {})
    ctx.setdefault("errors", {})
    return page(
        request,
        "customer_new.html",
        status=status,
        rate_groups=await rate_group_options(portal),
        parents=parents,
        **ctx,
    )


@router.get("/customers/new")
async def new_customer_form(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    return await _create_form(request, portal, user)


def _customer_body(f: Mapping[str, str], user: PortalUser) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f.get("name", ""),
        "rate_group_id": number_or_text(f.get("rate_group_id", "")),
        "credit_limit_micros": amount(f.get("credit_limit") or "0"),
        "contact_emails": emails(f.get("contact_emails", "")),
    }
    if f.get("parent_id"):
        body["parent_id"] = number_or_text(f["parent_id"])
    elif user.account_id is None:
        body["parent_id"] = None  # the operator's explicit choice: a top-level customer
    for name, key in (("max_concurrent_calls", "max_calls"),):
        if f.get(key):
            body[name] = number_or_text(f[key])
    for name in ("currency", "login", "password"):
        if f.get(name):
            body[name] = f[name]
    if f.get("with_extension"):
        body["extension"] = {
            "username": f.get("username") or None,
            "secret": f.get("secret") or None,
            "description": f.get("ext_description", ""),
        }
    return body


@router.post("/customers/new")
async def create_customer(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    f = await form_of(request)
    reply = await portal.send("POST", "/api/v1/customers", _customer_body(f, user))
    if not reply.ok:
        errors, error = problems(reply, CREATE_RENAME)
        f.pop("password", None)
        return await _create_form(
            request, portal, user, reply.status, values=f, errors=errors, error=error
        )
    created = reply.body
    if not created.get("login") and not created.get("extension"):
        return redirect(
            f"/portal/customers/{created['id']}", f"Customer {created['name']} created."
        )
    # Credentials: this answer is the only place the generated password is ever shown.
    response = page(
        request, "customer_created.html", status=201, created=created, sip_host=_host(request)
    )
    response.headers.update(NO_STORE)
    return response


# -- batch --------------------------------------------------------------------------------

BATCH_RENAME = {
    "credit_limit_micros": "credit_limit",
    "max_concurrent_calls": "max_calls",
}


@router.get("/customers/batch")
async def batch_form(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    return await _batch_form(request, portal, user, values={"name_prefix": "customer-"})


async def _batch_form(
    request: Request, portal: Portal, user: PortalUser, status: int = 200, **ctx: Any
) -> Response:
    ctx.setdefault("errors", {})
    parents = [("", "Me" if user.account_id else "No agent (top level)")]
    parents += [(str(i), n) for i, n in (await agent_names(portal)).items() if i != user.account_id]
    return page(
        request,
        "customers_batch.html",
        status=status,
        rate_groups=await rate_group_options(portal),
        parents=parents,
        **ctx,
    )


@router.post("/customers/batch")
async def create_batch(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    f = await form_of(request)
    body: dict[str, Any] = {
        "rate_group_id": number_or_text(f.get("rate_group_id", "")),
        "credit_limit_micros": amount(f.get("credit_limit") or "0"),
        "contact_emails": emails(f.get("contact_emails", "")),
        "name_prefix": f.get("name_prefix") or "customer-",
    }
    if f.get("csv"):
        body["csv"] = f["csv"]
    else:
        body["count"] = number_or_text(f.get("count", ""))
    if f.get("max_calls"):
        body["max_concurrent_calls"] = number_or_text(f["max_calls"])
    if f.get("parent_id"):
        body["parent_id"] = number_or_text(f["parent_id"])
    elif user.account_id is None:
        body["parent_id"] = None
    reply = await portal.send("POST", "/api/v1/customers/batch", body, params={"format": "csv"})
    if not reply.ok:
        errors, error = problems(reply, BATCH_RENAME)
        lines = [f"line {k.split('.')[1]}: {v}" for k, v in errors.items() if k.startswith("csv.")]
        errors = {k: v for k, v in errors.items() if not k.startswith("csv.")}
        if lines:
            errors["csv"] = "; ".join(lines)
        return await _batch_form(
            request, portal, user, reply.status, values=f, errors=errors, error=error
        )
    if f.get("as") == "csv":
        name = "customers-batch.csv"
        return Response(
            reply.content,
            status_code=201,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
        )
    rows = list(csv.DictReader(io.StringIO(reply.content.decode("utf-8"))))
    response = page(
        request,
        "customers_batch_result.html",
        status=201,
        rows=rows,
        sip_host=_host(request),
        csv_href="data:text/csv;base64," + base64.b64encode(reply.content).decode("ascii"),
    )
    response.headers.update(NO_STORE)
    return response


# -- one customer -------------------------------------------------------------------------


def _host(request: Request) -> str:
    """The host the operator's phones register to: the one this page was asked on."""
    return request.url.hostname or "localhost"


async def _detail(
    request: Request, portal: Portal, customer_id: int, status: int = 200, **ctx: Any
) -> Response:
    base = f"/api/v1/customers/{customer_id}"
    customer = await portal.get(base)
    if not customer.ok:
        return error_page(request, customer, "Customer not found")
    account = customer.body
    caller_ids = await portal.get(f"{base}/caller-ids", limit=100, sort="number")
    extensions = await portal.get(f"{base}/extensions", limit=100, sort="username")
    cdrs = await portal.get(
        "/api/v1/cdrs", account_id=customer_id, limit=20, sort="setup_at", order="desc"
    )
    group = await portal.get(f"/api/v1/rate-groups/{account['rate_group_id']}")
    care_reply = await portal.get(f"/api/v1/accounts/{customer_id}/low-balance")
    mine = await own_account(portal)
    ctx.setdefault("care_values", care.values(care_reply.body if care_reply.ok else None))
    ctx.setdefault("values", {})
    ctx.setdefault("errors", {})
    ctx.setdefault("form", "")
    ctx["values"].setdefault("move", "transfer")
    ctx["values"]["idempotency_key"] = uuid.uuid4().hex
    return page(
        request,
        "customer_detail.html",
        status=status,
        c=account,
        cur=account["currency"],
        rate_group=group.body if group.ok else None,
        caller_ids=caller_ids.body["items"] if caller_ids.ok else [],
        extensions=extensions.body["items"] if extensions.ok else [],
        cdrs=cdrs.body if cdrs.ok else None,
        mine=mine,
        care=care_reply.body if care_reply.ok else None,
        refill_outcomes=care.REFILL_OUTCOMES,
        moves=MOVES,
        sip_host=_host(request),
        **ctx,
    )


@router.get("/customers/{customer_id}")
async def customer_detail(request: Request, customer_id: int, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _detail(request, portal, customer_id, done=done)


async def _detail_form(
    request: Request,
    customer_id: int,
    form: str,
    call: tuple[str, str, Any],
    done: str | None,
    rename: Mapping[str, str] | None = None,
) -> Response:
    """Send one detail-page form to the API: back to the page (303) with ``done``, or the
    page again with the form's errors. ``done`` None: the reply's ``duplicate`` says."""
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    method, path, body = call
    reply = await portal.send(method, path, body)
    if reply.ok:
        if done is None:
            duplicate = isinstance(reply.body, dict) and reply.body.get("duplicate")
            done = "Already booked: nothing moved again." if duplicate else _moved(f)
        return redirect(f"/portal/customers/{customer_id}", done)
    errors, error = problems(reply, rename)
    return await _detail(
        request, portal, customer_id, reply.status, form=form, values=f, errors=errors, error=error
    )


MOVES = {
    "transfer": "Transfer from my balance",
    "refill": "Refill",
    "payment": "Payment received",
}


def _moved(f: Mapping[str, str]) -> str:
    what = {"transfer": "Transfer", "refill": "Refill", "payment": "Payment"}
    return f"{what.get(f.get('move', ''), 'Move')} of {f.get('amount', '')} booked."


@router.post("/customers/{customer_id}/money")
async def move_money(request: Request, customer_id: int) -> Response:
    f = await form_of(request)
    move = f.get("move", "transfer")
    body: dict[str, Any] = {
        "amount_micros": amount(f.get("amount", "")),
        "idempotency_key": f.get("idempotency_key") or uuid.uuid4().hex,
        "note": f.get("note", ""),
    }
    if move == "refill":
        path = f"/api/v1/accounts/{customer_id}/refills"
    elif move == "payment":
        path = f"/api/v1/accounts/{customer_id}/payments"
        body["reference"] = f.get("reference", "")
    else:
        path = "/api/v1/transfers"
        body["to_account_id"] = customer_id
    return await _detail_form(
        request, customer_id, "money", ("POST", path, body), None, {"amount_micros": "amount"}
    )


@router.post("/customers/{customer_id}/low-balance")
async def set_low_balance(request: Request, customer_id: int) -> Response:
    f = await form_of(request)
    path = f"/api/v1/accounts/{customer_id}/low-balance"
    call = ("PUT", path, care.body(f))
    return await _detail_form(
        request, customer_id, "care", call, "Low-balance care saved.", care.RENAME
    )


@router.post("/customers/{customer_id}/caller-ids")
async def add_caller_id(request: Request, customer_id: int) -> Response:
    f = await form_of(request)
    body = {"number": f.get("number", ""), "description": f.get("cid_description", "")}
    path = f"/api/v1/customers/{customer_id}/caller-ids"
    done = f"Caller-ID {f.get('number', '')} added."
    return await _detail_form(
        request,
        customer_id,
        "caller-id",
        ("POST", path, body),
        done,
        {"description": "cid_description"},
    )


@router.post("/customers/{customer_id}/caller-ids/{caller_id}/delete")
async def delete_caller_id(request: Request, customer_id: int, caller_id: int) -> Response:
    call = ("DELETE", f"/api/v1/caller-ids/{caller_id}", None)
    return await _detail_form(request, customer_id, "caller-id", call, "Caller-ID deleted.")


@router.post("/customers/{customer_id}/extensions")
async def add_extension(request: Request, customer_id: int) -> Response:
    f = await form_of(request)
    body = {
        "username": f.get("username") or None,
        "secret": f.get("secret") or None,
        "description": f.get("ext_description", ""),
    }
    path = f"/api/v1/customers/{customer_id}/extensions"
    return await _detail_form(
        request,
        customer_id,
        "extension",
        ("POST", path, body),
        "Extension added.",
        {"description": "ext_description"},
    )


@router.post("/customers/{customer_id}/extensions/{extension_id}/delete")
async def delete_extension(request: Request, customer_id: int, extension_id: int) -> Response:
    call = ("DELETE", f"/api/v1/extensions/{extension_id}", None)
    return await _detail_form(request, customer_id, "extension", call, "Extension deleted.")


# -- edit and remove ----------------------------------------------------------------------


@router.get("/customers/{customer_id}/edit")
async def edit_form(request: Request, customer_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.get(f"/api/v1/customers/{customer_id}")
    if not reply.ok:
        return error_page(request, reply, "Customer not found")
    c = reply.body
    values = {
        "name": c["name"],
        "credit_limit": f"{Decimal(c['credit_limit_micros']) / 1_000_000:f}",
        "max_calls": "" if c["max_concurrent_calls"] is None else str(c["max_concurrent_calls"]),
        "rate_group_id": str(c["rate_group_id"] or ""),
        "status": c["status"],
        "contact_emails": ", ".join(c["contact_emails"]),
    }
    return await _edit_page(request, portal, c, values=values)


async def _edit_page(
    request: Request, portal: Portal, c: dict[str, Any], status: int = 200, **ctx: Any
) -> Response:
    ctx.setdefault("errors", {})
    return page(
        request,
        "customer_edit.html",
        status=status,
        c=c,
        rate_groups=await rate_group_options(portal),
        **ctx,
    )


@router.post("/customers/{customer_id}/edit")
async def edit_customer(request: Request, customer_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    body = {
        "name": f.get("name", ""),
        "credit_limit_micros": amount(f.get("credit_limit") or "0"),
        "max_concurrent_calls": number_or_text(f.get("max_calls", "")),
        "rate_group_id": number_or_text(f.get("rate_group_id", "")),
        "status": f.get("status") or None,
        "contact_emails": emails(f.get("contact_emails", "")),
    }
    reply = await portal.send("PATCH", f"/api/v1/customers/{customer_id}", body)
    if reply.ok:
        return redirect(f"/portal/customers/{customer_id}", "Customer saved.")
    current = await portal.get(f"/api/v1/customers/{customer_id}")
    if not current.ok:
        return error_page(request, current, "Customer not found")
    errors, error = problems(reply, CREATE_RENAME)
    return await _edit_page(
        request, portal, current.body, reply.status, values=f, errors=errors, error=error
    )


@router.post("/customers/{customer_id}/delete")
async def delete_customer(request: Request, customer_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("DELETE", f"/api/v1/customers/{customer_id}")
    if reply.ok:
        return redirect("/portal/customers", "Customer removed.")
    if reply.status == 404:
        return error_page(request, reply, "Customer not found")
    _, error = problems(reply)
    return await _detail(request, portal, customer_id, reply.status, error=error)
