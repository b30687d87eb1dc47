"""Creating, changing and removing customers; creating sub-agents.

Where a new account hangs: an agent creates under its own account, or under a
sub-agent it may see when it names one (``parent_id``); the operator must say where
(``parent_id``, null for a top-level account). The currency is chosen at creation
(default: the parent's) and fixed afterwards; the rate group
must be one the caller may use and in that currency.

Removal is soft: status ``removed`` with ``removed_at``; the ledger and CDRs stay,
the customer's extensions and portal users are disabled, and its caller-IDs are
deleted so the numbers can be given to someone else (a removed account cannot be
restored, and an unexplained ``CALLER_ID_TAKEN`` would be worse).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from argon2 import PasswordHasher

from gateway.agents import fraud_blocks
from gateway.agents.auth import check_new_password
from gateway.agents.context import ManagementContext
from gateway.agents.customers_accounts import (
    AccountView,
    Live,
    account_view,
    calls_up,
    rate_group_currency,
    read_live,
)
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.numbers import ExtensionView, check_username, insert_extension
from gateway.agents.passwords import hash_password
from gateway.agents.principal import Principal, may_manage, require_account
from gateway.balance.mirror import AccountMirror
from gateway.core.errors import BackendUnavailable
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

LOGIN_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_EMAILS = 10
# Generated passwords carry 96 random bits, which no amount of guessing gets through
# whatever the hash costs; so they get a cheap argon2id (a batch of 1000 takes about
# a second, where the full cost takes minutes on a small machine). Passwords people
# choose keep the full cost of ``hash_password``.
_GENERATED_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass(frozen=True, slots=True)
class ExtensionSpec:
    username: str | None = None
    secret: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A new customer or agent. ``parent_given`` tells an absent parent from null."""

    name: str
    rate_group_id: int | None
    parent_id: int | None = None
    parent_given: bool = False
    credit_limit_micros: int = 0
    max_concurrent_calls: int | None = None
    currency: str | None = None
    contact_emails: tuple[str, ...] = ()
    login: str | None = None
    password: str | None = None
    extension: ExtensionSpec | None = None
    billing_mode: str | None = None  # agents only
    commission_rate_bp: int = 0  # agents only


@dataclass(frozen=True, slots=True)
class Created:
    """A new account; ``password`` only when it was generated (shown this once)."""

    account: AccountView
    login: str | None
    password: str | None
    extension: ExtensionView | None


# -- values ---------------------------------------------------------------------------------


def new_password() -> str:
    """A random portal password (96 bits)."""
    return secrets.token_urlsafe(12)


def new_login() -> str:
    """A random 10-digit portal login."""
    return str(10**9 + secrets.randbelow(9 * 10**9))


def check_login(login: str, field: str = "login") -> str:
    if not LOGIN_RE.match(login):
        raise Invalid(field, "must be 1..64 of A-Z a-z 0-9 . _ @ -")
    return login


def check_emails(emails: Sequence[str], field: str = "contact_emails") -> list[str]:
    if len(emails) > MAX_EMAILS:
        raise Invalid(field, f"at most {MAX_EMAILS} addresses")
    for email in emails:
        if len(email) > 254 or not EMAIL_RE.match(email):
            raise Invalid(field, f"{email!r} is not an e-mail address")
    return list(emails)


def check_name(name: str, field: str = "name") -> str:
    if not 1 <= len(name.strip()) <= 200 or len(name) > 200:
        raise Invalid(field, "must be 1..200 characters")
    return name.strip()


async def hash_chosen(password: str) -> str:
    """The full-cost hash of a password a person chose (off the event loop)."""
    return await asyncio.to_thread(hash_password, password)


async def hash_generated(passwords: Sequence[str]) -> list[str]:
    """Cheap argon2id hashes of generated passwords (off the event loop)."""
    return await asyncio.to_thread(lambda: [_GENERATED_HASHER.hash(p) for p in passwords])


# -- building blocks shared with the batch ---------------------------------------------------


