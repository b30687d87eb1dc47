"""Products (monthly fees, DID rentals, setup fees) and subscriptions to them.

Who sells what: the operator's products (owner NULL) are sold to top-level accounts;
an agent's products to the accounts right below it. An agent that resells a product
of its parent names it as ``base_product_id`` (same kind): when its customer pays the
agent's price, the agent pays its parent's (``gateway/agents/recurring.py``). An
agent's product without a base is its own service and costs the agent nothing.

A subscription puts an account on a product of its parent (of the operator for a
top-level account), from ``starts_on`` (default today, UTC; at most a year back) on
``bill_day`` (default the start day, at most 28); ending it (``ends_on``, default
today) stops future periods, never refunds past ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.principal import Principal, may_manage, require_account, visible
from gateway.agents.recurring import retry_now, today_utc
from gateway.core.errors import Duplicate
from gateway.db import BIGINT_MAX, Connection
from gateway.db.pool import pg_errors, pg_integrity

PRODUCT_KINDS = ("monthly", "did_rental", "setup")
ON_UNPAID = ("suspend", "negative", "retry")
MAX_BACKDATE_DAYS = 366


@dataclass(frozen=True, slots=True)
class ProductIn:
    name: str
    kind: str
    price_micros: int
    on_unpaid: str = "retry"
    base_product_id: int | None = None


def product_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "owner_account_id": row["owner_account_id"],
        "base_product_id": row["base_product_id"],
        "base_price_micros": row["base_price_micros"],
        "name": row["name"],
        "kind": row["kind"],
        "price_micros": row["price_micros"],
        "on_unpaid": row["on_unpaid"],
        "status": row["status"],
        "created_at": row["created_at"],
    }


_PRODUCT = (
    "SELECT p.*, b.price_micros AS base_price_micros FROM products p "
    "LEFT JOIN products b ON b.id = p.base_product_id "
)


def _check(product: ProductIn) -> None:
    if not 1 <= len(product.name.strip()) <= 100:
        raise Invalid("name", "must be 1..100 characters")
    if product.kind not in PRODUCT_KINDS:
        raise Invalid("kind", f"must be one of {', '.join(PRODUCT_KINDS)}")
    if product.on_unpaid not in ON_UNPAID:
        raise Invalid("on_unpaid", f"must be one of {', '.join(ON_UNPAID)}")
    if not 0 <= product.price_micros <= BIGINT_MAX:
        raise Invalid("price_micros", "must be 0 or more")


async def _seller(conn: Connection, principal: Principal) -> asyncpg.Record | None:
    """The account selling as the caller (None: the operator); customers sell nothing."""
    if principal.is_admin:
        return None
    if principal.role == "customer":
        raise Forbidden("customers do not sell products")
    row = await conn.fetchrow(
        "SELECT id, parent_id, kind FROM accounts WHERE id = $1", principal.own_account()
    )
    assert row is not None  # the principal's own account exists (load_principal)
    found: asyncpg.Record = row
    return found


async def create_product(
    ctx: ManagementContext, principal: Principal, product: ProductIn
) -> dict[str, Any]:
    _check(product)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            seller = await _seller(conn, principal)
            if product.base_product_id is not None:
                if seller is None:
                    raise Invalid("base_product_id", "the operator's products resell nothing")
                base = await conn.fetchrow(
                    "SELECT owner_account_id, kind, status FROM products WHERE id = $1",
                    product.base_product_id,
                )
                if base is None or base["owner_account_id"] != seller["parent_id"]:
                    raise Invalid("base_product_id", "must be a product your parent sells to you")
                if base["kind"] != product.kind:
                    raise Invalid("base_product_id", f"is a {base['kind']} product")
                if base["status"] != "active":
                    raise Invalid("base_product_id", "that product is retired")
            try:
                with pg_integrity():
                    new_id = await conn.fetchval(
                        "INSERT INTO products (owner_account_id, base_product_id, name, kind, "
                        "price_micros, on_unpaid) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        None if seller is None else seller["id"],
                        product.base_product_id,
                        product.name.strip(),
                        product.kind,
                        product.price_micros,
                        product.on_unpaid,
                    )
            except Duplicate:
                msg = "you already sell a product of that name"
                raise Conflict(msg, code="NAME_TAKEN") from None
            row = await conn.fetchrow(_PRODUCT + "WHERE p.id = $1", new_id)
    assert row is not None
    return product_view(row)


async def list_products(ctx: ManagementContext, principal: Principal) -> list[dict[str, Any]]:
    """The caller's own products and those it may resell (its parent's)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            if principal.is_admin:
                rows = await conn.fetch(_PRODUCT + "ORDER BY p.id")
            else:
                own = await conn.fetchrow(
                    "SELECT id, parent_id FROM accounts WHERE id = $1", principal.own_account()
                )
                assert own is not None
                rows = await conn.fetch(
                    _PRODUCT + "WHERE p.owner_account_id = $1 OR p.owner_account_id "
                    "IS NOT DISTINCT FROM $2 ORDER BY p.id",
                    own["id"],
                    own["parent_id"],
                )
    return [product_view(r) for r in rows]


