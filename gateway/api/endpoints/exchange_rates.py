"""The operator's exchange-rate table: add a quote (operator), list quotes (agents too).

A quote ``1 from_currency = rate to_currency`` is in force from ``effective_from`` until
a later quote of the same pair (either direction); money moves between currencies use
the quote in force at their time (``gateway/agents/exchange.py``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from gateway.agents import exchange
from gateway.api.deps import Admin, Ctx, Manager, Page

router = APIRouter(prefix="/api/v1", tags=["exchange rates"])

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class ExchangeRateIn(BaseModel):
    from_currency: Currency
    to_currency: Currency
    rate: Annotated[
        Decimal,
        Field(
            gt=0,
            max_digits=24,
            decimal_places=exchange.RATE_PLACES,
            description="Units of to_currency per unit of from_currency, exact decimal "
            '(send it as a string, e.g. "1.085")',
        ),
    ]
    effective_from: AwareDatetime = Field(description="In force from this instant on")
    note: Annotated[str, Field(max_length=500, pattern=r"^[^\x00]*$")] = ""


class ExchangeRateOut(BaseModel):
    id: int
    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: datetime
    note: str
    created_by_user_id: int | None
    created_at: datetime


class ExchangeRatePage(BaseModel):
    items: list[ExchangeRateOut]
    total: int
    limit: int
    offset: int


@router.post(
    "/exchange-rates",
    response_model=ExchangeRateOut,
    status_code=201,
    responses={401: {}, 403: {}, 409: {}, 422: {}},
)
async def add_rate(body: ExchangeRateIn, ctx: Ctx, user: Admin) -> ExchangeRateOut:
    """Add a quote (409 ``EXCHANGE_RATE_EXISTS`` for the same pair and instant)."""
    row = await exchange.add_rate(
        ctx,
        user,
        body.from_currency,
        body.to_currency,
        body.rate,
        body.effective_from,
        body.note,
    )
    return ExchangeRateOut(**row)


@router.get(
    "/exchange-rates", response_model=ExchangeRatePage, responses={401: {}, 403: {}, 422: {}}
)
async def list_rates(
    ctx: Ctx,
    user: Manager,
    page: Page,
    currency: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", description="Only quotes of this currency")
    ] = None,
    at: Annotated[
        AwareDatetime | None,
        Query(description="Only the quotes in force at this instant (one per pair)"),
    ] = None,
) -> ExchangeRatePage:
    """Quotes, all of them or those in force at ``at`` (sort: id, effective_from, ...)."""
    items, total = await exchange.list_rates(
        ctx,
        user,
        currency=currency,
        at=at,
        order_by=page.order_by(exchange.SORTS, "id"),
        limit=page.limit,
        offset=page.offset,
    )
    return ExchangeRatePage(
        items=[ExchangeRateOut(**i) for i in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
