"""Rate groups and rates: browse, search, and private groups of transfer-mode agents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.agents import rate_groups, rates
from gateway.api.deps import Ctx, Manager, Page, User
from gateway.db import BIGINT_MAX, INTEGER_MAX

router = APIRouter(prefix="/api/v1", tags=["rates"])

GroupId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Rate group id")]
RateId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Rate id")]
DECK_MAX_BYTES = 64 * 1024 * 1024
_DECK_EXAMPLE = "prefix,destination,price_per_min\n44,United Kingdom,0.012\n"

Money = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Seconds = Annotated[int, Field(ge=0, le=INTEGER_MAX)]
Increment = Annotated[int, Field(ge=1, le=INTEGER_MAX)]
Prefix = Annotated[str, Field(pattern=r"^[0-9]{1,32}$", description="Destination digits")]
Destination = Annotated[str, Field(max_length=rates.DESTINATION_MAX)]
GroupName = Annotated[str, Field(min_length=1, max_length=100)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Description = Annotated[str, Field(max_length=2000)]
TimeZone = Annotated[
    str, Field(min_length=1, max_length=64, description="IANA zone the periods are read in")
]
Decimals = Annotated[
    int, Field(ge=0, le=6, description="A call's cost per level is rounded to these decimals")
]
Rounding = Annotated[Literal["up", "half_up"], Field(description="How the cost is rounded")]
SubSecond = Annotated[
    int,
    Field(
        ge=1,
        le=500,
        description="Increments after the first in ms (a divisor of 1000; needs "
        "next_increment_s = 1), for switches that report milliseconds",
    ),
]
Periods = Annotated[
    str,
    Field(
        max_length=1000,
        description="Time-of-day prices: 'mon-fri 08:00-18:00 0.10 [fee]; ...' "
        "in the group's time zone; '' for one price at all times",
        examples=["mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08"],
    ),
]


class RateGroupOut(BaseModel):
    id: int
    name: str
    currency: str
    description: str
    owner_user_id: int | None = Field(description="None: the operator's group")
    owner_login: str | None
    owned: bool = Field(description="Owned by the caller (may change it, in transfer mode)")
    operator: bool = Field(description="The operator's group")
    rate_count: int
    accounts_using: int | None = Field(
        description="Accounts the caller can see that use this group (detail only)"
    )
    created_at: datetime
    updated_at: datetime
    time_zone: str
    cost_decimals: int
    cost_rounding: str


class RateGroupPage(BaseModel):
    items: list[RateGroupOut]
    total: int
    limit: int
    offset: int


class RateGroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: GroupName
    currency: Currency | None = Field(
        default=None, description="Default: the caller's account currency (USD for the operator)"
    )
    description: Description = ""
    time_zone: TimeZone = "UTC"
    cost_decimals: Decimals = 6
    cost_rounding: Rounding = "up"


class RateGroupPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: GroupName | None = None
    currency: Currency | None = None
    description: Description | None = None
    time_zone: TimeZone | None = None
    cost_decimals: Decimals | None = None
    cost_rounding: Rounding | None = None


class RateOut(BaseModel):
    id: int
    rate_group_id: int
    prefix: str
    destination: str
    price_per_min_micros: int
    connect_fee_micros: int
    first_increment_s: int
    next_increment_s: int
    min_duration_s: int
    grace_s: int
    effective_from: datetime | None = Field(description="None: in force from the beginning")
    effective_to: datetime | None = Field(description="None: no end")
    periods: str = Field(description="Time-of-day prices ('' for none)")
    next_increment_ms: int | None = Field(description="Sub-second increments; None: seconds")


class RatePage(BaseModel):
    items: list[RateOut]
    total: int
    limit: int
    offset: int


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: Prefix
    destination: Destination = ""
    price_per_min_micros: Money
    connect_fee_micros: Money = 0
    first_increment_s: Increment = 60
    next_increment_s: Increment = 60
    min_duration_s: Seconds = 0
    grace_s: Seconds = 0
    effective_from: datetime | None = Field(default=None, description="Naive means UTC")
    effective_to: datetime | None = Field(default=None, description="Must be after the start")
    periods: Periods = ""
    next_increment_ms: SubSecond | None = None


class RatePatch(BaseModel):
    """Only the fields sent change; null opens an end of the period."""

    model_config = ConfigDict(extra="forbid")

    prefix: Prefix | None = None
    destination: Destination | None = None
    price_per_min_micros: Money | None = None
    connect_fee_micros: Money | None = None
    first_increment_s: Increment | None = None
    next_increment_s: Increment | None = None
    min_duration_s: Seconds | None = None
    grace_s: Seconds | None = None
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    periods: Periods | None = None
    next_increment_ms: SubSecond | None = None


class ImportOut(BaseModel):
    rate_group_id: int
    rows: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int


def _group_out(group: rate_groups.RateGroup) -> RateGroupOut:
    return RateGroupOut.model_validate(group, from_attributes=True)


def _rate_out(rate: rates.RateRecord) -> RateOut:
    return RateOut.model_validate(rate, from_attributes=True)


@router.get("/rate-groups", response_model=RateGroupPage, responses={401: {}, 422: {}})
async def list_rate_groups(
    ctx: Ctx,
    user: User,
    page: Page,
    name: Annotated[str | None, Query(max_length=100, description="Name contains")] = None,
) -> RateGroupPage:
    """Rate groups the caller may use (sort: id, name, currency, rate_count, created_at,
    updated_at)."""
    items, total = await rate_groups.list_groups(ctx, user, page, name=name)
    return RateGroupPage(
        items=[_group_out(g) for g in items], total=total, limit=page.limit, offset=page.offset
    )


@router.post(
    "/rate-groups",
    response_model=RateGroupOut,
    status_code=201,
    responses={401: {}, 403: {}, 409: {}, 422: {}},
)
async def create_rate_group(body: RateGroupIn, ctx: Ctx, user: Manager) -> RateGroupOut:
    """Create a rate group: the operator's (admin) or a private one (agent in transfer mode)."""
    terms = rate_groups.Terms(body.time_zone, body.cost_decimals, body.cost_rounding)
    group = await rate_groups.create_group(
        ctx, user, name=body.name, currency=body.currency, description=body.description, terms=terms
    )
    return _group_out(group)


