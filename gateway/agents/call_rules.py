"""Reading and setting an account's call rules (fraud and margin protection).

The rules themselves are checked on the call path (``gateway/rating/limits.py`` for
destinations, prices and margins; ``gateway/balance/lua/lib.lua`` for spend caps and
call-attempt rates, in the reservation's atomic step):
every level of a call's chain applies its own and the strictest wins. Here: who may
set them and what they may say. An agent sets the rules of the accounts below it,
never its own (its parent or the operator does), and never a price limit above the
one its own chain imposes on it, since that could never take effect.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Forbidden, Invalid
from gateway.agents.principal import Principal, may_manage, require_account
from gateway.db import BIGINT_MAX, INTEGER_MAX, Connection
from gateway.db.pool import pg_errors
from gateway.rating.rules import MARGIN_POLICIES

MAX_PREFIXES = 1000
_PREFIX = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Rules:
    """What an account's rules say (the defaults: no rules)."""

    allow_prefixes: tuple[str, ...] = ()
    block_prefixes: tuple[str, ...] = ()
    max_price_per_min_micros: int | None = None
    negative_margin: str = "allow"
    min_margin_micros: int = 0
    max_spend_hour_micros: int | None = None
    max_spend_day_micros: int | None = None
    max_spend_call_micros: int | None = None
    max_attempts_per_s: int | None = None
    max_attempts_per_min: int | None = None


LIMITS = (
    "max_spend_hour_micros",
    "max_spend_day_micros",
    "max_spend_call_micros",
    "max_attempts_per_s",
    "max_attempts_per_min",
)
COLUMNS = (
    "allow_prefixes",
    "block_prefixes",
    "max_price_per_min_micros",
    "negative_margin",
    "min_margin_micros",
    *LIMITS,
)


@dataclass(frozen=True, slots=True)
class RulesView:
    account_id: int
    rules: Rules
    set: bool  # False: the account has no rules of its own
    updated_at: datetime | None
    updated_by: str
    # The accounts above it that set rules, nearest first: they apply too.
    inherited: tuple[tuple[int, str, Rules], ...]


def _rules(row: asyncpg.Record) -> Rules:
    values = {c: row[c] for c in COLUMNS}
    values["allow_prefixes"] = tuple(values["allow_prefixes"])
    values["block_prefixes"] = tuple(values["block_prefixes"])
    return Rules(**values)


def _prefixes(field: str, values: Sequence[str]) -> tuple[str, ...]:
    if len(values) > MAX_PREFIXES:
        raise Invalid(field, f"at most {MAX_PREFIXES} prefixes")
    for value in values:
        if not _PREFIX.fullmatch(value):
            raise Invalid(field, f"{value!r}: a prefix is 1 to 20 digits (international form)")
    return tuple(sorted(set(values)))


def validated(rules: Rules) -> Rules:
    """The rules cleaned (prefixes sorted, duplicates dropped), or Invalid naming the field."""
    limit = rules.max_price_per_min_micros
    if limit is not None and not 0 <= limit <= BIGINT_MAX:
        raise Invalid("max_price_per_min_micros", "must be between 0 and 2^63-1")
    if not 0 <= rules.min_margin_micros <= BIGINT_MAX:
        raise Invalid("min_margin_micros", "must be between 0 and 2^63-1")
    if rules.negative_margin not in MARGIN_POLICIES:
        raise Invalid("negative_margin", f"one of {', '.join(MARGIN_POLICIES)}")
    for name in LIMITS:
        value = getattr(rules, name)
        top = INTEGER_MAX if name.startswith("max_attempts") else BIGINT_MAX
        if value is not None and not 0 <= value <= top:
            raise Invalid(name, f"must be between 0 and {top}")
    return dataclasses.replace(
        rules,
        allow_prefixes=_prefixes("allow_prefixes", rules.allow_prefixes),
        block_prefixes=_prefixes("block_prefixes", rules.block_prefixes),
    )


async def _view(conn: Connection, account: asyncpg.Record) -> RulesView:
    own = await conn.fetchrow("SELECT * FROM call_rules WHERE account_id = $1", account["id"])
    above = await conn.fetch(
        "SELECT r.*, a.name FROM call_rules r JOIN accounts a ON a.id = r.account_id "
        "WHERE r.account_id = ANY($1::bigint[]) "
        "ORDER BY array_position($1::bigint[], r.account_id) DESC",
        list(account["ancestors"]),
    )
    return RulesView(
        account_id=account["id"],
        rules=Rules() if own is None else _rules(own),
        set=own is not None,
        updated_at=None if own is None else own["updated_at"],
        updated_by="" if own is None else own["updated_by"],
        inherited=tuple((r["account_id"], r["name"], _rules(r)) for r in above),
    )


async def get_rules(ctx: ManagementContext, principal: Principal, account_id: int) -> RulesView:
    """An account's rules and those above it that apply too (any account it may see)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            account = await require_account(conn, principal, account_id)
            return await _view(conn, account)


def _check_may_set(principal: Principal, account: asyncpg.Record) -> None:
    if not may_manage(principal, account):
        raise Forbidden("an account's call rules are set by the account above it")


def _price_ceiling(view: RulesView) -> tuple[int, int] | None:
    """The lowest price limit over an account and the accounts above it: (limit, by)."""
    found = [(r.max_price_per_min_micros, a) for a, _, r in view.inherited]
    found.append((view.rules.max_price_per_min_micros, view.account_id))
    limits = [(limit, by) for limit, by in found if limit is not None]
    return min(limits) if limits else None


async def set_rules(
    ctx: ManagementContext, principal: Principal, account_id: int, rules: Rules
) -> RulesView:
    """Replace an account's rules; every gateway applies them within about a second."""
    clean = validated(rules)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            account = await require_account(conn, principal, account_id, for_update=True)
            _check_may_set(principal, account)
            if not principal.is_admin and clean.max_price_per_min_micros is not None:
                own = await require_account(conn, principal, principal.own_account())
                ceiling = _price_ceiling(await _view(conn, own))
                if ceiling is not None and clean.max_price_per_min_micros > ceiling[0]:
                    raise Invalid(
                        "max_price_per_min_micros",
                        f"above the limit {ceiling[0]} set on account {ceiling[1]}: "
                        "it could never apply",
                    )
            columns = ", ".join(COLUMNS)
            marks = ", ".join(f"${i}" for i in range(2, len(COLUMNS) + 2))
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)
            values = [getattr(clean, c) for c in COLUMNS]
            values[0], values[1] = list(clean.allow_prefixes), list(clean.block_prefixes)
            await conn.execute(
                f"INSERT INTO call_rules (account_id, {columns}, updated_by) "
                f"VALUES ($1, {marks}, ${len(COLUMNS) + 2}) ON CONFLICT (account_id) DO UPDATE "
                f"SET {updates}, updated_by = EXCLUDED.updated_by, updated_at = now()",
                account_id,
                *values,
                principal.login,
            )
            return await _view(conn, account)


async def clear_rules(ctx: ManagementContext, principal: Principal, account_id: int) -> None:
    """Remove an account's own rules (those above it still apply)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            account = await require_account(conn, principal, account_id, for_update=True)
            _check_may_set(principal, account)
            await conn.execute("DELETE FROM call_rules WHERE account_id = $1", account_id)