async def resolve_parent(
    conn: Connection, principal: Principal, parent_id: int | None, given: bool
) -> asyncpg.Record | None:
    """The parent agent row of a new account (None: top level, operator only)."""
    if principal.role == "customer":
        raise Forbidden("customers cannot create accounts")
    if principal.is_admin:
        if not given:
            raise Invalid("parent_id", "required for the operator (null for a top-level account)")
        if parent_id is None:
            return None
    elif parent_id is None:
        parent_id = principal.own_account()
    try:
        return await require_account(conn, principal, parent_id, kind="agent")
    except NotFound:  # said about the field, like an unknown rate group
        raise Invalid("parent_id", "no such agent") from None


async def account_currency(
    conn: Connection, principal: Principal, spec: AccountSpec, parent: asyncpg.Record | None
) -> str:
    """The new account's currency: the one asked for, else the parent's (at the top: the
    rate group's, else USD); the rate group must be in it. Taking the parent's unless
    told keeps a wrong rate group a 422 rather than a customer in a surprise currency.
    It never changes later: money between it and its parent is converted at the
    exchange rates (``gateway.agents.exchange``)."""
    group_currency = (
        await rate_group_currency(conn, principal, spec.rate_group_id)
        if spec.rate_group_id is not None
        else None
    )
    inherited = parent["currency"] if parent is not None else group_currency
    currency = spec.currency or inherited or "USD"
    if group_currency is not None and group_currency != currency:
        raise Invalid("rate_group_id", f"the rate group is in {group_currency}, not {currency}")
    return currency


async def insert_account(
    conn: Connection, kind: str, spec: AccountSpec, parent_id: int | None, currency: str
) -> asyncpg.Record:
    """Insert one account row (the trigger places it in the tree)."""
    row = await conn.fetchrow(
        "INSERT INTO accounts (kind, name, parent_id, billing_mode, rate_group_id, "
        "credit_limit_micros, max_concurrent_calls, currency, contact_emails, "
        "commission_rate_bp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        kind,
        spec.name,
        parent_id,
        spec.billing_mode if kind == "agent" else None,
        spec.rate_group_id,
        spec.credit_limit_micros,
        spec.max_concurrent_calls,
        currency,
        list(spec.contact_emails),
        spec.commission_rate_bp if kind == "agent" else 0,
    )
    assert row is not None
    found: asyncpg.Record = row
    return found


async def insert_user(
    conn: Connection, login: str, password_hash: str, role: str, account_id: int
) -> int | None:
    """Insert a portal user; None when the login is taken (in any letter case)."""
    user_id: int | None = await conn.fetchval(
        "INSERT INTO users (login, password_hash, role, account_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING id",
        login,
        password_hash,
        role,
        account_id,
    )
    return user_id


async def _sync_mirror(ctx: ManagementContext, account_id: int) -> None:
    # The call path's directory also pushes limit/status changes on NOTIFY; doing it
    # here too makes them bind at once even when no gateway is listening. Best
    # effort: PostgreSQL has committed, and the next mirror load reads it.
    try:
        await AccountMirror(ctx.pool, ctx.pipeliner, ctx.keys).sync(account_id)
    except BackendUnavailable as exc:
        log.warning("api.mirror_sync_failed", extra={"account": account_id, "error": exc.reason})


# -- create -----------------------------------------------------------------------------------


async def _validate(spec: AccountSpec, kind: str) -> str | None:
    """Check the fields; return the password hash to store (None: no portal user)."""
    check_name(spec.name)
    check_emails(spec.contact_emails)
    if spec.credit_limit_micros < 0:
        raise Invalid("credit_limit_micros", "must be >= 0")
    if spec.max_concurrent_calls is not None and spec.max_concurrent_calls < 0:
        raise Invalid("max_concurrent_calls", "must be >= 0")
    if kind == "customer" and spec.rate_group_id is None:
        raise Invalid("rate_group_id", "a customer needs a rate group")
    if kind == "agent":
        if spec.billing_mode not in ("wholesale", "transfer"):
            raise Invalid("billing_mode", "must be wholesale or transfer")
        if spec.billing_mode == "wholesale" and spec.rate_group_id is None:
            raise Invalid("rate_group_id", "a wholesale agent needs a rate group")
        if not 0 <= spec.commission_rate_bp <= 10_000:
            raise Invalid("commission_rate_bp", "must be 0..10000")
    if spec.extension is not None and spec.extension.username is not None:
        check_username(spec.extension.username, "extension.username")
    if spec.login is None:
        if spec.password is not None:
            raise Invalid("login", "required with a password")
        return None
    check_login(spec.login)
    if spec.password is None:
        return None
    check_new_password(spec.password, "password")
    return await hash_chosen(spec.password)


