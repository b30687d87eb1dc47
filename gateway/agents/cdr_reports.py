"""The CDR report and the monthly traffic report.

A CDR is visible to whoever may see any account of its chain (customer first,
then every agent up): ``chain && grants``, which the GIN index on ``cdrs.chain``
serves; an admin sees them all. An agent also sees what the call cost at its own
level (``agent_cost_micros``, its entry in ``cost_per_level_micros``: zero for a
transfer-mode agent, which calls never charge); admins and customers do not
have one. Every query is bounded by a time window on ``setup_at``, which also
limits the monthly partitions PostgreSQL reads.

Both reports read ``report_pool`` (``database.read_url``, which may be a standby):
CDRs reach PostgreSQL through the committer a moment after the call anyway, so a
report lagging a standby's replay by as much shows nothing a reader could miss.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Invalid
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, require_account
from gateway.agents.rate_groups import check_text
from gateway.core import q850
from gateway.db.pool import pg_errors

DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN = timedelta(days=366)
Status = Literal["answered", "failed"]


@dataclass(frozen=True, slots=True)
class CdrFilter:
    """What the report is narrowed to; ``None`` means "any"."""

    start: datetime | None = None  # setup_at >= start (default: end - 7 days)
    end: datetime | None = None  # setup_at < end (default: now)
    account_id: int | None = None  # a customer, or an agent's whole subtree
    called_prefix: str | None = None
    caller: str | None = None  # caller starts with this
    status: Status | None = None


@dataclass(frozen=True, slots=True)
class Cdr:
    """One call as the report shows it."""

    id: int
    setup_at: datetime
    connect_at: datetime | None
    disconnect_at: datetime | None
    account_id: int
    account_name: str
    caller: str
    called: str
    called_dialled: str
    prefix: str | None  # the customer's matched rate prefix
    destination: str | None  # that rate's destination name, if still known
    status: str
    disconnect_cause: str  # shown: "16 normal call clearing", else the raw value
    disconnect_cause_code: int | None  # the Q.850 value, when the cause reads as one
    disconnect_cause_raw: str  # as the switch wrote it
    duration_s: int
    billed_s: int | None  # the customer's billed seconds
    price_per_min_micros: int | None  # the customer's rate
    cost_micros: int  # what the customer paid
    currency: str  # the customer's, of price and cost (an agent's own may differ)
    agent_cost_micros: int | None  # what the viewing agent paid (agents only)
    nas: str
    session_id: str
    overrun_s: int  # reported past the call's limit (unbilled when the switch caps)


CDR_COLUMNS = tuple(f.name for f in fields(Cdr))


@dataclass(frozen=True, slots=True)
class CdrTotals:
    calls: int
    answered: int
    duration_s_sum: int
    cost_micros_sum: int
    agent_cost_micros_sum: int | None


@dataclass(frozen=True, slots=True)
class CdrReport:
    items: list[Cdr]
    total: int
    totals: CdrTotals
    start: datetime
    end: datetime
    truncated: bool = False  # CSV only: more rows matched than report_rows_max


# Columns that may hold NULL; the others sort without "NULLS LAST", so that the
# (setup_at, id) index gives a page in either direction without sorting the window.
_NULLABLE_SORT = frozenset({"connect_at", "disconnect_at"})

CDR_SORT = {
    "id": "c.id",
    "setup_at": "c.setup_at",
    "connect_at": "c.connect_at",
    "disconnect_at": "c.disconnect_at",
    "duration_s": "c.duration_s",
    "cost_micros": "c.cost_micros",
    "called": 'c.called COLLATE "C"',
    "caller": 'c.caller COLLATE "C"',
    "status": "c.status",
    "account_id": "c.account_id",
}

# $1: the viewing agent's account (NULL for admins and customers).
_SELECT = """
SELECT c.id, c.setup_at, c.connect_at, c.disconnect_at, c.account_id, a.name AS account_name,
       c.caller, c.called, c.called_dialled, NULLIF(c.prefix_per_level[1], '') AS prefix,
       (SELECT r.destination FROM rates r
        WHERE r.rate_group_id = c.rate_group_per_level[1] AND r.prefix = c.prefix_per_level[1]
          AND r.effective_from <= c.setup_at
        ORDER BY r.effective_from DESC LIMIT 1) AS destination,
       c.status, c.disconnect_cause AS disconnect_cause_code, c.disconnect_cause_raw,
       c.duration_s, c.billed_s_per_level[1] AS billed_s,
       c.price_per_level_micros[1] AS price_per_min_micros, c.cost_micros, a.currency,
       c.cost_per_level_micros[array_position(c.chain, $1::bigint)] AS agent_cost_micros,
       c.nas, c.session_id, c.overrun_s
