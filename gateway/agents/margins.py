"""The margin report of a wholesale reseller: for each rate group its accounts below
sell at, every prefix where the sell price is under the reseller's own cost (or under
cost plus a minimum margin), from the rates in force now.

A group in another currency than the reseller's is compared in the reseller's: its
prices converted at the exchange rate in force now, rounded down (a price that only
just covers the cost is shown as below it rather than hidden); with no rate in force
the report is refused (``NO_EXCHANGE_RATE``), since raw numbers would mislead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.agents import exchange
from gateway.agents.context import ManagementContext
from gateway.agents.errors import Invalid
from gateway.agents.principal import Principal, require_account
from gateway.db import Connection
from gateway.db.pool import pg_errors
from gateway.rating.margins import Margin, Table, compare

MAX_ROWS = 1000


@dataclass(frozen=True, slots=True)
class GroupMargins:
    rate_group_id: int
    rate_group_name: str
    accounts: int  # accounts directly below that sell at this group
    compared: int  # prefixes priced on both sides
    below: tuple[Margin, ...]  # the prefixes under cost (+ minimum), at most MAX_ROWS


@dataclass(frozen=True, slots=True)
class MarginReport:
    account_id: int
    cost_rate_group_id: int
    min_margin_micros: int
    groups: tuple[GroupMargins, ...]

    @property
    def below_cost(self) -> int:
        return sum(len(g.below) for g in self.groups)


async def _table(conn: Connection, group: int, now: datetime) -> Table:
    rows = await conn.fetch(
        "SELECT DISTINCT ON (prefix) prefix, price_per_min_micros, destination FROM rates "
        "WHERE rate_group_id = $1 AND effective_from <= $2 "
        "  AND (effective_to IS NULL OR effective_to > $2) "
        "ORDER BY prefix, effective_from DESC",
        group,
        now,
    )
    return {r["prefix"]: (r["price_per_min_micros"], r["destination"]) for r in rows}


async def _in_currency(
    conn: Connection, table: Table, from_currency: str, to_currency: str, now: datetime
) -> Table:
    """``table``'s prices in ``to_currency`` at the quote in force, rounded down."""
    if from_currency == to_currency or not table:
        return table
    quote = await exchange.quote_in_force(conn, from_currency, to_currency, now)
    if quote is None:
        raise exchange.NoExchangeRate(
            f"no exchange rate {from_currency}/{to_currency} in force to compare prices"
        )
    factor = quote.factor(from_currency, to_currency)
    return {p: (exchange.convert(v, factor, up=False), d) for p, (v, d) in table.items()}


async def report(
    ctx: ManagementContext, principal: Principal, account_id: int, min_margin_micros: int = 0
) -> MarginReport:
    """The report of a wholesale agent the caller may see (itself included)."""
    now = datetime.now(UTC)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            agent = await require_account(conn, principal, account_id, kind="agent")
            if agent["billing_mode"] != "wholesale" or agent["rate_group_id"] is None:
                raise Invalid(
                    "account_id", "only a wholesale agent with a rate group pays for calls"
                )
            cost = await _table(conn, agent["rate_group_id"], now)
            sellers = await conn.fetch(
                "SELECT a.rate_group_id, g.name, g.currency, count(*) AS n FROM accounts a "
                "JOIN rate_groups g ON g.id = a.rate_group_id "
                "WHERE a.parent_id = $1 AND a.status <> 'removed' "
                "  AND (a.kind = 'customer' OR a.billing_mode = 'wholesale') "
                "GROUP BY a.rate_group_id, g.name, g.currency ORDER BY a.rate_group_id",
                account_id,
            )
            groups = []
            for s in sellers:
                sell = await _in_currency(
                    conn,
                    await _table(conn, s["rate_group_id"], now),
                    s["currency"],
                    agent["currency"],
                    now,
                )
                compared = compare(sell, cost)
                below = [m for m in compared if m.margin_micros < min_margin_micros]
                groups.append(
                    GroupMargins(
                        s["rate_group_id"],
                        s["name"],
                        s["n"],
                        len(compared),
                        tuple(below[:MAX_ROWS]),
                    )
                )
    return MarginReport(account_id, agent["rate_group_id"], min_margin_micros, tuple(groups))
