"""Invoices: an account's statement of a period, issued once, numbered without gaps.

The issuer of an account's invoices is its parent agent (an agent invoices its
customers and sub-agents) or, for a top-level account, the operator. Numbers run per
issuer and year of the period's start: ``{prefix}-{year}-{n:06d}`` with prefix
``invoices.operator_prefix`` (default ``OP``) for the operator and ``A{agent id}`` for
an agent, e.g. ``A17-2026-000042``.

Gapless and issued once, whoever tries: ``issue`` locks the issuer's counter row
(``invoice_counters``) first, then looks for an invoice of the account overlapping
the period, and only then bumps the counter and inserts the invoice, all in one
transaction. Every issue for an account takes the same counter row, so two gateways
(or a restart mid-round) queue on it and the second finds the first's invoice; a
failed issue rolls its number back with it. ``UNIQUE (account_id, period_start)``
stands behind the lock.

Who sees what (``gateway/agents/principal.py``): an account its own invoices, an
agent its subtree's, the operator all. Issuing on demand is for whoever manages the
account: its agents above and the operator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, may_manage, require_account, visible
from gateway.agents.statement import CallLine, MoveLine, Statement, build
from gateway.db import Connection
from gateway.db.pool import pg_errors

OPERATOR_ISSUER = 0  # invoice_counters.issuer_key of the operator
MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class InvoiceView:
    """An issued invoice's header and totals."""

    id: int
    number: str
    account_id: int
    account_name: str
    issuer_account_id: int | None
    issuer_name: str
    period_start: datetime
    period_end: datetime
    currency: str
    opening_balance_micros: int
    closing_balance_micros: int
    charges_micros: int
    tax_rate_bp: int
    tax_inclusive: bool
    net_micros: int
    tax_micros: int
    gross_micros: int
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class InvoiceDetail:
    """An invoice with its lines, as issued."""

    invoice: InvoiceView
    moves: tuple[MoveLine, ...]
    calls: tuple[CallLine, ...]
    calls_micros: int


@dataclass(frozen=True, slots=True)
class Issued:
    detail: InvoiceDetail
    created: bool  # False: the period was already issued; this is that invoice


# -- periods -----------------------------------------------------------------------------


def month_start(at: datetime) -> datetime:
    """Midnight UTC of the first day of ``at``'s month."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def previous_month(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar month (UTC) before the one ``now`` is in."""
    end = month_start(now)
    return month_start(end - timedelta(days=1)), end


