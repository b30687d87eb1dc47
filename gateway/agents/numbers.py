"""Caller-IDs and extensions (SIP usernames) of customers.

Both identify a caller on the call path (``gateway/authz/directory.py`` reloads them
on NOTIFY), so both are unique system-wide. A clash answers 409 with a code
(``CALLER_ID_TAKEN``, ``EXTENSION_TAKEN``) and never names the owner.

Caller-IDs are stored the way the call path looks them up: E.164 digits without
'+'. The API number plan (``API_PLAN``) takes what people type: spaces, dashes,
dots and parentheses are dropped, a leading '+' or '00' is removed, and what is left
must be 1..32 digits. There is no national form: "020 7946 0000" is stored as
"02079460000", so enter numbers in international form.

An extension's secret is stored readable (SIP digest and CHAP need the secret
itself) and is shown to everyone who may see the customer: its agents, the
operator, and the customer's own users, because each of them may have to put it
into a phone or a switch.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, require_account, visible
from gateway.core.errors import Duplicate
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity
from gateway.rating.numbers import InvalidNumber, NumberPlan, normalize

API_PLAN = NumberPlan(international_prefixes=("00",), national_prefix="")
MAX_DIGITS = 32
USERNAME_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
# What a typed number may contain before normalization; anything else (letters,
# a SIP URI, '@') is refused rather than guessed at.
_TYPED_NUMBER_RE = re.compile(r"^\s*\+?[0-9 ().-]+$")
_GENERATE_TRIES = 10


@dataclass(frozen=True, slots=True)
class CallerIdView:
    id: int
    account_id: int
    number: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ExtensionView:
    id: int
    account_id: int
    username: str
    secret: str | None
    status: str
    description: str
    created_at: datetime


def _caller_id(row: asyncpg.Record) -> CallerIdView:
    return CallerIdView(
        row["id"], row["account_id"], row["number"], row["description"], row["created_at"]
    )


def _extension(row: asyncpg.Record) -> ExtensionView:
    return ExtensionView(
        row["id"],
        row["account_id"],
        row["username"],
        row["secret"],
        row["status"],
        row["description"],
        row["created_at"],
    )


# -- values -----------------------------------------------------------------------------


def normalize_caller_id(raw: str, field: str = "number") -> str:
    """``raw`` as stored digits under ``API_PLAN``; ``Invalid(field)`` when it is no number."""
    if not _TYPED_NUMBER_RE.match(raw):
        raise Invalid(field, "must be a phone number: digits, optional leading + or 00")
    try:
        digits = normalize(raw, API_PLAN)
    except InvalidNumber:
        raise Invalid(field, "must contain digits") from None
    if len(digits) > MAX_DIGITS:
        raise Invalid(field, f"must be at most {MAX_DIGITS} digits")
    return digits


def check_username(username: str, field: str = "username") -> str:
    """``username`` if it is a valid SIP username, else ``Invalid(field)``."""
    if not USERNAME_RE.match(username):
        raise Invalid(field, "must be 1..64 of A-Z a-z 0-9 . _ + -")
    return username


def new_username() -> str:
    """A random 10-digit SIP username (digits dial from any phone keypad)."""
    return str(10**9 + secrets.randbelow(9 * 10**9))


def new_secret() -> str:
    """A random SIP secret (96 bits, URL-safe characters)."""
    return secrets.token_urlsafe(12)


# -- inserts shared with customer creation ---------------------------------------------------


async def insert_caller_id(
    conn: Connection, account_id: int, number: str, description: str = ""
) -> CallerIdView | None:
    """Add a normalized caller-ID; None when the number is taken (inside a transaction too)."""
    row = await conn.fetchrow(
        "INSERT INTO caller_ids (account_id, number, description) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING *",
        account_id,
        number,
        description,
    )
    return None if row is None else _caller_id(row)


async def insert_extension(
    conn: Connection,
    account_id: int,
    username: str | None,
    secret: str | None,
    description: str = "",
) -> ExtensionView | None:
    """Add an extension; a missing username or secret is generated.

    None when the given ``username`` is taken. A generated one that happens to be
    taken is drawn again. ON CONFLICT keeps a surrounding transaction usable.
    """
    for _ in range(_GENERATE_TRIES):
        row = await conn.fetchrow(
            "INSERT INTO extensions (account_id, username, secret, description) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING *",
            account_id,
            username or new_username(),
            secret or new_secret(),
            description,
        )
        if row is not None:
            return _extension(row)
        if username:
            return None
    raise Conflict("could not generate a free extension; try again", code="EXTENSION_TAKEN")


# -- access ---------------------------------------------------------------------------


async def _customer(
    conn: Connection, principal: Principal, customer_id: int, *, write: bool
) -> asyncpg.Record:
    row = await require_account(
        conn, principal, customer_id, kind="customer", include_removed=not write
    )
    if write and principal.role == "customer":
        raise Forbidden("customers cannot change their caller-IDs or extensions")
    return row


async def _owned(
    conn: Connection, principal: Principal, table: str, item_id: int, *, write: bool
) -> asyncpg.Record:
    # ``table`` is one of two literals from this module, never input.
    row = await conn.fetchrow(
        f"SELECT t.* FROM {table} t JOIN accounts a ON a.id = t.account_id "
        f"WHERE t.id = $1 AND a.kind = 'customer' AND a.status <> 'removed' "
        f"AND {visible('a', 2)} FOR UPDATE OF t",
        item_id,
        principal.grant_list,
    )
    if row is None:
        raise NotFound(f"{table.rstrip('s').replace('_', '-')} {item_id} not found")
    if write and principal.role == "customer":
        raise Forbidden("customers cannot change their caller-IDs or extensions")
    found: asyncpg.Record = row
    return found


async def _page(
    conn: Connection,
    table: str,
    customer_id: int,
    page: PageRequest,
    columns: dict[str, str],
) -> tuple[list[asyncpg.Record], int]:
    order = page.order_by(columns, "t.id")
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {table} t WHERE t.account_id = $1", customer_id
    )
    rows = await conn.fetch(
        f"SELECT t.* FROM {table} t WHERE t.account_id = $1 {order} LIMIT $2 OFFSET $3",
        customer_id,
        page.limit,
        page.offset,
    )
    return rows, total


# -- caller-IDs -----------------------------------------------------------------------------

CALLER_ID_SORT = {"id": "t.id", "number": "t.number", "created_at": "t.created_at"}


async def list_caller_ids(
    ctx: ManagementContext, principal: Principal, customer_id: int, page: PageRequest
) -> tuple[list[CallerIdView], int]:
    """A page of the customer's caller-IDs and their total count."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await _customer(conn, principal, customer_id, write=False)
            rows, total = await _page(conn, "caller_ids", customer_id, page, CALLER_ID_SORT)
    return [_caller_id(r) for r in rows], total