FROM cdrs c JOIN accounts a ON a.id = c.account_id
"""
_TOTALS = """
SELECT count(*) AS calls, count(*) FILTER (WHERE c.status = 'answered') AS answered,
       coalesce(sum(c.duration_s), 0)::bigint AS duration_s_sum,
       coalesce(sum(c.cost_micros), 0)::bigint AS cost_micros_sum,
       sum(c.cost_per_level_micros[array_position(c.chain, $1::bigint)])::bigint
           AS agent_cost_micros_sum
FROM cdrs c
"""


def viewer_account(principal: Principal) -> int | None:
    """The account whose level cost an agent sees; None for admins and customers."""
    return principal.account_id if principal.role == "agent" else None


def utc_instant(field: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC (naive means UTC); ``Invalid(field)`` when it has no UTC form."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, "out of range") from None


def _window(flt: CdrFilter) -> tuple[datetime, datetime]:
    end = utc_instant("to", flt.end)
    start = utc_instant("from", flt.start)
    if end is None:
        end = datetime.now(UTC)
        if start is not None and start + DEFAULT_SPAN < end:
            end = start + DEFAULT_SPAN
    if start is None:
        try:
            start = end - DEFAULT_SPAN
        except OverflowError:
            raise Invalid("to", "out of range") from None
    if start >= end:
        raise Invalid("from", "must be before 'to'")
    if end - start > MAX_SPAN:
        raise Invalid("to", f"the window may span at most {MAX_SPAN.days} days")
    return start, end


class _Where:
    """WHERE conditions and their parameters, built from fixed fragments only."""

    def __init__(self, viewer: int | None) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = [viewer]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def sql(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"


async def _conditions(
    ctx: ManagementContext, principal: Principal, flt: CdrFilter, start: datetime, end: datetime
) -> _Where:
    """The report's WHERE. An ``account_id`` filter is checked on the primary (``pool``):
    who may see what is decided on current data, only the CDRs are read from
    ``report_pool``."""
    where = _Where(viewer_account(principal))
    where.conditions.append(f"c.setup_at >= {where.arg(start)} AND c.setup_at < {where.arg(end)}")
    if principal.grants is not None:
        where.conditions.append(f"c.chain && {where.arg(principal.grant_list)}::bigint[]")
    if flt.account_id is not None:
        with pg_errors():
            async with ctx.pool.acquire() as conn:
                await require_account(conn, principal, flt.account_id, include_removed=True)
        where.conditions.append(f"c.chain @> ARRAY[{where.arg(flt.account_id)}::bigint]")
    if flt.called_prefix:
        where.conditions.append(f"starts_with(c.called, {where.arg(flt.called_prefix)})")
    if flt.caller:
        where.conditions.append(f"starts_with(c.caller, {where.arg(flt.caller)})")
    if flt.status is not None:
        where.conditions.append(f"c.status = {where.arg(flt.status)}")
    return where


def _check_filter(flt: CdrFilter) -> None:
    if flt.called_prefix is not None and not (
        flt.called_prefix.isascii() and flt.called_prefix.isdigit()
    ):
        raise Invalid("called_prefix", "must be digits 0-9")
    check_text("caller", flt.caller)
    if flt.status not in (None, "answered", "failed"):
        raise Invalid("status", "must be answered or failed")


def _order_by(page: PageRequest) -> str:
    if page.sort not in CDR_SORT:
        raise Invalid("sort", f"must be one of {', '.join(sorted(CDR_SORT))}")
    direction = "DESC" if page.descending else "ASC"
    nulls = " NULLS LAST" if page.sort in _NULLABLE_SORT else ""
    return f"ORDER BY {CDR_SORT[page.sort]} {direction}{nulls}, c.id {direction}"


def _cdr(row: asyncpg.Record) -> Cdr:
    values = {name: row[name] for name in CDR_COLUMNS if name != "disconnect_cause"}
    shown = q850.display(row["disconnect_cause_code"], row["disconnect_cause_raw"])
    return Cdr(disconnect_cause=shown, **values)


async def cdr_report(
    ctx: ManagementContext,
    principal: Principal,
    flt: CdrFilter,
    page: PageRequest,
    *,
    all_rows: bool = False,
) -> CdrReport:
    """The visible CDRs matching ``flt``: one page, or with ``all_rows`` (CSV) every row
    up to ``api.report_rows_max``; plus the totals over every matching row.

    ``account_id`` the caller may not see is NotFound. The window defaults to the
    last 7 days and may span at most 366.
    """
    _check_filter(flt)
    start, end = _window(flt)
    order = _order_by(page)
    limit_rows = ctx.config.api.report_rows_max if all_rows else page.limit
    offset = 0 if all_rows else page.offset
    where = await _conditions(ctx, principal, flt, start, end)
    with pg_errors():
        async with ctx.report_pool.acquire() as conn:
            totals = await conn.fetchrow(f"{_TOTALS} WHERE {where.sql()}", *where.args)
            rows = await conn.fetch(
                f"{_SELECT} WHERE {where.sql()} {order} "
                f"LIMIT {where.arg(limit_rows)} OFFSET {where.arg(offset)}",
                *where.args,
            )
    assert totals is not None
    agent_sum = totals["agent_cost_micros_sum"]
    if viewer_account(principal) is not None and agent_sum is None:
        agent_sum = 0
    calls = int(totals["calls"])
    return CdrReport(
        items=[_cdr(r) for r in rows],
        total=calls,
        totals=CdrTotals(
            calls=calls,
            answered=int(totals["answered"]),
            duration_s_sum=int(totals["duration_s_sum"]),
            cost_micros_sum=int(totals["cost_micros_sum"]),
            agent_cost_micros_sum=agent_sum,
        ),
        start=start,
        end=end,
        truncated=all_rows and calls > limit_rows,
    )


# -- monthly traffic -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthTraffic:
    """One month's calls. ``minutes`` is ``billed_s`` in whole minutes, rounded up."""

    calls: int = 0
    answered: int = 0
    duration_s: int = 0
    billed_s: int = 0
    minutes: int = 0
    revenue_micros: int = 0
    agent_cost_micros: int | None = None


