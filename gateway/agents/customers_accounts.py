"""Reading accounts: one account with its live figures, and paged lists of them.

Balances come from PostgreSQL, the ledger of record. What calls hold right now
lives only in Redis (the account's mirror hash, fields ``held`` and ``calls``, see
``gateway/balance/lua/reserve.lua``); it is added when the mirror has the account,
0 when it does not (nothing can be held then), and left out (null) when Redis cannot
be reached, so a Redis outage does not hide the account pages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Invalid
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, rate_group_visible, require_account, visible
from gateway.balance import fields
from gateway.balance.redisconn import redis_errors
from gateway.core.errors import BackendUnavailable
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

ACCOUNT_SORT = {
    "id": "a.id",
    "name": "lower(a.name)",
    "balance_micros": "a.balance_micros",
    "created_at": "a.created_at",
    "status": "a.status",
}
STATUSES = ("active", "disabled", "removed")


@dataclass(frozen=True, slots=True)
class Live:
    """What calls hold on the account now, from the Redis mirror."""

    held_micros: int
    calls_up: int


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    kind: str
    name: str
    parent_id: int | None
    status: str
    disabled_reason: str
    disabled_detail: str  # why, when a check disabled it (fraud: the rule and figures)
    billing_mode: str | None
    rate_group_id: int | None
    inbound_rate_group_id: int | None
    currency: str
    balance_micros: int
    commission_balance_micros: int
    credit_limit_micros: int
    # balance + credit limit - held: what calls may still spend (held counts as 0
    # when Redis is unreachable).
    available_micros: int
    held_micros: int | None
    calls_up: int | None
    max_concurrent_calls: int | None
    commission_rate_bp: int
    contact_emails: list[str]
    created_at: datetime
    disabled_at: datetime | None
    removed_at: datetime | None
    tax_rate_bp: int  # VAT-style tax of its invoices (migration 0016)
    tax_inclusive: bool
    # Low-balance care (gateway/agents/low_balance_settings.py): None: no threshold.
    low_balance_threshold_micros: int | None = None
    auto_refill_micros: int = 0
    auto_refill_monthly_limit_micros: int = 0


def account_view(row: asyncpg.Record, live: Live | None) -> AccountView:
    """The view of an ``accounts`` row with its live figures (None: unknown)."""
    held = live.held_micros if live else 0
    return AccountView(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        parent_id=row["parent_id"],
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        disabled_detail=row["disabled_detail"],
        billing_mode=row["billing_mode"],
        rate_group_id=row["rate_group_id"],
        inbound_rate_group_id=row["inbound_rate_group_id"],
        currency=row["currency"],
        balance_micros=row["balance_micros"],
        commission_balance_micros=row["commission_balance_micros"],
        credit_limit_micros=row["credit_limit_micros"],
        available_micros=row["balance_micros"] + row["credit_limit_micros"] - held,
        held_micros=live.held_micros if live else None,
        calls_up=live.calls_up if live else None,
        max_concurrent_calls=row["max_concurrent_calls"],
        commission_rate_bp=row["commission_rate_bp"],
        contact_emails=list(row["contact_emails"]),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        removed_at=row["removed_at"],
        tax_rate_bp=row["tax_rate_bp"],
        tax_inclusive=row["tax_inclusive"],
        low_balance_threshold_micros=row["low_balance_threshold_micros"],
        auto_refill_micros=row["auto_refill_micros"],
        auto_refill_monthly_limit_micros=row["auto_refill_monthly_limit_micros"],
    )


async def read_live(ctx: ManagementContext, rows: Sequence[asyncpg.Record]) -> dict[int, Live]:
    """Held money and calls up per account, in one pipeline; {} when Redis is down."""
    if not rows:
        return {}
    try:
        with redis_errors():
            async with ctx.redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.hmget(
                        ctx.keys.account(row["root_id"], row["id"]),
                        fields.HELD_MICROS,
                        fields.CALLS,
                    )
                replies = await pipe.execute()
    except BackendUnavailable as exc:
        log.warning("api.live_unavailable", extra={"error": exc.reason})
        return {}
    return {
        row["id"]: Live(int(held or 0), int(calls or 0))
        for row, (held, calls) in zip(rows, replies, strict=True)
    }


async def calls_up(ctx: ManagementContext, row: asyncpg.Record) -> int:
    """Calls the mirror counts as up on the account (raises when Redis is down)."""
    with redis_errors():
        value = await ctx.redis.hget(ctx.keys.account(row["root_id"], row["id"]), fields.CALLS)
    return int(value or 0)


async def rate_group_currency(
    conn: Connection, principal: Principal, rate_group_id: int, field: str = "rate_group_id"
) -> str:
    """The currency of a rate group the principal may use; 422 on ``field`` else."""
    currency: str | None = await conn.fetchval(
        f"SELECT rg.currency FROM rate_groups rg WHERE rg.id = $1 "
        f"AND {rate_group_visible('rg', 2, 3)}",
        rate_group_id,
        principal.user_id,
        principal.grant_list,
    )
    if currency is None:
        raise Invalid(field, "no such rate group")
    return currency


async def get_account(ctx: ManagementContext, principal: Principal, account_id: int) -> AccountView:
    """One account the principal may see (removed ones too: their history stays)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await require_account(conn, principal, account_id, include_removed=True)
    live = await read_live(ctx, [row])
    return account_view(row, live.get(row["id"]))


async def get_customer(
    ctx: ManagementContext, principal: Principal, customer_id: int
) -> AccountView:
    """One customer account the principal may see."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await require_account(
                conn, principal, customer_id, kind="customer", include_removed=True
            )
    live = await read_live(ctx, [row])
    return account_view(row, live.get(row["id"]))


async def my_account(ctx: ManagementContext, principal: Principal) -> AccountView:
    """The caller's own account; NotFound for the operator, who has none."""
    return await get_account(ctx, principal, principal.own_account())


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """List filters: name substring (case-insensitive), status, parent."""

    q: str | None = None
    status: str | None = None
    parent_id: int | None = None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_accounts(
    ctx: ManagementContext,
    principal: Principal,
    kind: str,
    page: PageRequest,
    filters: AccountFilter,
) -> tuple[list[AccountView], int]:
    """A page of visible accounts of ``kind`` and the total matching.

    Removed accounts are left out unless ``status=removed`` is asked for. An agent's
    own account is never in its lists: they show what it manages.
    """
    if filters.status is not None and filters.status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}")
    order = page.order_by(ACCOUNT_SORT, "a.id")
    where = (
        f"a.kind = $1 AND {visible('a', 2)} "
        "AND ($3::bigint IS NULL OR a.id <> $3) "
        "AND (($4::text IS NULL AND a.status <> 'removed') OR a.status = $4) "
        "AND ($5::text IS NULL OR a.name ILIKE $5) "
        "AND ($6::bigint IS NULL OR a.parent_id = $6)"
    )
    args = (
        kind,
        principal.grant_list,
        principal.account_id,
        filters.status,
        None if filters.q is None else _like(filters.q),
        filters.parent_id,
    )
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM accounts a WHERE {where}", *args
            )
            rows = await conn.fetch(
                f"SELECT a.* FROM accounts a WHERE {where} {order} LIMIT $7 OFFSET $8",
                *args,
                page.limit,
                page.offset,
            )
    live = await read_live(ctx, rows)
    return [account_view(r, live.get(r["id"])) for r in rows], total