async def update_product(
    ctx: ManagementContext, principal: Principal, product_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change price, unpaid rule or status (retired: no new subscriptions) of one's own."""
    allowed = {"price_micros", "on_unpaid", "status", "name"}
    if unknown := set(changes) - allowed:
        raise Invalid(sorted(unknown)[0], "cannot be changed")
    if "on_unpaid" in changes and changes["on_unpaid"] not in ON_UNPAID:
        raise Invalid("on_unpaid", f"must be one of {', '.join(ON_UNPAID)}")
    if "status" in changes and changes["status"] not in ("active", "retired"):
        raise Invalid("status", "must be active or retired")
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            seller = await _seller(conn, principal)
            owner = None if seller is None else seller["id"]
            found = await conn.fetchval(
                "SELECT id FROM products WHERE id = $1 "
                "AND owner_account_id IS NOT DISTINCT FROM $2",
                product_id,
                owner,
            )
            if found is None:
                raise NotFound(f"product {product_id} not found")
            sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(changes))
            if sets:
                await conn.execute(
                    f"UPDATE products SET {sets}, updated_at = now() WHERE id = $1",
                    product_id,
                    *changes.values(),
                )
            row = await conn.fetchrow(_PRODUCT + "WHERE p.id = $1", product_id)
    assert row is not None
    return product_view(row)


def subscription_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "product_id": row["product_id"],
        "product_name": row["product_name"],
        "kind": row["kind"],
        "price_micros": row["price_micros"],
        "did_id": row["did_id"],
        "did_number": row["did_number"],
        "starts_on": row["starts_on"],
        "ends_on": row["ends_on"],
        "bill_day": row["bill_day"],
        "created_at": row["created_at"],
    }


_SUBSCRIPTION = (
    "SELECT s.*, p.name AS product_name, p.kind, p.price_micros, d.number AS did_number "
    "FROM subscriptions s JOIN products p ON p.id = s.product_id "
    "LEFT JOIN dids d ON d.id = s.did_id "
)


async def _managed(conn: Connection, principal: Principal, account_id: int) -> asyncpg.Record:
    account = await require_account(conn, principal, account_id)
    if not may_manage(principal, account):
        raise Forbidden("only the account's agent or the operator changes its subscriptions")
    return account


async def subscribe(
    ctx: ManagementContext,
    principal: Principal,
    account_id: int,
    product_id: int,
    *,
    starts_on: date | None = None,
    bill_day: int | None = None,
    did_id: int | None = None,
    conn: Connection | None = None,
) -> dict[str, Any]:
    today = today_utc()
    starts_on = starts_on or today
    if starts_on < today - timedelta(days=MAX_BACKDATE_DAYS):
        raise Invalid("starts_on", f"at most {MAX_BACKDATE_DAYS} days back")
    bill_day = bill_day or min(starts_on.day, 28)
    if not 1 <= bill_day <= 28:
        raise Invalid("bill_day", "must be 1..28")
    with pg_errors():
        if conn is None:
            async with ctx.pool.acquire() as own, own.transaction():
                return await _subscribe(
                    own, principal, account_id, product_id, starts_on, bill_day, did_id
                )
        return await _subscribe(
            conn, principal, account_id, product_id, starts_on, bill_day, did_id
        )


