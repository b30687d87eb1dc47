"""Billing reports: balances, refills, payments, payment log, commissions (JSON and CSV).

Every report takes ``from`` (inclusive) and ``to`` (exclusive) as dates or timestamps
(UTC when no offset is given), ``account_id``, paging and a whitelisted ``sort``, and
``format=csv`` for a download of every matching row (paging ignored, same order, at
most ``api.report_rows_max`` rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.agents import billing
from gateway.agents.billing import REPORTED_KINDS, Report, ReportQuery
from gateway.agents.errors import Invalid
from gateway.api.csvout import csv_response
from gateway.api.deps import Ctx, Page, Paging, User, paging_with
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1/reports", tags=["billing"])


# Ledger reports: newest first unless asked otherwise.
ledger_paging = paging_with("created_at", "desc")

LedgerPage = Annotated[Paging, Depends(ledger_paging)]


def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, "out of range") from None


@dataclass(frozen=True, slots=True)
class Filters:
    start: datetime | None
    end: datetime | None
    account_id: int | None
    csv: bool


def filters(
    start: Annotated[
        datetime | None,
        Query(alias="from", description="From this date or time (inclusive, UTC by default)"),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="Up to this date or time (exclusive)"),
    ] = None,
    account_id: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="Only this account")
    ] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$", description="json or csv")] = "json",
) -> Filters:
    return Filters(_utc(start, "from"), _utc(end, "to"), account_id, format == "csv")


Filter = Annotated[Filters, Depends(filters)]
Scope = Annotated[
    str,
    Query(
        pattern="^(all|own|customers)$",
        description="own: the caller's account; customers: the accounts below it; all: both",
    ),
]


class LedgerItem(BaseModel):
    id: int
    created_at: datetime
    account_id: int
    account_name: str
    kind: str
    pocket: str
    amount_micros: int
    currency: str = Field(description="The account's currency, the one of amount_micros")
    counter_amount_micros: int | None = Field(
        description="Across currencies: this amount in the other side's currency"
    )
    counter_currency: str | None
    exchange_rate: str | None = Field(
        description="The quote used: 1 of exchange_quote's first currency = this of its second"
    )
    exchange_quote: str | None = Field(description='e.g. "EUR/USD"')
    counterparty_account_id: int | None
    counterparty_name: str | None
    reference: str
    note: str
    created_by: str | None


class LedgerReport(BaseModel):
    items: list[LedgerItem]
    total: int
    limit: int
    offset: int
    sum_micros: int
    credit_micros: int
    debit_micros: int


class CommissionReport(BaseModel):
    items: list[LedgerItem]
    total: int
    limit: int
    offset: int
    sum_micros: int
    earned_micros: int
    withdrawn_micros: int


class BalanceItem(BaseModel):
    account_id: int
    name: str
    kind: str
    parent_id: int | None
    billing_mode: str | None
    status: str
    currency: str = Field(description="The account's currency, the one of its amounts")
    balance_micros: int
    commission_balance_micros: int
    credit_limit_micros: int
    commission_rate_bp: int
    period_in_micros: int
    period_out_micros: int


class BalanceReport(BaseModel):
    items: list[BalanceItem]
    total: int
    limit: int
    offset: int
    sum_micros: int
    commission_sum_micros: int


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"},
    401: {},
    404: {},
    422: {},
}


def _query(ctx: Ctx, f: Filters, page: Paging, sorts: dict[str, str], tie: str) -> ReportQuery:
    order_by = page.order_by(sorts, tie)
    if f.csv:
        limit, offset = ctx.config.api.report_rows_max, 0
    else:
        limit, offset = page.limit, page.offset
    return ReportQuery(f.start, f.end, f.account_id, order_by, limit, offset)


def _csv(ctx: Ctx, name: str, header: tuple[str, ...], report: Report) -> Response:
    most = ctx.config.api.report_rows_max
    if report.total > most:
        raise Invalid("format", f"{report.total} rows; narrow from/to to at most {most}")
    rows = (
        [v.isoformat() if isinstance(v, datetime) else v for v in item.values()]
        for item in report.items
    )
    return csv_response(f"{name}.csv", header, rows)


def _ledger(ctx: Ctx, name: str, f: Filters, page: Paging, report: Report) -> Any:
    if f.csv:
        return _csv(ctx, name, billing.LEDGER_HEADER, report)
    return LedgerReport(
        items=[LedgerItem(**i) for i in report.items],
        total=report.total,
        limit=page.limit,
        offset=page.offset,
        sum_micros=report.sum_micros,
        credit_micros=report.totals["credit_micros"],
        debit_micros=report.totals["debit_micros"],
    )


@router.get("/balances", response_model=BalanceReport, responses=_RESPONSES)
async def balances(
    ctx: Ctx,
    user: User,
    f: Filter,
    page: Page,
    kind: Annotated[str | None, Query(pattern="^(customer|agent)$")] = None,
    status: Annotated[str | None, Query(pattern="^(active|disabled|removed)$")] = None,
) -> Any:
    """Balances, commission balances and credit limits of the accounts the caller sees,
    with the main-balance credits and debits booked between from and to."""
    query = _query(ctx, f, page, billing.BALANCE_SORTS, "a.id")
    report = await billing.balances(ctx, user, query, kind, status)
    if f.csv:
        return _csv(ctx, "balances", billing.BALANCE_HEADER, report)
    return BalanceReport(
        items=[BalanceItem(**i) for i in report.items],
        total=report.total,
        limit=page.limit,
        offset=page.offset,
        sum_micros=report.sum_micros,
        commission_sum_micros=report.totals["commission_sum_micros"],
    )


@router.get("/refills", response_model=LedgerReport, responses=_RESPONSES)
async def refills(ctx: Ctx, user: User, f: Filter, page: LedgerPage, scope: Scope = "all") -> Any:
    """Refills and transfers received: own (the caller's account) or customers' (below)."""
    query = _query(ctx, f, page, billing.LEDGER_SORTS, "e.id")
    return _ledger(ctx, "refills", f, page, await billing.refills(ctx, user, query, scope))


@router.get("/payments", response_model=LedgerReport, responses=_RESPONSES)
async def payments(ctx: Ctx, user: User, f: Filter, page: LedgerPage, scope: Scope = "all") -> Any:
    """Payments recorded: own (the caller's account) or customers' (below)."""
    query = _query(ctx, f, page, billing.LEDGER_SORTS, "e.id")
    return _ledger(ctx, "payments", f, page, await billing.payments(ctx, user, query, scope))


@router.get("/payment-log", response_model=LedgerReport, responses=_RESPONSES)
async def payment_log(
    ctx: Ctx,
    user: User,
    f: Filter,
    page: LedgerPage,
    scope: Scope = "all",
    kind: Annotated[
        str | None,
        Query(
            pattern=f"^({'|'.join(REPORTED_KINDS)})$",
            description="Only this kind of entry",
        ),
    ] = None,
) -> Any:
    """Every money-move entry (no call debits), newest first, with counterparty and author."""
    query = _query(ctx, f, page, billing.LEDGER_SORTS, "e.id")
    report = await billing.payment_log(ctx, user, query, scope, kind)
    return _ledger(ctx, "payment-log", f, page, report)


@router.get("/commissions", response_model=CommissionReport, responses=_RESPONSES)
async def commissions(ctx: Ctx, user: User, f: Filter, page: LedgerPage) -> Any:
    """Commission earned and withdrawn (the remittance history), with totals."""
    query = _query(ctx, f, page, billing.LEDGER_SORTS, "e.id")
    report = await billing.commissions(ctx, user, query)
    if f.csv:
        return _csv(ctx, "commissions", billing.LEDGER_HEADER, report)
    return CommissionReport(
        items=[LedgerItem(**i) for i in report.items],
        total=report.total,
        limit=page.limit,
        offset=page.offset,
        sum_micros=report.sum_micros,
        earned_micros=report.totals["earned_micros"],
        withdrawn_micros=report.totals["withdrawn_micros"],
    )