@router.get(
    "/rate-groups/{rate_group_id}", response_model=RateGroupOut, responses={401: {}, 404: {}}
)
async def get_rate_group(rate_group_id: GroupId, ctx: Ctx, user: User) -> RateGroupOut:
    """One rate group the caller may use."""
    return _group_out(await rate_groups.get_group(ctx, user, rate_group_id))


@router.patch(
    "/rate-groups/{rate_group_id}",
    response_model=RateGroupOut,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def update_rate_group(
    rate_group_id: GroupId, body: RateGroupPatch, ctx: Ctx, user: Manager
) -> RateGroupOut:
    """Rename or re-describe a group the caller owns (transfer mode) or, for an admin, any;
    or set its time zone and cost rounding (for calls authorized from then on)."""
    group = await rate_groups.update_group(
        ctx,
        user,
        rate_group_id,
        name=body.name,
        currency=body.currency,
        description=body.description,
        terms=rate_groups.Terms(body.time_zone, body.cost_decimals, body.cost_rounding),
    )
    return _group_out(group)


@router.delete(
    "/rate-groups/{rate_group_id}",
    status_code=204,
    responses={401: {}, 403: {}, 404: {}, 409: {}},
)
async def delete_rate_group(rate_group_id: GroupId, ctx: Ctx, user: Manager) -> Response:
    """Delete a group and its rates (409 RATE_GROUP_IN_USE while an account uses it)."""
    await rate_groups.delete_group(ctx, user, rate_group_id)
    return Response(status_code=204)


@router.get(
    "/rate-groups/{rate_group_id}/rates",
    response_model=RatePage,
    responses={401: {}, 404: {}, 422: {}},
)
async def list_rates(
    rate_group_id: GroupId,
    ctx: Ctx,
    user: User,
    page: Page,
    prefix: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,32}$", description="Prefix starts with")
    ] = None,
    number: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="A dialled number: only the rate that would apply to it now",
        ),
    ] = None,
    destination: Annotated[
        str | None, Query(max_length=200, description="Destination contains (any case)")
    ] = None,
    in_force: Annotated[bool | None, Query(description="Only rates in force now (or not)")] = None,
) -> RatePage:
    """Rates of a group (sort: id, prefix, destination, price_per_min_micros, effective_from)."""
    items, total = await rates.list_rates(
        ctx,
        user,
        rate_group_id,
        page,
        prefix=prefix,
        number=number,
        destination=destination,
        in_force=in_force,
    )
    return RatePage(
        items=[_rate_out(r) for r in items], total=total, limit=page.limit, offset=page.offset
    )


