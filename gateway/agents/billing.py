"""Billing reports: balances, refills, payments, the payment log, commissions.

Every report sees only what the caller may see (the operator: everything; an agent:
the accounts of its grants, and its own account; a customer: its own account).
Ledger reports cover ``[start, end)`` and one account when ``account_id`` is given;
``scope`` picks the caller's own account (``own``), the accounts below it
(``customers``) or both (``all``).

Kinds as reported: a commission credited inside a refill or transfer move is a
``commission`` entry on the parent's commission pocket; entries booked before postings
carried their own kind have the move's kind there, and are reported as ``commission``
too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Invalid
from gateway.agents.principal import Principal, require_account, visible
from gateway.balance.moves import MOVE_KINDS
from gateway.db import Connection
from gateway.db.pool import pg_errors

SCOPES = ("all", "own", "customers")
# The money moves the ledger reports show: every kind a move books (call debits are in
# the CDR reports).
REPORTED_KINDS = MOVE_KINDS

# $1 the caller's grants and $2 its own account (NULL for the operator), in every query.
_KIND = (
    "(CASE WHEN e.pocket = 'commission' AND e.kind IN ('refill', 'transfer') "
    "THEN 'commission' ELSE e.kind END)"
)
# A refill's money comes from outside: the ledger's counterparty of its main entry is
# only the agent paid commission in the same move, not a payer.
_COUNTERPARTY_SHOWN = (
    f"(NOT (e.kind = 'refill' AND e.pocket = 'main') AND ({visible('c', 1)} OR c.id = $2))"
)
_LEDGER_COLUMNS = {
    "id": "e.id",
    "created_at": "e.created_at",
    "account_id": "e.account_id",
    "account_name": "a.name",
    "kind": _KIND,
    "pocket": "e.pocket",
    "amount_micros": "e.amount_micros",
    "currency": "a.currency",
    # A move between currencies: this entry's amount in the other side's currency, and
    # the quote used (1 first currency of exchange_quote = exchange_rate of the second).
    "counter_amount_micros": "e.counter_amount_micros",
    "counter_currency": "e.counter_currency",
    "exchange_rate": "rtrim(rtrim(e.exchange_rate::text, '0'), '.')",
    "exchange_quote": "e.exchange_quote",
    "counterparty_account_id": f"CASE WHEN {_COUNTERPARTY_SHOWN} THEN c.id END",
    "counterparty_name": f"CASE WHEN {_COUNTERPARTY_SHOWN} THEN c.name END",
    "reference": "e.reference",
    "note": "e.note",
    "created_by": (
        f"CASE WHEN u.role = 'admin' OR {visible('ua', 1)} OR ua.id = $2 THEN u.login END"
    ),
}
_LEDGER_FROM = (
    "FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
    "LEFT JOIN accounts c ON c.id = e.counterparty_account_id "
    "LEFT JOIN users u ON u.id = e.created_by_user_id "
    "LEFT JOIN accounts ua ON ua.id = u.account_id"
)
LEDGER_SORTS = {
    "id": "e.id",
    "created_at": "e.created_at",
    "account_id": "e.account_id",
    "amount_micros": "e.amount_micros",
    "kind": _KIND,
}
LEDGER_HEADER = tuple(_LEDGER_COLUMNS)

_BALANCE_COLUMNS = {
    "account_id": "a.id",
    "name": "a.name",
    "kind": "a.kind",
    "parent_id": "a.parent_id",
    "billing_mode": "a.billing_mode",
    "status": "a.status",
    "currency": "a.currency",
    "balance_micros": "a.balance_micros",
    "commission_balance_micros": "a.commission_balance_micros",
    "credit_limit_micros": "a.credit_limit_micros",
    "commission_rate_bp": "a.commission_rate_bp",
    "period_in_micros": "coalesce(m.moved_in, 0)",
    "period_out_micros": "coalesce(m.moved_out, 0)",
}
BALANCE_SORTS = {
    "id": "a.id",
    "name": "a.name",
    "kind": "a.kind",
    "status": "a.status",
    "balance_micros": "a.balance_micros",
    "commission_balance_micros": "a.commission_balance_micros",
    "credit_limit_micros": "a.credit_limit_micros",
}
BALANCE_HEADER = tuple(_BALANCE_COLUMNS)


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """Filters and paging shared by every report; ``order_by`` comes from a whitelist."""

    start: datetime | None
    end: datetime | None
    account_id: int | None
    order_by: str
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class Report:
    items: list[dict[str, Any]]
    total: int
    sum_micros: int
    totals: dict[str, int] = field(default_factory=dict)


async def _fetch_one(conn: Connection, sql: str, *args: Any) -> asyncpg.Record:
    """A summary row (an aggregate without GROUP BY always has one)."""
    row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
    assert row is not None
    return row


class _Where:
    """Conditions with numbered parameters; $1 and $2 are the caller's (see above)."""

    def __init__(self, principal: Principal) -> None:
        self.args: list[Any] = [principal.grant_list, principal.account_id]
        self.parts: list[str] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str) -> None:
        self.parts.append(condition)

    def sql(self) -> str:
        return "WHERE " + " AND ".join(self.parts) if self.parts else ""


