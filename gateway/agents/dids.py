"""DIDs: inbound numbers owned by customer accounts, with their rental.

A DID is unique system-wide (a clash answers 409 ``DID_TAKEN`` without naming the
owner). An inbound call whose called number is a DID is the owner's call when
``did`` is in the client's ``identify`` order (``gateway/authz/identify.py``); it is
rated at each charged level's inbound rate group (``accounts.inbound_rate_group_id``,
none: free). Adding a DID with a ``did_rental`` product subscribes the owner to it
in the same transaction, so the number and its rent come and go together.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.numbers import normalize_caller_id
from gateway.agents.principal import Principal, may_manage, require_account, visible
from gateway.agents.products import close_subscriptions, subscribe
from gateway.agents.recurring import today_utc
from gateway.core.errors import Duplicate
from gateway.db.pool import pg_errors, pg_integrity


def did_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "number": row["number"],
        "account_id": row["account_id"],
        "subscription_id": row["subscription_id"],
        "created_at": row["created_at"],
    }


_DID = (
    "SELECT d.*, (SELECT s.id FROM subscriptions s WHERE s.did_id = d.id "
    "AND (s.ends_on IS NULL OR s.ends_on > $2) ORDER BY s.id DESC LIMIT 1) AS subscription_id "
    "FROM dids d "
)


async def add_did(
    ctx: ManagementContext,
    principal: Principal,
    account_id: int,
    raw_number: str,
    *,
    rental_product_id: int | None = None,
    starts_on: date | None = None,
) -> dict[str, Any]:
    number = normalize_caller_id(raw_number)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            account = await require_account(conn, principal, account_id, kind="customer")
            if not may_manage(principal, account):
                raise Forbidden("only the customer's agent or the operator assigns DIDs")
            if rental_product_id is not None:
                rental = await conn.fetchrow(
                    "SELECT owner_account_id, kind FROM products WHERE id = $1",
                    rental_product_id,
                )
                if (
                    rental is None
                    or rental["kind"] != "did_rental"
                    or rental["owner_account_id"] != account["parent_id"]
                ):
                    raise Invalid(
                        "rental_product_id", "must be a did_rental product the parent sells"
                    )
            try:
                with pg_integrity():
                    did_id = await conn.fetchval(
                        "INSERT INTO dids (number, account_id) VALUES ($1, $2) RETURNING id",
                        number,
                        account_id,
                    )
            except Duplicate:
                raise Conflict("that DID is assigned already", code="DID_TAKEN") from None
            if rental_product_id is not None:
                await subscribe(
                    ctx,
                    principal,
                    account_id,
                    rental_product_id,
                    starts_on=starts_on,
                    did_id=did_id,
                    conn=conn,
                )
            row = await conn.fetchrow(_DID + "WHERE d.id = $1", did_id, today_utc())
    assert row is not None
    return did_view(row)


async def list_dids(
    ctx: ManagementContext, principal: Principal, account_id: int
) -> list[dict[str, Any]]:
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_account(conn, principal, account_id)
            rows = await conn.fetch(
                _DID + "WHERE d.account_id = $1 ORDER BY d.number", account_id, today_utc()
            )
    return [did_view(r) for r in rows]


async def remove_did(ctx: ManagementContext, principal: Principal, did_id: int) -> None:
    """Take the number away; its rental ends today (periods already charged stand)."""
    today = today_utc()
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT d.account_id FROM dids d JOIN accounts a ON a.id = d.account_id "
                f"WHERE d.id = $1 AND {visible('a', 2)} FOR UPDATE OF d",
                did_id,
                principal.grant_list,
            )
            if row is None:
                raise NotFound(f"DID {did_id} not found")
            account = await require_account(conn, principal, row["account_id"])
            if not may_manage(principal, account):
                raise Forbidden("only the customer's agent or the operator removes DIDs")
            await close_subscriptions(conn, "did_id", did_id, today)
            await conn.execute("DELETE FROM dids WHERE id = $1", did_id)
