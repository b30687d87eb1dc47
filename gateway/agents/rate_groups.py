"""Rate groups: who may see them, who may change them, and the group records.

Seeing follows ``rate_group_visible``: an admin sees every group; anyone else the
groups it owns, the groups granted to it, and the groups of the accounts it may
see. Changing is narrower (the VOS3000 rule): an admin may change any group; an
agent only groups its own user owns, and only while its account is in
``transfer`` mode (a ``wholesale`` agent has a fixed rate group and changes
none: ``WHOLESALE_FIXED_RATE_GROUP``); a customer changes nothing. A group the
caller cannot see is ``NotFound`` whatever the verb. The running gateways pick
up every change by themselves (the NOTIFY triggers of migration 0003).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, rate_group_visible, visible
from gateway.core.errors import Duplicate, StillReferenced
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity
from gateway.rating.periods import zone_info
from gateway.rating.rounding import MODES

WHOLESALE_FIXED = "WHOLESALE_FIXED_RATE_GROUP"
NOT_OWNER = "RATE_GROUP_NOT_OWNED"
IN_USE = "RATE_GROUP_IN_USE"


def check_text(field: str, value: str | None) -> str | None:
    """``value`` unchanged if PostgreSQL can store it as text; ``Invalid(field)`` else.

    NUL characters and lone surrogates (valid JSON escapes) would otherwise reach
    the driver and fail as a server error.
    """
    if value is None:
        return None
    if "\x00" in value:
        raise Invalid(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(field, "must be valid Unicode text") from None
    return value


@dataclass(frozen=True, slots=True)
class RateGroup:
    """A rate group as the caller sees it."""

    id: int
    name: str
    currency: str
    description: str
    owner_user_id: int | None
    owner_login: str | None  # hidden (None) from customers
    owned: bool  # owned by the caller's own user
    operator: bool  # the operator's group (no owner)
    rate_count: int
    accounts_using: int | None  # accounts the caller can see on this group (detail only)
    created_at: datetime
    updated_at: datetime
    time_zone: str = "UTC"  # IANA zone the rates' periods are read in
    cost_decimals: int = 6  # a call's cost per level is rounded to these decimals
    cost_rounding: str = "up"  # up or half_up


_GROUP_SORT = {
    "id": "g.id",
    "name": "g.name",
    "currency": "g.currency",
    "rate_count": "rate_count",
    "created_at": "g.created_at",
    "updated_at": "g.updated_at",
}

_GROUP_COLUMNS = """
g.id, g.name, g.currency, g.description, g.owner_user_id, u.login AS owner_login,
g.created_at, g.updated_at, g.time_zone, g.cost_decimals, g.cost_rounding,
(SELECT count(*) FROM rates r WHERE r.rate_group_id = g.id) AS rate_count
"""


def _group(principal: Principal, row: asyncpg.Record, accounts_using: int | None) -> RateGroup:
    owner: int | None = row["owner_user_id"]
    return RateGroup(
        id=row["id"],
        name=row["name"],
        currency=row["currency"],
        description=row["description"],
        owner_user_id=owner,
        owner_login=None if principal.role == "customer" else row["owner_login"],
        owned=owner is not None and owner == principal.user_id,
        operator=owner is None,
        rate_count=int(row["rate_count"]),
        accounts_using=accounts_using,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        time_zone=row["time_zone"],
        cost_decimals=int(row["cost_decimals"]),
        cost_rounding=row["cost_rounding"],
    )


async def list_groups(
    ctx: ManagementContext, principal: Principal, page: PageRequest, *, name: str | None = None
) -> tuple[list[RateGroup], int]:
    """The groups the caller may see (``name``: case-insensitive substring); and their count."""
    check_text("name", name)
    order = page.order_by(_GROUP_SORT, "g.id")
    where = (
        f"{rate_group_visible('g', 1, 2)} "
        "AND ($3::text IS NULL OR strpos(lower(g.name), lower($3)) > 0)"
    )
    args: list[Any] = [principal.user_id, principal.grant_list, name]
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM rate_groups g WHERE {where}", *args)
            rows = await conn.fetch(
                f"SELECT {_GROUP_COLUMNS} FROM rate_groups g "
                f"LEFT JOIN users u ON u.id = g.owner_user_id WHERE {where} "
                f"{order} LIMIT $4 OFFSET $5",
                *args,
                page.limit,
                page.offset,
            )
    return [_group(principal, r, None) for r in rows], int(total)


async def require_group(
    conn: Connection, principal: Principal, group_id: int, *, for_update: bool = False
) -> asyncpg.Record:
    """The group's row (with ``owner_login`` and ``rate_count``) if visible, else NotFound."""
    row = await conn.fetchrow(
        f"SELECT {_GROUP_COLUMNS} FROM rate_groups g "
        f"LEFT JOIN users u ON u.id = g.owner_user_id "
        f"WHERE g.id = $3 AND {rate_group_visible('g', 1, 2)}"
        + (" FOR UPDATE OF g" if for_update else ""),
        principal.user_id,
        principal.grant_list,
        group_id,
    )
    if row is None:
        raise NotFound(f"rate group {group_id} not found")
    found: asyncpg.Record = row
    return found