def _check_period(query: ReportQuery) -> None:
    if query.start is not None and query.end is not None and query.end < query.start:
        raise Invalid("to", "must not be before 'from'")


async def _check_account(ctx: ManagementContext, principal: Principal, account_id: int) -> None:
    """An account filter must name an account the caller may see (404 otherwise)."""
    if account_id == principal.account_id:
        return
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_account(conn, principal, account_id, include_removed=True)


async def _ledger_report(
    ctx: ManagementContext,
    principal: Principal,
    query: ReportQuery,
    scope: str,
    conditions: list[str],
    kind: str | None = None,
) -> Report:
    _check_period(query)
    if scope not in SCOPES:
        raise Invalid("scope", f"must be one of {', '.join(SCOPES)}")
    if scope == "own" and principal.account_id is None:
        raise Invalid("scope", "the operator has no account of its own; use all or customers")
    if query.account_id is not None:
        await _check_account(ctx, principal, query.account_id)
    where = _Where(principal)
    where.add(f"({visible('a', 1)} OR a.id = $2)")
    for condition in conditions:
        where.add(condition)
    if scope == "own":
        where.add("e.account_id = $2")
    elif scope == "customers":
        where.add("e.account_id IS DISTINCT FROM $2")
    if kind is not None:
        where.add(f"{_KIND} = {where.param(kind)}")
    if query.account_id is not None:
        where.add(f"e.account_id = {where.param(query.account_id)}")
    if query.start is not None:
        where.add(f"e.created_at >= {where.param(query.start)}")
    if query.end is not None:
        where.add(f"e.created_at < {where.param(query.end)}")
    columns = ", ".join(f"{sql} AS {name}" for name, sql in _LEDGER_COLUMNS.items())
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            summary = await _fetch_one(
                conn,
                "SELECT count(*) AS total, coalesce(sum(e.amount_micros), 0) AS sum_micros, "
                "coalesce(sum(e.amount_micros) FILTER (WHERE e.amount_micros > 0), 0) AS plus, "
                "coalesce(sum(e.amount_micros) FILTER (WHERE e.amount_micros < 0), 0) AS minus "
                f"{_LEDGER_FROM} {where.sql()}",
                *where.args,
            )
            rows = await conn.fetch(
                f"SELECT {columns} {_LEDGER_FROM} {where.sql()} {query.order_by} "
                f"LIMIT {where.param(query.limit)} OFFSET {where.param(query.offset)}",
                *where.args,
            )
    return Report(
        [dict(r) for r in rows],
        int(summary["total"]),
        int(summary["sum_micros"]),
        {"credit_micros": int(summary["plus"]), "debit_micros": -int(summary["minus"])},
    )


async def refills(
    ctx: ManagementContext, principal: Principal, query: ReportQuery, scope: str = "all"
) -> Report:
    """Credits of main balances by refill or transfer (own: the caller's account)."""
    return await _ledger_report(
        ctx,
        principal,
        query,
        scope,
        ["e.kind IN ('refill', 'transfer')", "e.pocket = 'main'", "e.amount_micros > 0"],
    )