@router.get(
    "/rate-groups/{rate_group_id}/rates.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, 401: {}, 404: {}},
)
async def export_rates(rate_group_id: GroupId, ctx: Ctx, user: User) -> Response:
    """The group's rates as a CSV deck (the ``gateway rates import/export`` format)."""
    text = await rates.export_deck(ctx, user, rate_group_id)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="rates-{rate_group_id}.csv"'},
    )


@router.post(
    "/rate-groups/{rate_group_id}/rates/import",
    response_model=ImportOut,
    responses={401: {}, 403: {}, 404: {}, 422: {}},
)
async def import_rates(
    rate_group_id: GroupId,
    ctx: Ctx,
    user: Manager,
    deck: Annotated[
        str,
        Body(
            media_type="text/csv",
            max_length=DECK_MAX_BYTES,
            examples=[_DECK_EXAMPLE],
            description="A CSV deck (header row; columns as in `gateway rates import`)",
        ),
    ],
    replace: Annotated[
        bool, Query(description="Remove the group's rates that are not in the deck")
    ] = False,
) -> ImportOut | JSONResponse:
    """Import a CSV deck into a group the caller may change; a bad row changes nothing."""
    try:
        result = await rates.import_deck(ctx, user, rate_group_id, deck, replace=replace)
    except rates.DeckInvalid as exc:
        detail: list[dict[str, Any]] = [
            {"loc": ["body", "file", e.line], "msg": e.message, "type": exc.code}
            for e in exc.rows[: rates.DECK_ERRORS_SHOWN]
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    return ImportOut(
        rate_group_id=result.group_id,
        rows=result.rows,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        deleted=result.deleted,
    )


@router.post(
    "/rate-groups/{rate_group_id}/rates",
    response_model=RateOut,
    status_code=201,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def create_rate(rate_group_id: GroupId, body: RateIn, ctx: Ctx, user: Manager) -> RateOut:
    """Add a rate (409 RATE_EXISTS when the group has one for that prefix and start)."""
    values = rates.RateFields(**body.model_dump())
    return _rate_out(await rates.create_rate(ctx, user, rate_group_id, values))


@router.get(
    "/rate-groups/{rate_group_id}/rates/{rate_id}",
    response_model=RateOut,
    responses={401: {}, 404: {}},
)
async def get_rate(rate_group_id: GroupId, rate_id: RateId, ctx: Ctx, user: User) -> RateOut:
    """One rate of a group the caller may use."""
    return _rate_out(await rates.get_rate(ctx, user, rate_group_id, rate_id))


@router.patch(
    "/rate-groups/{rate_group_id}/rates/{rate_id}",
    response_model=RateOut,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def update_rate(
    rate_group_id: GroupId, rate_id: RateId, body: RatePatch, ctx: Ctx, user: Manager
) -> RateOut:
    """Change some fields of a rate (only the fields sent)."""
    changes = body.model_dump(exclude_unset=True)
    return _rate_out(await rates.update_rate(ctx, user, rate_group_id, rate_id, changes))


@router.delete(
    "/rate-groups/{rate_group_id}/rates/{rate_id}",
    status_code=204,
    responses={401: {}, 403: {}, 404: {}},
)
async def delete_rate(rate_group_id: GroupId, rate_id: RateId, ctx: Ctx, user: Manager) -> Response:
    """Remove a rate."""
    await rates.delete_rate(ctx, user, rate_group_id, rate_id)
    return Response(status_code=204)