async def _own_mode(conn: Connection, principal: Principal) -> str | None:
    mode: str | None = await conn.fetchval(
        "SELECT billing_mode FROM accounts WHERE id = $1", principal.account_id
    )
    return mode


async def check_may_create(conn: Connection, principal: Principal) -> None:
    """Forbidden unless the caller is an admin or an agent in transfer mode."""
    if principal.is_admin:
        return
    if principal.role != "agent":
        raise Forbidden("customers cannot create rate groups")
    if await _own_mode(conn, principal) != "transfer":
        raise Forbidden(
            "an agent in wholesale mode has a fixed rate group and may not create or "
            "change rate groups",
            code=WHOLESALE_FIXED,
        )


async def check_may_change(conn: Connection, principal: Principal, group: asyncpg.Record) -> None:
    """Forbidden unless the caller may change the (visible) ``group`` and its rates."""
    if principal.is_admin:
        return
    await check_may_create(conn, principal)
    if group["owner_user_id"] != principal.user_id:
        raise Forbidden(
            "only the owner of a rate group (or the operator) may change it", code=NOT_OWNER
        )


async def get_group(ctx: ManagementContext, principal: Principal, group_id: int) -> RateGroup:
    """One visible group, with how many of the caller's visible accounts use it."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await require_group(conn, principal, group_id)
            using = await conn.fetchval(
                f"SELECT count(*) FROM accounts a WHERE a.rate_group_id = $1 AND {visible('a', 2)}",
                group_id,
                principal.grant_list,
            )
    return _group(principal, row, int(using))


def _check_group_fields(name: str | None, currency: str | None, description: str | None) -> None:
    if name is not None:
        check_text("name", name)
        if not 1 <= len(name.strip()) <= 100 or name != name.strip():
            raise Invalid("name", "must be 1 to 100 characters, without surrounding spaces")
    if currency is not None and not (
        len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()
    ):
        raise Invalid("currency", "must be a three-letter ISO 4217 code in capitals")
    if description is not None:
        check_text("description", description)
        if len(description) > 2000:
            raise Invalid("description", "must be at most 2000 characters")


@dataclass(frozen=True, slots=True)
class Terms:
    """What a group sets for all its rates (None in an update: unchanged)."""

    time_zone: str | None = None
    cost_decimals: int | None = None
    cost_rounding: str | None = None


def _check_terms(terms: Terms) -> None:
    if terms.time_zone is not None:
        check_text("time_zone", terms.time_zone)
        try:
            zone_info(terms.time_zone)
        except ValueError as exc:
            raise Invalid("time_zone", str(exc)) from None
    if terms.cost_decimals is not None and not (
        type(terms.cost_decimals) is int and 0 <= terms.cost_decimals <= 6
    ):
        raise Invalid("cost_decimals", "must be a whole number from 0 to 6")
    if terms.cost_rounding is not None and terms.cost_rounding not in MODES:
        raise Invalid("cost_rounding", f"must be one of {', '.join(MODES)}")


def _name_taken(exc: Duplicate) -> Conflict:
    return Conflict(
        f"a rate group of this owner already has that name: {exc.detail or ''}".strip(),
        code="RATE_GROUP_EXISTS",
    )


async def create_group(
    ctx: ManagementContext,
    principal: Principal,
    *,
    name: str,
    currency: str | None = None,
    description: str = "",
    terms: Terms = Terms(),
) -> RateGroup:
    """A new group: the operator's for an admin, a private one for a transfer-mode agent.

    The currency defaults to the agent's own account currency (USD for the operator);
    ``terms`` default to UTC and exact (6-decimal) costs.
    """
    _check_group_fields(name, currency, description)
    _check_terms(terms)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await check_may_create(conn, principal)
            owner = None if principal.is_admin else principal.user_id
            if currency is None:
                currency = "USD"
                if principal.account_id is not None:
                    currency = await conn.fetchval(
                        "SELECT currency FROM accounts WHERE id = $1", principal.account_id
                    )
            try:
                with pg_integrity():
                    group_id = await conn.fetchval(
                        "INSERT INTO rate_groups (name, owner_user_id, currency, description, "
                        "time_zone, cost_decimals, cost_rounding) "
                        "VALUES ($1, $2, $3, $4, coalesce($5, 'UTC'), coalesce($6, 6), "
                        "coalesce($7, 'up')) RETURNING id",
                        name,
                        owner,
                        currency,
                        description,
                        terms.time_zone,
                        terms.cost_decimals,
                        terms.cost_rounding,
                    )
            except Duplicate as exc:
                raise _name_taken(exc) from None
            row = await require_group(conn, principal, group_id)
    return _group(principal, row, 0)


async def update_group(
    ctx: ManagementContext,
    principal: Principal,
    group_id: int,
    *,
    name: str | None = None,
    currency: str | None = None,
    description: str | None = None,
    terms: Terms = Terms(),
) -> RateGroup:
    """Rename, re-describe or change the currency of a group the caller may change
    (the currency only while no account uses the group: ``RATE_GROUP_IN_USE``), or
    its ``terms`` (zone, rounding), which apply to calls authorized from then on."""
    _check_group_fields(name, currency, description)
    _check_terms(terms)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            group = await require_group(conn, principal, group_id, for_update=True)
            await check_may_change(conn, principal, group)
            if currency not in (None, group["currency"]) and await _in_use(conn, group_id):
                raise Conflict(
                    "the currency of a rate group cannot change while accounts use it",
                    code=IN_USE,
                )
            try:
                with pg_integrity():
                    await conn.execute(
                        "UPDATE rate_groups SET name = coalesce($2, name), "
                        "currency = coalesce($3, currency), "
                        "description = coalesce($4, description), "
                        "time_zone = coalesce($5, time_zone), "
                        "cost_decimals = coalesce($6, cost_decimals), "
                        "cost_rounding = coalesce($7, cost_rounding), "
                        "updated_at = now() WHERE id = $1",
                        group_id,
                        name,
                        currency,
                        description,
                        terms.time_zone,
                        terms.cost_decimals,
                        terms.cost_rounding,
                    )
            except Duplicate as exc:
                raise _name_taken(exc) from None
            row = await require_group(conn, principal, group_id)
    return _group(principal, row, None)


async def _in_use(conn: Connection, group_id: int) -> bool:
    """True while any account, removed ones included, has the group."""
    used: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE rate_group_id = $1)", group_id
    )
    return used


async def delete_group(ctx: ManagementContext, principal: Principal, group_id: int) -> None:
    """Delete a group and its rates; ``RATE_GROUP_IN_USE`` while any account uses it.

    Any account counts, removed ones included: they keep their history, and the
    foreign key would refuse anyway.
    """
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            group = await require_group(conn, principal, group_id, for_update=True)
            await check_may_change(conn, principal, group)
            in_use = Conflict(
                "rate group is assigned to accounts; assign them another group first",
                code=IN_USE,
            )
            if await _in_use(conn, group_id):
                raise in_use
            try:
                with pg_integrity():
                    await conn.execute("DELETE FROM rate_groups WHERE id = $1", group_id)
            except StillReferenced:
                raise in_use from None  # an account took it meanwhile