async def payments(
    ctx: ManagementContext, principal: Principal, query: ReportQuery, scope: str = "all"
) -> Report:
    """Payments recorded on main balances (the credited side)."""
    return await _ledger_report(
        ctx,
        principal,
        query,
        scope,
        ["e.kind = 'payment'", "e.pocket = 'main'", "e.amount_micros > 0"],
    )


async def payment_log(
    ctx: ManagementContext,
    principal: Principal,
    query: ReportQuery,
    scope: str = "all",
    kind: str | None = None,
) -> Report:
    """Every money-move entry (not call debits), with counterparty and author."""
    if kind is not None and kind not in REPORTED_KINDS:
        raise Invalid("kind", f"must be one of {', '.join(REPORTED_KINDS)}")
    return await _ledger_report(ctx, principal, query, scope, ["e.kind <> 'call_debit'"], kind)


async def commissions(ctx: ManagementContext, principal: Principal, query: ReportQuery) -> Report:
    """Commission earned and withdrawn (the commission pocket): the remittance history.

    An agent sees its own by default and a visible sub-agent's with ``account_id``;
    the operator sees every agent's, or one with ``account_id``.
    """
    scope = "all" if principal.is_admin or query.account_id is not None else "own"
    report = await _ledger_report(ctx, principal, query, scope, ["e.pocket = 'commission'"])
    totals = {
        "earned_micros": report.totals["credit_micros"],
        "withdrawn_micros": report.totals["debit_micros"],
    }
    return Report(report.items, report.total, report.sum_micros, totals)


async def balances(
    ctx: ManagementContext,
    principal: Principal,
    query: ReportQuery,
    kind: str | None = None,
    status: str | None = None,
) -> Report:
    """Balances of the accounts the caller may see (and its own), with the main-balance
    credits and debits booked in the period (``period_in/out_micros``)."""
    _check_period(query)
    if kind is not None and kind not in ("customer", "agent"):
        raise Invalid("kind", "must be customer or agent")
    if status is not None and status not in ("active", "disabled", "removed"):
        raise Invalid("status", "must be active, disabled or removed")
    if query.account_id is not None:
        await _check_account(ctx, principal, query.account_id)
    where = _Where(principal)
    where.add(f"({visible('a', 1)} OR a.id = $2)")
    if status is None:
        where.add("a.status <> 'removed'")
    else:
        where.add(f"a.status = {where.param(status)}")
    if kind is not None:
        where.add(f"a.kind = {where.param(kind)}")
    if query.account_id is not None:
        where.add(f"a.id = {where.param(query.account_id)}")
    columns = ", ".join(f"{sql} AS {name}" for name, sql in _BALANCE_COLUMNS.items())
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            summary = await _fetch_one(
                conn,
                "SELECT count(*) AS total, coalesce(sum(a.balance_micros), 0) AS sum_micros, "
                "coalesce(sum(a.commission_balance_micros), 0) AS commission "
                f"FROM accounts a {where.sql()}",
                *where.args,
            )
            # The period's parameters come after the summary's: it does not use them.
            start = where.param(query.start)
            end = where.param(query.end)
            period = (
                "LEFT JOIN LATERAL (SELECT "
                "sum(e.amount_micros) FILTER (WHERE e.amount_micros > 0) AS moved_in, "
                "-sum(e.amount_micros) FILTER (WHERE e.amount_micros < 0) AS moved_out "
                "FROM ledger_entries e WHERE e.account_id = a.id AND e.pocket = 'main' "
                f"AND ({start}::timestamptz IS NULL OR e.created_at >= {start}) "
                f"AND ({end}::timestamptz IS NULL OR e.created_at < {end})) m ON true"
            )
            rows = await conn.fetch(
                f"SELECT {columns} FROM accounts a {period} {where.sql()} {query.order_by} "
                f"LIMIT {where.param(query.limit)} OFFSET {where.param(query.offset)}",
                *where.args,
            )
    return Report(
        [dict(r) for r in rows],
        int(summary["total"]),
        int(summary["sum_micros"]),
        {"commission_sum_micros": int(summary["commission"])},
    )
