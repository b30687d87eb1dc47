"""Call rules of an account: destination allow/block lists, price limit, margin."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.agents import call_rules, margins
from gateway.agents.call_rules import Rules, RulesView
from gateway.api.deps import Ctx, User
from gateway.db import BIGINT_MAX, INTEGER_MAX

router = APIRouter(prefix="/api/v1", tags=["call rules"])

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
Prefixes = Annotated[list[str], Field(max_length=call_rules.MAX_PREFIXES)]
Money = Annotated[int | None, Field(ge=0, le=BIGINT_MAX)]
Attempts = Annotated[int | None, Field(ge=0, le=INTEGER_MAX)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 422: {}}


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow_prefixes: Prefixes = Field(
        default_factory=list, description="Only these destinations (empty: any)"
    )
    block_prefixes: Prefixes = Field(default_factory=list, description="Never these")
    max_price_per_min_micros: int | None = Field(
        default=None, ge=0, le=BIGINT_MAX, description="Dearest price per minute (null: none)"
    )
    negative_margin: Literal["allow", "refuse"] = Field(
        default="allow", description="Wholesale agents: refuse calls sold below own price"
    )
    min_margin_micros: int = Field(
        default=0, ge=0, le=BIGINT_MAX, description="With refuse: margin per minute required"
    )
    max_spend_hour_micros: Money = Field(default=None, description="Spend in any hour (null: none)")
    max_spend_day_micros: Money = Field(default=None, description="Spend in any day (null: none)")
    max_spend_call_micros: Money = Field(default=None, description="Cost of one call")
    max_attempts_per_s: Attempts = Field(
        default=None, description="Call attempts per second, with the subtree's (null: none)"
    )
    max_attempts_per_min: Attempts = Field(default=None, description="... per minute")

    def rules(self) -> Rules:
        values = self.model_dump()
        values["allow_prefixes"] = tuple(self.allow_prefixes)
        values["block_prefixes"] = tuple(self.block_prefixes)
        return Rules(**values)


class RulesBody(BaseModel):
    allow_prefixes: list[str]
    block_prefixes: list[str]
    max_price_per_min_micros: int | None
    negative_margin: str
    min_margin_micros: int
    max_spend_hour_micros: int | None
    max_spend_day_micros: int | None
    max_spend_call_micros: int | None
    max_attempts_per_s: int | None
    max_attempts_per_min: int | None


class InheritedOut(BaseModel):
    account_id: int
    account_name: str
    rules: RulesBody


class RulesOut(BaseModel):
    account_id: int
    set: bool = Field(description="false: the account has no rules of its own")
    rules: RulesBody
    updated_at: datetime | None
    updated_by: str
    inherited: list[InheritedOut] = Field(
        description="Rules of the accounts above, nearest first: they apply too"
    )


def _body(rules: Rules) -> RulesBody:
    values = {name: getattr(rules, name) for name in call_rules.COLUMNS}
    values["allow_prefixes"] = list(rules.allow_prefixes)
    values["block_prefixes"] = list(rules.block_prefixes)
    return RulesBody(**values)


def _out(view: RulesView) -> RulesOut:
    return RulesOut(
        account_id=view.account_id,
        set=view.set,
        rules=_body(view.rules),
        updated_at=view.updated_at,
        updated_by=view.updated_by,
        inherited=[
            InheritedOut(account_id=a, account_name=name, rules=_body(r))
            for a, name, r in view.inherited
        ],
    )


@router.get("/accounts/{account_id}/call-rules", response_model=RulesOut, responses=ERRORS)
async def get_call_rules(account_id: Id, ctx: Ctx, user: User) -> RulesOut:
    """The account's call rules and the rules above it that apply to its calls too."""
    return _out(await call_rules.get_rules(ctx, user, account_id))


@router.put("/accounts/{account_id}/call-rules", response_model=RulesOut, responses=ERRORS)
async def put_call_rules(account_id: Id, body: RulesIn, ctx: Ctx, user: User) -> RulesOut:
    """Replace the account's call rules (an account below the caller's; the operator: any)."""
    return _out(await call_rules.set_rules(ctx, user, account_id, body.rules()))


@router.delete("/accounts/{account_id}/call-rules", status_code=204, responses=ERRORS)
async def delete_call_rules(account_id: Id, ctx: Ctx, user: User) -> Response:
    """Remove the account's own call rules (rules above it still apply)."""
    await call_rules.clear_rules(ctx, user, account_id)
    return Response(status_code=204)


class MarginOut(BaseModel):
    prefix: str
    destination: str
    sell_micros: int = Field(description="Per minute, what the accounts below pay")
    cost_micros: int = Field(description="Per minute, what the agent pays")
    margin_micros: int
    sell_prefix: str
    cost_prefix: str


class GroupMarginsOut(BaseModel):
    rate_group_id: int
    rate_group_name: str
    accounts: int
    compared: int = Field(description="Prefixes priced on both sides")
    below: list[MarginOut] = Field(description="Prefixes under cost (+ min_margin), at most 1000")


class MarginReportOut(BaseModel):
    account_id: int
    cost_rate_group_id: int
    min_margin_micros: int
    below_cost: int = Field(description="How many prefixes are under cost: 0 is all well")
    groups: list[GroupMarginsOut]


@router.get(
    "/accounts/{account_id}/margin-report", response_model=MarginReportOut, responses=ERRORS
)
async def margin_report(
    account_id: Id,
    ctx: Ctx,
    user: User,
    min_margin_micros: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> MarginReportOut:
    """Where a wholesale agent's accounts below buy for less than it pays (per prefix)."""
    found = await margins.report(ctx, user, account_id, min_margin_micros)
    return MarginReportOut(
        account_id=found.account_id,
        cost_rate_group_id=found.cost_rate_group_id,
        min_margin_micros=found.min_margin_micros,
        below_cost=found.below_cost,
        groups=[
            GroupMarginsOut(
                rate_group_id=g.rate_group_id,
                rate_group_name=g.rate_group_name,
                accounts=g.accounts,
                compared=g.compared,
                below=[
                    MarginOut(
                        prefix=m.prefix,
                        destination=m.destination,
                        sell_micros=m.sell_micros,
                        cost_micros=m.cost_micros,
                        margin_micros=m.margin_micros,
                        sell_prefix=m.sell_prefix,
                        cost_prefix=m.cost_prefix,
                    )
                    for m in g.below
                ],
            )
            for g in found.groups
        ],
    )