@dataclass(frozen=True, slots=True)
class TrafficMonth:
    month: int
    this_year: MonthTraffic
    last_year: MonthTraffic


@dataclass(frozen=True, slots=True)
class Traffic:
    year: int
    account_id: int | None
    months: list[TrafficMonth]
    this_year: MonthTraffic  # totals of the year
    last_year: MonthTraffic


_TRAFFIC = """
SELECT extract(year FROM c.setup_at AT TIME ZONE 'UTC')::int AS y,
       extract(month FROM c.setup_at AT TIME ZONE 'UTC')::int AS m,
       count(*) AS calls, count(*) FILTER (WHERE c.status = 'answered') AS answered,
       coalesce(sum(c.duration_s), 0)::bigint AS duration_s,
       coalesce(sum(c.billed_s_per_level[1]), 0)::bigint AS billed_s,
       coalesce(sum(c.cost_micros), 0)::bigint AS revenue_micros,
       coalesce(sum(c.cost_per_level_micros[array_position(c.chain, $1::bigint)]), 0)::bigint
           AS agent_cost_micros
FROM cdrs c WHERE {where}
GROUP BY 1, 2
"""


def _month(row: asyncpg.Record | None, agent: bool) -> MonthTraffic:
    if row is None:
        return MonthTraffic(agent_cost_micros=0 if agent else None)
    billed = int(row["billed_s"])
    return MonthTraffic(
        calls=int(row["calls"]),
        answered=int(row["answered"]),
        duration_s=int(row["duration_s"]),
        billed_s=billed,
        minutes=-(-billed // 60),
        revenue_micros=int(row["revenue_micros"]),
        agent_cost_micros=int(row["agent_cost_micros"]) if agent else None,
    )


def _sum(months: list[MonthTraffic], agent: bool) -> MonthTraffic:
    billed = sum(m.billed_s for m in months)
    return MonthTraffic(
        calls=sum(m.calls for m in months),
        answered=sum(m.answered for m in months),
        duration_s=sum(m.duration_s for m in months),
        billed_s=billed,
        minutes=-(-billed // 60),
        revenue_micros=sum(m.revenue_micros for m in months),
        agent_cost_micros=sum(m.agent_cost_micros or 0 for m in months) if agent else None,
    )


async def traffic(
    ctx: ManagementContext, principal: Principal, year: int, account_id: int | None = None
) -> Traffic:
    """Calls, minutes and revenue per month of ``year`` and of the year before (UTC months),
    over the visible CDRs (of ``account_id``'s subtree when given)."""
    if not 2 <= year <= 9998:
        raise Invalid("year", "must be between 2 and 9998")
    start = datetime(year - 1, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    agent = viewer_account(principal) is not None
    where = await _conditions(ctx, principal, CdrFilter(account_id=account_id), start, end)
    with pg_errors():
        async with ctx.report_pool.acquire() as conn:
            rows = await conn.fetch(_TRAFFIC.format(where=where.sql()), *where.args)
    by_month = {(r["y"], r["m"]): r for r in rows}
    months = [
        TrafficMonth(
            month=m,
            this_year=_month(by_month.get((year, m)), agent),
            last_year=_month(by_month.get((year - 1, m)), agent),
        )
        for m in range(1, 13)
    ]
    return Traffic(
        year=year,
        account_id=account_id,
        months=months,
        this_year=_sum([m.this_year for m in months], agent),
        last_year=_sum([m.last_year for m in months], agent),
    )
