"""Invoices: issue on demand, list, get, download as PDF or CSV."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.agents import invoices
from gateway.agents.invoices import InvoiceDetail
from gateway.api.csvout import csv_response
from gateway.api.deps import Ctx, Manager, Page, User
from gateway.api.invoice_pdf import CSV_HEADER, csv_rows, render_pdf
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["invoices"])

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


class InvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: Annotated[int, Field(ge=1, le=BIGINT_MAX)]
    period_start: AwareDatetime | None = Field(
        None, description="Default: the first day of the previous month, 00:00 UTC"
    )
    period_end: AwareDatetime | None = Field(
        None, description="Exclusive; default: one month after period_start. Not in the future"
    )


class InvoiceOut(BaseModel):
    id: int
    number: str = Field(description="{prefix}-{year}-{n:06d}, gapless per issuer and year")
    account_id: int
    account_name: str
    issuer_account_id: int | None = Field(description="The issuing agent; null: the operator")
    issuer_name: str
    period_start: datetime
    period_end: datetime = Field(description="Exclusive")
    currency: str
    opening_balance_micros: int
    closing_balance_micros: int = Field(description="The account's balance at period_end")
    charges_micros: int = Field(description="Calls and recurring fees of the period: the tax base")
    tax_rate_bp: int
    tax_inclusive: bool
    net_micros: int
    tax_micros: int
    gross_micros: int
    issued_at: datetime


class MoveOut(BaseModel):
    at: datetime
    kind: str = Field(description="The ledger kind (refill, payment, recurring, ...)")
    label: str
    pocket: str = Field(description="main (the balance) or commission")
    amount_micros: int
    reference: str
    note: str


class CallsOut(BaseModel):
    prefix: str
    destination: str
    calls: int
    billed_s: int
    cost_micros: int = Field(description="At the account's own level of the chain")


class InvoiceDetailOut(InvoiceOut):
    moves: list[MoveOut]
    calls: list[CallsOut]
    calls_micros: int = Field(description="The period's call debits, as the balance counts them")


class InvoiceList(BaseModel):
    items: list[InvoiceOut]
    total: int
    limit: int
    offset: int


def _detail(detail: InvoiceDetail) -> InvoiceDetailOut:
    return InvoiceDetailOut(
        **asdict(detail.invoice),
        moves=[MoveOut(**asdict(m)) for m in detail.moves],
        calls=[CallsOut(**asdict(c)) for c in detail.calls],
        calls_micros=detail.calls_micros,
    )


@router.post("/invoices", status_code=201, response_model=InvoiceDetailOut, responses=ERRORS)
async def issue_invoice(
    body: InvoiceIn, ctx: Ctx, user: Manager, response: Response
) -> InvoiceDetailOut:
    """Issue an account's invoice now (agents for the accounts below them, the operator
    for all). The same period again: 200 with the invoice already issued; a period
    overlapping another invoice: 409 PERIOD_INVOICED."""
    issued = await invoices.issue_on_demand(
        ctx, user, body.account_id, body.period_start, body.period_end
    )
    if not issued.created:
        response.status_code = 200
    return _detail(issued.detail)


@router.get("/invoices", response_model=InvoiceList, responses=ERRORS)
async def list_invoices(
    ctx: Ctx,
    user: User,
    page: Page,
    account_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> InvoiceList:
    """The invoices the caller may see (its own, its customers'), newest period first."""
    items, total = await invoices.list_invoices(ctx, user, account_id, page)
    return InvoiceList(
        items=[InvoiceOut(**asdict(v)) for v in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/invoices/{invoice_id}", response_model=InvoiceDetailOut, responses=ERRORS)
async def get_invoice(invoice_id: Id, ctx: Ctx, user: User) -> InvoiceDetailOut:
    """One invoice with its money moves and calls by destination."""
    return _detail(await invoices.get_invoice(ctx, user, invoice_id))


@router.get(
    "/invoices/{invoice_id}/pdf",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"application/pdf": {}}}},
)
async def invoice_pdf(invoice_id: Id, ctx: Ctx, user: User) -> Response:
    """The invoice as a PDF attachment."""
    detail = await invoices.get_invoice(ctx, user, invoice_id)
    # ReportLab is synchronous and CPU-bound: off the event loop.
    pdf = await asyncio.to_thread(render_pdf, detail)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{detail.invoice.number}.pdf"'},
    )


@router.get(
    "/invoices/{invoice_id}/csv",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
async def invoice_csv(invoice_id: Id, ctx: Ctx, user: User) -> Response:
    """The invoice as CSV: header lines, each money move, calls, totals and tax."""
    detail = await invoices.get_invoice(ctx, user, invoice_id)
    return csv_response(f"{detail.invoice.number}.csv", CSV_HEADER, csv_rows(detail))