async def add_caller_id(
    ctx: ManagementContext, principal: Principal, customer_id: int, number: str, description: str
) -> CallerIdView:
    """Add a caller-ID to a customer; 409 CALLER_ID_TAKEN when any account has it."""
    digits = normalize_caller_id(number)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _customer(conn, principal, customer_id, write=True)
            added = await insert_caller_id(conn, customer_id, digits, description)
    if added is None:
        raise Conflict(f"caller-ID {digits} is already in use", code="CALLER_ID_TAKEN")
    return added


async def change_caller_id(
    ctx: ManagementContext, principal: Principal, caller_id: int, changes: dict[str, Any]
) -> CallerIdView:
    """Change a caller-ID's number and/or description (keys absent stay as they are)."""
    number = changes.get("number")
    description = changes.get("description")
    if "number" in changes and number is None:
        raise Invalid("number", "must not be null")
    if "description" in changes and description is None:
        raise Invalid("description", "must not be null")
    digits = normalize_caller_id(number) if number is not None else None
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _owned(conn, principal, "caller_ids", caller_id, write=True)
            try:
                with pg_integrity():
                    async with conn.transaction():
                        row = await conn.fetchrow(
                            "UPDATE caller_ids SET number = coalesce($2, number), "
                            "description = coalesce($3, description) WHERE id = $1 RETURNING *",
                            caller_id,
                            digits,
                            description,
                        )
            except Duplicate:
                raise Conflict(
                    f"caller-ID {digits} is already in use", code="CALLER_ID_TAKEN"
                ) from None
    assert row is not None  # locked above
    return _caller_id(row)


async def delete_caller_id(ctx: ManagementContext, principal: Principal, caller_id: int) -> None:
    """Remove a caller-ID (it identifies nobody afterwards; the number is free again)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _owned(conn, principal, "caller_ids", caller_id, write=True)
            await conn.execute("DELETE FROM caller_ids WHERE id = $1", caller_id)


# -- extensions -----------------------------------------------------------------------------

EXTENSION_SORT = {
    "id": "t.id",
    "username": "t.username",
    "status": "t.status",
    "created_at": "t.created_at",
}


async def list_extensions(
    ctx: ManagementContext, principal: Principal, customer_id: int, page: PageRequest
) -> tuple[list[ExtensionView], int]:
    """A page of the customer's extensions (with secrets) and their total count."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await _customer(conn, principal, customer_id, write=False)
            rows, total = await _page(conn, "extensions", customer_id, page, EXTENSION_SORT)
    return [_extension(r) for r in rows], total


async def add_extension(
    ctx: ManagementContext,
    principal: Principal,
    customer_id: int,
    username: str | None,
    secret: str | None,
    description: str,
) -> ExtensionView:
    """Add an extension billed to the customer; 409 EXTENSION_TAKEN on a used username."""
    if username is not None:
        check_username(username)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _customer(conn, principal, customer_id, write=True)
            added = await insert_extension(conn, customer_id, username, secret, description)
    if added is None:
        raise Conflict(f"extension {username} is already in use", code="EXTENSION_TAKEN")
    return added


_EXTENSION_FIELDS = ("username", "secret", "status", "description")


async def change_extension(
    ctx: ManagementContext, principal: Principal, extension_id: int, changes: dict[str, Any]
) -> ExtensionView:
    """Change username, secret, status (active|disabled) or description of an extension."""
    for name in _EXTENSION_FIELDS:
        if name in changes and changes[name] is None:
            raise Invalid(name, "must not be null")
    if changes.get("username") is not None:
        check_username(changes["username"])
    if changes.get("status") not in (None, "active", "disabled"):
        raise Invalid("status", "must be active or disabled")
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _owned(conn, principal, "extensions", extension_id, write=True)
            try:
                with pg_integrity():
                    async with conn.transaction():
                        row = await conn.fetchrow(
                            "UPDATE extensions SET username = coalesce($2, username), "
                            "secret = coalesce($3, secret), status = coalesce($4, status), "
                            "description = coalesce($5, description) WHERE id = $1 RETURNING *",
                            extension_id,
                            *(changes.get(name) for name in _EXTENSION_FIELDS),
                        )
            except Duplicate:
                raise Conflict(
                    f"extension {changes.get('username')} is already in use",
                    code="EXTENSION_TAKEN",
                ) from None
    assert row is not None  # locked above
    return _extension(row)


async def delete_extension(ctx: ManagementContext, principal: Principal, extension_id: int) -> None:
    """Remove an extension; its username is free again and calls with it are refused."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _owned(conn, principal, "extensions", extension_id, write=True)
            await conn.execute("DELETE FROM extensions WHERE id = $1", extension_id)
