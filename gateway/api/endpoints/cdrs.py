"""CDR report and monthly traffic."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from gateway.agents import cdr_reports
from gateway.api.csvout import csv_response
from gateway.api.deps import Ctx, Page, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["cdrs"])

AccountFilter = Annotated[
    int | None,
    Query(ge=1, le=BIGINT_MAX, description="A customer, or an agent and its whole subtree"),
]


class CdrOut(BaseModel):
    id: int
    setup_at: datetime
    connect_at: datetime | None
    disconnect_at: datetime | None
    account_id: int = Field(description="The customer account of the call")
    account_name: str
    caller: str
    called: str = Field(description="Normalized (E.164 digits)")
    called_dialled: str
    prefix: str | None = Field(description="The customer's matched rate prefix")
    destination: str | None = Field(description="That rate's destination name")
    status: str = Field(description="answered or failed")
    disconnect_cause: str = Field(
        description="Q.850 value and name (16 normal call clearing), else the raw value"
    )
    disconnect_cause_code: int | None = Field(description="The ITU-T Q.850 cause value")
    disconnect_cause_raw: str = Field(description="The cause as the switch sent it")
    duration_s: int
    billed_s: int | None = Field(description="Seconds billed to the customer")
    price_per_min_micros: int | None = Field(description="The customer's rate")
    cost_micros: int = Field(description="What the customer paid")
    currency: str = Field(
        description="The customer's currency, of price and cost; agent_cost_micros is in "
        "the viewing agent's own"
    )
    agent_cost_micros: int | None = Field(
        description="What the call cost the viewing agent at its own level (agents only)"
    )
    nas: str
    session_id: str
    overrun_s: int = Field(
        description="Seconds the switch reported past the call's limit (its grant, or "
        "its held time once cut); unbilled when the switch's overrun policy is cap"
    )


class CdrTotalsOut(BaseModel):
    calls: int
    answered: int
    duration_s_sum: int
    cost_micros_sum: int
    agent_cost_micros_sum: int | None


class CdrPage(BaseModel):
    items: list[CdrOut]
    total: int
    limit: int
    offset: int
    totals: CdrTotalsOut
    from_: datetime = Field(alias="from", description="The window used (inclusive)")
    to: datetime = Field(description="The window used (exclusive)")


class MonthTrafficOut(BaseModel):
    calls: int
    answered: int
    duration_s: int = Field(description="Talk time")
    billed_s: int = Field(description="Seconds billed to customers")
    minutes: int = Field(description="billed_s in minutes, rounded up")
    revenue_micros: int = Field(description="What customers paid")
    agent_cost_micros: int | None = Field(description="What the viewing agent paid (agents)")


class TrafficMonthOut(BaseModel):
    month: int
    this_year: MonthTrafficOut
    last_year: MonthTrafficOut


class TrafficOut(BaseModel):
    year: int
    account_id: int | None
    months: list[TrafficMonthOut]
    this_year: MonthTrafficOut = Field(description="Totals of the year")
    last_year: MonthTrafficOut = Field(description="Totals of the year before")


def _csv_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


@router.get(
    "/cdrs",
    response_model=CdrPage,
    responses={200: {"content": {"text/csv": {}}}, 401: {}, 404: {}, 422: {}},
)
async def list_cdrs(
    ctx: Ctx,
    user: User,
    page: Page,
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="setup_at from (inclusive; default: 'to' - 7 days)"),
    ] = None,
    to: Annotated[
        datetime | None, Query(description="setup_at before (exclusive; default: now)")
    ] = None,
    account_id: AccountFilter = None,
    called_prefix: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,32}$", description="Called number starts with")
    ] = None,
    caller: Annotated[str | None, Query(max_length=64, description="Caller starts with")] = None,
    status: Annotated[Literal["answered", "failed"] | None, Query()] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: every matching row, as a file")
    ] = "json",
) -> CdrPage | Response:
    """Calls of the accounts the caller may see, with totals (sort: id, setup_at, connect_at,
    disconnect_at, duration_s, cost_micros, called, caller, status, account_id)."""
    flt = cdr_reports.CdrFilter(
        start=from_,
        end=to,
        account_id=account_id,
        called_prefix=called_prefix,
        caller=caller,
        status=status,
    )
    report = await cdr_reports.cdr_report(ctx, user, flt, page, all_rows=format == "csv")
    if format == "csv":
        response = csv_response(
            f"cdrs-{report.start:%Y%m%d}-{report.end:%Y%m%d}.csv",
            cdr_reports.CDR_COLUMNS,
            ([_csv_value(getattr(c, n)) for n in cdr_reports.CDR_COLUMNS] for c in report.items),
        )
        response.headers["X-Total-Count"] = str(report.total)
        if report.truncated:
            response.headers["X-Truncated"] = "true"
        return response
    return CdrPage.model_validate(
        {
            "items": [CdrOut.model_validate(c, from_attributes=True) for c in report.items],
            "total": report.total,
            "limit": page.limit,
            "offset": page.offset,
            "totals": CdrTotalsOut(**asdict(report.totals)),
            "from": report.start,
            "to": report.end,
        }
    )


@router.get("/reports/traffic", response_model=TrafficOut, responses={401: {}, 404: {}, 422: {}})
async def monthly_traffic(
    ctx: Ctx,
    user: User,
    year: Annotated[
        int | None, Query(ge=1971, le=9998, description="Default: the current year (UTC)")
    ] = None,
    account_id: AccountFilter = None,
) -> TrafficOut:
    """Calls, minutes and revenue per month of a year against the year before, for charts."""
    chosen = year if year is not None else datetime.now(UTC).year
    return TrafficOut.model_validate(
        await cdr_reports.traffic(ctx, user, chosen, account_id), from_attributes=True
    )
