"""Reading and setting an account's low-balance care: its threshold and auto-refill.

The threshold and the auto-refill settings are columns of the account (the account
view shows them); the watch's state per account (below or not, crossings, the last
auto-refill's outcome) is ``low_balance_state``, written by ``low_balance``. Who may
set them: the operator any account, an agent the accounts below it, never its own
(the call rules' rule). An auto-refill needs a threshold, a parent agent in
``transfer`` mode (it sells its own credit), and a monthly limit at least one refill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Forbidden, Invalid
from gateway.agents.low_balance import refilled_this_month
from gateway.agents.principal import Principal, may_manage, require_account
from gateway.db import Connection
from gateway.db.pool import pg_errors

MAX_MICROS = 10**15


@dataclass(frozen=True, slots=True)
class CareSettings:
    """What an account asks for (the defaults: no care)."""

    threshold_micros: int | None = None
    auto_refill_micros: int = 0  # 0: no auto-refill
    auto_refill_monthly_limit_micros: int = 0


@dataclass(frozen=True, slots=True)
class CareView:
    account_id: int
    settings: CareSettings
    available_micros: int  # balance + credit limit, as the watch compares it
    below: bool  # the watch has seen the current crossing (re-arms above the threshold)
    crossings: int
    crossed_at: datetime | None
    refill_status: str  # '', moved, no_funds, limit_reached, not_transfer_mode, refused
    refill_detail: str
    refill_at: datetime | None
    refilled_this_month_micros: int
    parent_mode: str | None  # the parent agent's billing mode (None: no parent)


def settings_of(row: asyncpg.Record) -> CareSettings:
    """An ``accounts`` row's low-balance settings."""
    return CareSettings(
        row["low_balance_threshold_micros"],
        row["auto_refill_micros"],
        row["auto_refill_monthly_limit_micros"],
    )


async def _view(conn: Connection, account: asyncpg.Record) -> CareView:
    state = await conn.fetchrow(
        "SELECT * FROM low_balance_state WHERE account_id = $1", account["id"]
    )
    parent_mode = None
    if account["parent_id"] is not None:
        parent_mode = await conn.fetchval(
            "SELECT billing_mode FROM accounts WHERE id = $1", account["parent_id"]
        )
    return CareView(
        account_id=account["id"],
        settings=settings_of(account),
        available_micros=account["balance_micros"] + account["credit_limit_micros"],
        below=bool(state is not None and state["below"]),
        crossings=0 if state is None else state["crossings"],
        crossed_at=None if state is None else state["crossed_at"],
        refill_status="" if state is None else state["refill_status"],
        refill_detail="" if state is None else state["refill_detail"],
        refill_at=None if state is None else state["refill_at"],
        refilled_this_month_micros=await refilled_this_month(
            conn, account["id"], datetime.now(UTC)
        ),
        parent_mode=parent_mode,
    )


async def get_care(ctx: ManagementContext, principal: Principal, account_id: int) -> CareView:
    """An account's low-balance settings and state (any account the caller may see)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            account = await require_account(conn, principal, account_id)
            return await _view(conn, account)


def _check(settings: CareSettings, parent_mode: str | None) -> None:
    threshold = settings.threshold_micros
    if threshold is not None and not 0 <= threshold <= MAX_MICROS:
        raise Invalid("threshold_micros", f"must be between 0 and {MAX_MICROS}")
    if not 0 <= settings.auto_refill_micros <= MAX_MICROS:
        raise Invalid("auto_refill_micros", f"must be between 0 and {MAX_MICROS}")
    if not 0 <= settings.auto_refill_monthly_limit_micros <= MAX_MICROS:
        raise Invalid("auto_refill_monthly_limit_micros", f"must be between 0 and {MAX_MICROS}")
    if settings.auto_refill_micros == 0:
        return
    if threshold is None:
        raise Invalid("auto_refill_micros", "an auto-refill needs a threshold")
    if parent_mode != "transfer":
        raise Invalid(
            "auto_refill_micros",
            "only an account whose parent agent is in transfer mode can be refilled from it",
        )
    if settings.auto_refill_monthly_limit_micros < settings.auto_refill_micros:
        raise Invalid(
            "auto_refill_monthly_limit_micros", "must be at least one refill (auto_refill_micros)"
        )


async def set_care(
    ctx: ManagementContext, principal: Principal, account_id: int, settings: CareSettings
) -> CareView:
    """Replace an account's low-balance settings; the watch applies them next round and
    every gateway's Access-Accept within about a second."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            account = await require_account(conn, principal, account_id, for_update=True)
            if not may_manage(principal, account):
                raise Forbidden("an account's low-balance care is set by the account above it")
            parent_mode = None
            if account["parent_id"] is not None:
                parent_mode = await conn.fetchval(
                    "SELECT billing_mode FROM accounts WHERE id = $1", account["parent_id"]
                )
            _check(settings, parent_mode)
            row = await conn.fetchrow(
                "UPDATE accounts SET low_balance_threshold_micros = $2, auto_refill_micros = $3, "
                "auto_refill_monthly_limit_micros = $4, updated_at = now() WHERE id = $1 "
                "RETURNING *",
                account_id,
                settings.threshold_micros,
                settings.auto_refill_micros,
                settings.auto_refill_monthly_limit_micros,
            )
            assert row is not None  # locked above
            return await _view(conn, row)
