"""Low-balance care of an account: its threshold, auto-refill, and the watch's state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from gateway.agents import low_balance_settings
from gateway.agents.low_balance_settings import MAX_MICROS, CareSettings, CareView
from gateway.api.deps import Ctx, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["low-balance care"])

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 422: {}}


class CareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold_micros: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MICROS,
        description="Notify when available money (balance + credit limit) falls below (null: off)",
    )
    auto_refill_micros: int = Field(
        default=0,
        ge=0,
        le=MAX_MICROS,
        description="Moved from the parent agent (transfer mode) per crossing (0: off)",
    )
    auto_refill_monthly_limit_micros: int = Field(
        default=0, ge=0, le=MAX_MICROS, description="Most auto-refilled per calendar month (UTC)"
    )


class CareOut(BaseModel):
    account_id: int
    threshold_micros: int | None
    auto_refill_micros: int
    auto_refill_monthly_limit_micros: int
    available_micros: int = Field(description="balance + credit limit, as the watch compares it")
    below: bool = Field(description="The current crossing was seen (re-arms above the threshold)")
    crossings: int = Field(description="How many times it fell below")
    crossed_at: datetime | None
    refill_status: str = Field(
        description="Last auto-refill: moved, no_funds, limit_reached, not_transfer_mode, "
        "refused ('' : none)"
    )
    refill_detail: str
    refill_at: datetime | None
    refilled_this_month_micros: int
    parent_billing_mode: str | None


def _out(view: CareView) -> CareOut:
    s = view.settings
    return CareOut(
        account_id=view.account_id,
        threshold_micros=s.threshold_micros,
        auto_refill_micros=s.auto_refill_micros,
        auto_refill_monthly_limit_micros=s.auto_refill_monthly_limit_micros,
        available_micros=view.available_micros,
        below=view.below,
        crossings=view.crossings,
        crossed_at=view.crossed_at,
        refill_status=view.refill_status,
        refill_detail=view.refill_detail,
        refill_at=view.refill_at,
        refilled_this_month_micros=view.refilled_this_month_micros,
        parent_billing_mode=view.parent_mode,
    )


@router.get("/accounts/{account_id}/low-balance", response_model=CareOut, responses=ERRORS)
async def get_low_balance(account_id: Id, ctx: Ctx, user: User) -> CareOut:
    """The account's low-balance threshold, auto-refill settings and the watch's state."""
    return _out(await low_balance_settings.get_care(ctx, user, account_id))


@router.put("/accounts/{account_id}/low-balance", response_model=CareOut, responses=ERRORS)
async def put_low_balance(account_id: Id, body: CareIn, ctx: Ctx, user: User) -> CareOut:
    """Replace the account's low-balance care (an account below the caller's; the
    operator: any). Auto-refill needs a threshold and a parent in transfer mode."""
    settings = CareSettings(
        body.threshold_micros, body.auto_refill_micros, body.auto_refill_monthly_limit_micros
    )
    return _out(await low_balance_settings.set_care(ctx, user, account_id, settings))