async def _create(
    ctx: ManagementContext, principal: Principal, kind: str, spec: AccountSpec
) -> Created:
    chosen_hash = await _validate(spec, kind)
    generated = new_password() if spec.login is not None and spec.password is None else None
    password_hash = chosen_hash or (
        (await hash_generated([generated]))[0] if generated is not None else None
    )
    extension: ExtensionView | None = None
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            parent = await resolve_parent(conn, principal, spec.parent_id, spec.parent_given)
            currency = await account_currency(conn, principal, spec, parent)
            row = await insert_account(
                conn, kind, spec, None if parent is None else parent["id"], currency
            )
            if (
                spec.login is not None
                and password_hash is not None
                and await insert_user(conn, spec.login, password_hash, kind, row["id"]) is None
            ):
                raise Conflict(f"login {spec.login} is already in use", code="LOGIN_TAKEN")
            if spec.extension is not None:
                ext = spec.extension
                extension = await insert_extension(
                    conn, row["id"], ext.username, ext.secret, ext.description
                )
                if extension is None:
                    raise Conflict(
                        f"extension {ext.username} is already in use", code="EXTENSION_TAKEN"
                    )
    # A new account holds nothing yet: no call has loaded it into the mirror.
    return Created(account_view(row, Live(0, 0)), spec.login, generated, extension)


async def create_customer(
    ctx: ManagementContext, principal: Principal, spec: AccountSpec
) -> Created:
    """Create one customer, optionally with its portal user and a first extension."""
    return await _create(ctx, principal, "customer", spec)


async def create_agent(ctx: ManagementContext, principal: Principal, spec: AccountSpec) -> Created:
    """Create an agent (operator only), optionally with its portal user."""
    if not principal.is_admin:
        raise Forbidden("only the operator creates agents")
    if spec.extension is not None:
        raise Invalid("extension", "agents have no extensions")
    return await _create(ctx, principal, "agent", spec)


# -- change and remove ------------------------------------------------------------------------

_NOT_NULL = (
    "name",
    "credit_limit_micros",
    "rate_group_id",
    "status",
    "contact_emails",
    "tax_rate_bp",
    "tax_inclusive",
)


async def _managed_customer(
    conn: Connection, principal: Principal, customer_id: int, kind: str = "customer"
) -> asyncpg.Record:
    row = await require_account(conn, principal, customer_id, kind=kind, for_update=True)
    if not may_manage(principal, row):
        raise Forbidden("an account cannot change itself; ask the agent above it")
    return row


