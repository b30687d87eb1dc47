"""Portal billing pages: balances, refills, payments, the payment log and commission.

One page per report of ``/api/v1/reports/*`` with a from/to filter, sortable columns,
paging, totals, and a "Download CSV" link that passes the API's own CSV export through
as an attachment. Which rows a user sees is the API's decision (a customer: its own).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.customers import own_account, problems
from gateway.api.portal.listing import error_page, pager_base, query_url, sort_columns
from gateway.api.portal.render import page
from gateway.api.portal.session import Portal, PortalUser

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 50
LEDGER_COLUMNS = (
    ("Date", "created_at", False),
    ("Account", "account_id", False),
    ("Kind", "kind", False),
    ("Amount", "amount_micros", True),
    ("Counterparty", "", False),
    ("Reference", "", False),
    ("Note", "", False),
    ("By", "", False),
)
BALANCE_COLUMNS = (
    ("Account", "name", False),
    ("Kind", "kind", False),
    ("Status", "status", False),
    ("Balance", "balance_micros", True),
    ("Commission", "commission_balance_micros", True),
    ("Credit limit", "credit_limit_micros", True),
    ("In (period)", "", True),
    ("Out (period)", "", True),
)
FILENAME_SAFE = frozenset(string.ascii_letters + string.digits + "-")
LOG_KINDS = (
    "refill",
    "payment",
    "transfer",
    "commission",
    "commission_withdraw",
    "adjustment",
    "recurring",
)


@dataclass(frozen=True, slots=True)
class Tab:
    """One report: its API path and fixed parameters, and who gets to see it."""

    slug: str
    label: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    own: bool = True  # needs an account of one's own (not for the operator)
    below: bool = False  # about the accounts below the caller (not for customers)
    balances: bool = False

    def shown_to(self, user: PortalUser) -> bool:
        if self.own and user.account_id is None:
            return False
        return not (self.below and user.role == "customer")


TABS = (
    Tab("balances", "Balances", "/api/v1/reports/balances", own=False, balances=True),
    Tab("own-refills", "Own refills", "/api/v1/reports/refills", {"scope": "own"}),
    Tab("own-payments", "Own payments", "/api/v1/reports/payments", {"scope": "own"}),
    Tab(
        "customer-refills",
        "Customers' refills",
        "/api/v1/reports/refills",
        {"scope": "customers"},
        own=False,
        below=True,
    ),
    Tab(
        "customer-payments",
        "Customers' payments",
        "/api/v1/reports/payments",
        {"scope": "customers"},
        own=False,
        below=True,
    ),
    Tab("payment-log", "Payment log", "/api/v1/reports/payment-log", own=False),
    Tab("commissions", "Commission", "/api/v1/reports/commissions", below=True),
)
BY_SLUG = {t.slug: t for t in TABS}


def _until(text: str) -> str:
    """The API's exclusive ``to`` for a typed day, which people mean inclusively."""
    try:
        return (date.fromisoformat(text) + timedelta(days=1)).isoformat()
    except ValueError:
        return text  # a time, or no date at all: the API names the field


def _filters(request: Request) -> dict[str, str]:
    keep = ("from", "to", "account_id", "kind", "sort", "order", "offset")
    return {k: v.strip() for k, v in request.query_params.items() if k in keep and v.strip()}


def _api_params(tab: Tab, f: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {**tab.params, **{k: v for k, v in f.items() if k != "to"}}
    if f.get("to"):
        params["to"] = _until(f["to"])
    if tab.slug != "payment-log":
        params.pop("kind", None)
    return params


@router.get("/billing/{slug}.csv")
async def billing_csv(request: Request, slug: str) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    tab = BY_SLUG.get(slug)
    if tab is None or not tab.shown_to(user):
        return page(request, "error.html", status=404)
    f = _filters(request)
    params = _api_params(tab, f)
    params.pop("offset", None)
    reply = await portal.get(tab.path, **params, format="csv")
    if not reply.ok:
        return error_page(request, reply, "The report cannot be downloaded")
    # The API names both scopes' files alike: the portal names them after the tab.
    span = "".join(f"-{f[k][:10]}" for k in ("from", "to") if k in f)
    span = "".join(ch for ch in span if ch in FILENAME_SAFE)
    disposition = f'attachment; filename="{slug}{span}.csv"'
    return Response(
        reply.content,
        media_type=reply.headers.get("content-type", "text/csv; charset=utf-8"),
        headers={"Content-Disposition": disposition},
    )


@router.get("/billing")
async def billing_home(request: Request) -> Response:
    return await billing_tab(request, "balances")


@router.get("/billing/{slug}")
async def billing_tab(request: Request, slug: str) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    tab = BY_SLUG.get(slug)
    if tab is None or not tab.shown_to(user):
        return page(request, "error.html", status=404)
    f = _filters(request)
    f.setdefault("sort", "id" if tab.balances else "created_at")
    f.setdefault("order", "asc" if tab.balances else "desc")
    reply = await portal.get(tab.path, **_api_params(tab, f), limit=PAGE_SIZE)
    if not reply.ok and reply.status != 422:
        return error_page(request, reply, f"{tab.label} cannot be shown")
    errors, _ = problems(reply)
    mine = await own_account(portal)
    path = f"/portal/billing/{tab.slug}"
    spec = BALANCE_COLUMNS if tab.balances else LEDGER_COLUMNS
    return page(
        request,
        "billing.html",
        status=reply.status if reply.status == 422 else 200,
        tab=tab,
        tabs=[t for t in TABS if t.shown_to(user)],
        values=f,
        errors=errors,
        report=reply.body if reply.ok else None,
        cur=mine["currency"] if mine else "",
        columns=sort_columns(path, f, spec),
        pager_base=pager_base(path, f),
        csv_url=query_url(f"/portal/billing/{tab.slug}.csv", f, offset=None),
        tab_url=lambda t: query_url(
            f"/portal/billing/{t.slug}",
            {k: v for k, v in f.items() if k in ("from", "to", "account_id")},
        ),
        kinds=[("", "All kinds")] + [(k, k.replace("_", " ")) for k in LOG_KINDS],
    )