async def _subscribe(
    conn: Connection,
    principal: Principal,
    account_id: int,
    product_id: int,
    starts_on: date,
    bill_day: int,
    did_id: int | None,
) -> dict[str, Any]:
    account = await _managed(conn, principal, account_id)
    if did_id is not None:
        owner = await conn.fetchval("SELECT account_id FROM dids WHERE id = $1", did_id)
        if owner != account_id:
            raise Invalid("did_id", "must be a DID of the account")
    product = await conn.fetchrow(
        "SELECT owner_account_id, kind, status FROM products WHERE id = $1", product_id
    )
    if product is None or product["owner_account_id"] != account["parent_id"]:
        raise Invalid("product_id", "must be a product the account's parent sells")
    if product["status"] != "active":
        raise Invalid("product_id", "that product is retired")
    new_id = await conn.fetchval(
        "INSERT INTO subscriptions (account_id, product_id, did_id, starts_on, bill_day, "
        "created_by_user_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        account_id,
        product_id,
        did_id,
        starts_on,
        bill_day,
        principal.user_id,
    )
    row = await conn.fetchrow(_SUBSCRIPTION + "WHERE s.id = $1", new_id)
    assert row is not None
    return subscription_view(row)


async def list_subscriptions(
    ctx: ManagementContext, principal: Principal, account_id: int
) -> list[dict[str, Any]]:
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_account(conn, principal, account_id)
            rows = await conn.fetch(
                _SUBSCRIPTION + "WHERE s.account_id = $1 ORDER BY s.id", account_id
            )
    return [subscription_view(r) for r in rows]


async def end_subscription(
    ctx: ManagementContext, principal: Principal, subscription_id: int, ends_on: date | None
) -> dict[str, Any]:
    ends_on = ends_on or today_utc()
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT s.account_id, s.starts_on FROM subscriptions s JOIN accounts a "
                f"ON a.id = s.account_id WHERE s.id = $1 AND {visible('a', 2)} FOR UPDATE OF s",
                subscription_id,
                principal.grant_list,
            )
            if row is None:
                raise NotFound(f"subscription {subscription_id} not found")
            await _managed(conn, principal, row["account_id"])
            if ends_on < row["starts_on"]:
                raise Invalid("ends_on", "is before the subscription starts")
            await close_subscriptions(conn, "id", subscription_id, ends_on)
            out = await conn.fetchrow(_SUBSCRIPTION + "WHERE s.id = $1", subscription_id)
    assert out is not None
    return subscription_view(out)


async def close_subscriptions(conn: Connection, by: str, value: int, ends_on: date) -> None:
    """End the subscriptions whose ``by`` column (id or did_id) is ``value`` on
    ``ends_on`` (never before they start); a period not charged yet that starts on or
    after the end is dropped, charged ones stand."""
    column = {"id": "id", "did_id": "did_id"}[by]
    await conn.execute(
        f"UPDATE subscriptions SET ends_on = greatest(starts_on, $2) WHERE {column} = $1 "
        "AND (ends_on IS NULL OR ends_on > $2)",
        value,
        ends_on,
    )
    await conn.execute(
        "DELETE FROM recurring_charges c USING subscriptions s WHERE s.id = c.subscription_id "
        f"AND s.{column} = $1 AND c.period_start >= $2 AND c.status IN ('due', 'unpaid')",
        value,
        ends_on,
    )


async def list_charges(
    ctx: ManagementContext, principal: Principal, account_id: int
) -> list[dict[str, Any]]:
    """The account's recurring charges, newest period first (at most 500)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_account(conn, principal, account_id)
            rows = await conn.fetch(
                "SELECT c.*, p.name AS product_name FROM recurring_charges c "
                "JOIN subscriptions s ON s.id = c.subscription_id "
                "JOIN products p ON p.id = s.product_id WHERE s.account_id = $1 "
                "ORDER BY c.period_start DESC, c.id DESC LIMIT 500",
                account_id,
            )
    return [
        {
            "id": r["id"],
            "subscription_id": r["subscription_id"],
            "product_name": r["product_name"],
            "period_start": r["period_start"],
            "status": r["status"],
            "attempts": r["attempts"],
            "amount_micros": r["amount_micros"],
            "ledger_ids": list(r["ledger_ids"]),
            "detail": r["detail"],
            "next_attempt_at": r["next_attempt_at"] if r["status"] in ("due", "unpaid") else None,
            "updated_at": r["updated_at"],
        }
        for r in rows
    ]


async def retry_charges(ctx: ManagementContext, principal: Principal, account_id: int) -> int:
    """Make the account's unpaid charges due now; the next round tries them."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            # Anyone who sees the account may: it only brings the next try forward.
            await require_account(conn, principal, account_id)
            return await retry_now(conn, account_id)