async def update_customer(
    ctx: ManagementContext,
    principal: Principal,
    customer_id: int,
    changes: dict[str, Any],
    kind: str = "customer",
) -> AccountView:
    """Change the given fields of a customer (or, with ``kind``, an agent: its inbound
    rate group and invoice tax live here too) the principal manages.

    ``status`` takes active or disabled (a manual disable, which the dormancy job
    never undoes); ``max_concurrent_calls`` null means no limit; ``tax_rate_bp`` and
    ``tax_inclusive`` are the tax of its invoices (``gateway/agents/statement.py``).
    """
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            raise Invalid(name, "must not be null")
    sets: list[str] = []
    args: list[Any] = [customer_id]

    def put(column: str, value: Any) -> None:
        args.append(value)
        sets.append(f"{column} = ${len(args)}")

    if "name" in changes:
        put("name", check_name(changes["name"]))
    if "credit_limit_micros" in changes:
        if changes["credit_limit_micros"] < 0:
            raise Invalid("credit_limit_micros", "must be >= 0")
        put("credit_limit_micros", changes["credit_limit_micros"])
    if "max_concurrent_calls" in changes:
        limit = changes["max_concurrent_calls"]
        if limit is not None and limit < 0:
            raise Invalid("max_concurrent_calls", "must be >= 0")
        put("max_concurrent_calls", limit)
    if "contact_emails" in changes:
        put("contact_emails", check_emails(changes["contact_emails"]))
    if "tax_rate_bp" in changes:
        if not 0 <= changes["tax_rate_bp"] <= 10_000:
            raise Invalid("tax_rate_bp", "must be 0..10000 (basis points: 2000 is 20 %)")
        put("tax_rate_bp", changes["tax_rate_bp"])
    if "tax_inclusive" in changes:
        put("tax_inclusive", bool(changes["tax_inclusive"]))
    if "status" in changes:
        status = changes["status"]
        if status not in ("active", "disabled"):
            raise Invalid("status", "must be active or disabled (DELETE removes)")
        put("status", status)
        put("disabled_reason", "manual" if status == "disabled" else "")
        put("disabled_detail", "")
        sets.append("disabled_at = " + ("now()" if status == "disabled" else "NULL"))
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await _managed_customer(conn, principal, customer_id, kind)
            unblocked = row["disabled_reason"] == "fraud" and changes.get("status") == "active"
            if "rate_group_id" in changes:
                currency = await rate_group_currency(conn, principal, changes["rate_group_id"])
                if currency != row["currency"]:
                    raise Invalid(
                        "rate_group_id", f"the rate group is in {currency}, not {row['currency']}"
                    )
                put("rate_group_id", changes["rate_group_id"])
            if changes.get("inbound_rate_group_id") is not None:
                group = changes["inbound_rate_group_id"]
                currency = await rate_group_currency(
                    conn, principal, group, "inbound_rate_group_id"
                )
                if currency != row["currency"]:
                    raise Invalid(
                        "inbound_rate_group_id",
                        f"the rate group is in {currency}, not {row['currency']}",
                    )
            if "inbound_rate_group_id" in changes:
                put("inbound_rate_group_id", changes["inbound_rate_group_id"])
            if sets:
                updated = await conn.fetchrow(
                    f"UPDATE accounts SET {', '.join(sets)} WHERE id = $1 RETURNING *", *args
                )
                assert updated is not None  # locked above
                row = updated
    if {"credit_limit_micros", "max_concurrent_calls", "status"} & changes.keys():
        await _sync_mirror(ctx, customer_id)
    if unblocked:
        await fraud_blocks.forgive(ctx.pipeliner.client, ctx.keys, row["root_id"], customer_id)
    live = await read_live(ctx, [row])
    return account_view(row, live.get(customer_id))


async def remove_customer(ctx: ManagementContext, principal: Principal, customer_id: int) -> None:
    """Soft-delete a customer with no call up (409 CALLS_IN_PROGRESS otherwise)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await _managed_customer(conn, principal, customer_id)
            # Read under the row lock: a call starting now still races this check,
            # but the mirror sync below makes reserve.lua refuse every later one.
            if await calls_up(ctx, row) > 0:
                raise Conflict(
                    "the customer has calls in progress; try again when they end",
                    code="CALLS_IN_PROGRESS",
                )
            await conn.execute(
                "UPDATE accounts SET status = 'removed', removed_at = now() WHERE id = $1",
                customer_id,
            )
            await conn.execute(
                "UPDATE extensions SET status = 'disabled' WHERE account_id = $1", customer_id
            )
            await conn.execute("DELETE FROM caller_ids WHERE account_id = $1", customer_id)
            await conn.execute(
                "UPDATE users SET status = 'disabled', updated_at = now() WHERE account_id = $1",
                customer_id,
            )
            await conn.execute(
                "DELETE FROM api_sessions WHERE user_id IN "
                "(SELECT id FROM users WHERE account_id = $1)",
                customer_id,
            )
    await _sync_mirror(ctx, customer_id)