def _check_year(name: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise Invalid(name, "must carry a time zone (UTC: a trailing Z)")
    if not 2000 <= value.astimezone(UTC).year <= 9998:
        raise Invalid(name, "must be in the years 2000 to 9998")


def check_period(start: datetime, end: datetime, now: datetime) -> None:
    """Refuse a period that is not a past, ordered, at most a year long one."""
    for name, value in (("period_start", start), ("period_end", end)):
        _check_year(name, value)
    if end <= start:
        raise Invalid("period_end", "must be after period_start")
    if end > now:
        raise Invalid("period_end", "must not be in the future: an invoice states a past period")
    if end - start > MAX_PERIOD:
        raise Invalid("period_end", "a period is at most 366 days long")


# -- numbering and issuing ----------------------------------------------------------------


def invoice_number(operator_prefix: str, issuer_account_id: int | None, year: int, seq: int) -> str:
    """The printed number: ``{prefix}-{year}-{seq:06d}``."""
    prefix = operator_prefix if issuer_account_id is None else f"A{issuer_account_id}"
    return f"{prefix}-{year}-{seq:06d}"


def _body(statement: Statement, issuer_name: str) -> str:
    def line(item: MoveLine | CallLine) -> dict[str, Any]:
        data = asdict(item)
        if isinstance(item, MoveLine):
            data["at"] = item.at.isoformat()
        return data

    return json.dumps(
        {
            "account_name": statement.account_name,
            "issuer_name": issuer_name,
            "moves": [line(m) for m in statement.moves],
            "calls": [line(c) for c in statement.calls],
            "calls_micros": statement.calls_micros,
        }
    )


def _detail(row: asyncpg.Record) -> InvoiceDetail:
    body = json.loads(row["body"]) if isinstance(row["body"], str) else row["body"]
    view = InvoiceView(
        id=row["id"],
        number=row["number"],
        account_id=row["account_id"],
        account_name=body["account_name"],
        issuer_account_id=row["issuer_account_id"],
        issuer_name=body["issuer_name"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        currency=row["currency"],
        opening_balance_micros=row["opening_balance_micros"],
        closing_balance_micros=row["closing_balance_micros"],
        charges_micros=row["charges_micros"],
        tax_rate_bp=row["tax_rate_bp"],
        tax_inclusive=row["tax_inclusive"],
        net_micros=row["net_micros"],
        tax_micros=row["tax_micros"],
        gross_micros=row["gross_micros"],
        issued_at=row["issued_at"],
    )
    moves = tuple(MoveLine(**{**m, "at": datetime.fromisoformat(m["at"])}) for m in body["moves"])
    calls = tuple(CallLine(**c) for c in body["calls"])
    return InvoiceDetail(view, moves, calls, body["calls_micros"])


_INSERT = """
INSERT INTO invoices (account_id, issuer_account_id, year, seq, number, period_start,
                      period_end, currency, opening_balance_micros, closing_balance_micros,
                      charges_micros, tax_rate_bp, tax_inclusive, net_micros, tax_micros,
                      gross_micros, body, issued_by_user_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18)
RETURNING *
"""


async def issue(
    conn: Connection,
    account: asyncpg.Record,
    period_start: datetime,
    period_end: datetime,
    *,
    operator_prefix: str,
    user_id: int | None = None,
) -> Issued:
    """Issue ``account``'s invoice for [period_start, period_end), or return the one that
    exists for exactly that period. Another invoice overlapping it: ``Conflict``.

    One transaction (see the module's docstring for why it is gapless and once only).
    """
    issuer: int | None = account["parent_id"]
    key = OPERATOR_ISSUER if issuer is None else issuer
    year = period_start.astimezone(UTC).year
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO invoice_counters (issuer_key, year) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            key,
            year,
        )
        last: int = await conn.fetchval(
            "SELECT last_number FROM invoice_counters WHERE issuer_key = $1 AND year = $2 "
            "FOR UPDATE",
            key,
            year,
        )
        # Read after the lock: in READ COMMITTED this statement sees an invoice that
        # another issuer committed while we waited.
        taken = await conn.fetchrow(
            "SELECT * FROM invoices WHERE account_id = $1 AND period_start < $3 "
            "AND period_end > $2 ORDER BY period_start LIMIT 1",
            account["id"],
            period_start,
            period_end,
        )
        if taken is not None:
            if taken["period_start"] == period_start and taken["period_end"] == period_end:
                return Issued(_detail(taken), created=False)
            raise Conflict(
                f"invoice {taken['number']} already covers "
                f"{taken['period_start']:%Y-%m-%d %H:%M} to {taken['period_end']:%Y-%m-%d %H:%M}",
                code="PERIOD_INVOICED",
            )
        issuer_name = "Operator"
        if issuer is not None:
            issuer_name = await conn.fetchval("SELECT name FROM accounts WHERE id = $1", issuer)
        statement = await build(conn, account, period_start, period_end)
        seq = last + 1
        await conn.execute(
            "UPDATE invoice_counters SET last_number = $3 WHERE issuer_key = $1 AND year = $2",
            key,
            year,
            seq,
        )
        tax = statement.tax
        row = await conn.fetchrow(
            _INSERT,
            account["id"],
            issuer,
            year,
            seq,
            invoice_number(operator_prefix, issuer, year, seq),
            period_start,
            period_end,
            statement.currency,
            statement.opening_micros,
            statement.closing_micros,
            statement.charges_micros,
            tax.rate_bp,
            tax.inclusive,
            tax.net_micros,
            tax.tax_micros,
            tax.gross_micros,
            _body(statement, issuer_name),
            user_id,
        )
    assert row is not None
    return Issued(_detail(row), created=True)


# -- the service ----------------------------------------------------------------------------


async def issue_on_demand(
    ctx: ManagementContext,
    principal: Principal,
    account_id: int,
    period_start: datetime | None,
    period_end: datetime | None,
) -> Issued:
    """Issue an invoice for an account the principal manages; the period defaults to the
    previous calendar month, its end to one month after a given start."""
    now = datetime.now(UTC)
    if period_start is None:
        if period_end is not None:
            raise Invalid("period_start", "give period_start with period_end")
        period_start, period_end = previous_month(now)
    elif period_end is None:
        _check_year("period_start", period_start)
        start = period_start.astimezone(UTC)
        month = start.month % 12 + 1
        period_end = start.replace(year=start.year + (start.month == 12), month=month)
    check_period(period_start, period_end, now)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            account = await require_account(conn, principal, account_id, include_removed=True)
            if not may_manage(principal, account):
                raise Forbidden("an account's invoices are issued by the agent above it")
            return await issue(
                conn,
                account,
                period_start,
                period_end,
                operator_prefix=ctx.config.invoices.operator_prefix,
                user_id=principal.user_id,
            )


async def get_invoice(
    ctx: ManagementContext, principal: Principal, invoice_id: int
) -> InvoiceDetail:
    """One invoice the principal may see, with its lines."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT i.* FROM invoices i JOIN accounts a ON a.id = i.account_id "
                f"WHERE i.id = $1 AND {visible('a', 2)}",
                invoice_id,
                principal.grant_list,
            )
    if row is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return _detail(row)


async def list_invoices(
    ctx: ManagementContext, principal: Principal, account_id: int | None, page: PageRequest
) -> tuple[list[InvoiceView], int]:
    """The invoices the principal may see, newest period first; ``account_id`` narrows
    them to one visible account (another: ``NotFound``)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            if account_id is not None:
                await require_account(conn, principal, account_id, include_removed=True)
            where = f"{visible('a', 1)} AND ($2::bigint IS NULL OR i.account_id = $2)"
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM invoices i JOIN accounts a ON a.id = i.account_id "
                f"WHERE {where}",
                principal.grant_list,
                account_id,
            )
            rows = await conn.fetch(
                f"SELECT i.* FROM invoices i JOIN accounts a ON a.id = i.account_id "
                f"WHERE {where} ORDER BY i.period_start DESC, i.id DESC LIMIT $3 OFFSET $4",
                principal.grant_list,
                account_id,
                page.limit,
                page.offset,
            )
    return [_detail(r).invoice for r in rows], total
