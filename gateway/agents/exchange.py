"""Exchange rates: the operator's quotes, the quote in force at a time, exact conversion.

A quote says 1 ``from_currency`` = ``rate`` ``to_currency`` from ``effective_from`` on.
It serves both directions of its pair (the other one at ``1/rate``, computed exactly),
and the quote in force for a pair at time T is the one with the latest
``effective_from <= T`` among the pair's quotes in either direction. Quotes are never
changed or deleted: a later quote replaces an earlier one, and every ledger entry of a
cross-currency move names the quote it used.

Rounding (micro-units, once per converted amount): money must never be created by a
conversion, so the side that pays is rounded **up** and the side that is paid is
rounded **down**:

- a refill or transfer credits its target exactly the amount asked (in the target's
  currency); a payer in another currency is debited that value rounded up (it never
  pays less than what it hands out);
- commission is paid by the house: converted into the agent's currency rounded down;
- a recurring charge priced in another currency is paid rounded up.

The difference is below one micro-unit and always stays on the house's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gateway.agents.cdr_reports import utc_instant
from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid
from gateway.agents.principal import Principal
from gateway.balance.moves import Counter
from gateway.core.errors import Duplicate
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity

NO_RATE = "NO_EXCHANGE_RATE"
RATE_PLACES = 12
MAX_RATE = Decimal(10**12)
SORTS = {
    "id": "id",
    "effective_from": "effective_from",
    "from_currency": "from_currency",
    "to_currency": "to_currency",
}
_COLUMNS = (
    "id, from_currency, to_currency, rate, effective_from, note, created_by_user_id, created_at"
)


@dataclass(frozen=True, slots=True)
class Quote:
    """One row of the table: 1 ``from_currency`` = ``rate`` ``to_currency``."""

    id: int
    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: datetime

    @property
    def pair(self) -> str:
        return f"{self.from_currency}/{self.to_currency}"

    def factor(self, from_currency: str, to_currency: str) -> Fraction:
        """Units of ``to_currency`` per unit of ``from_currency`` by this quote (exact)."""
        rate = Fraction(self.rate)
        if (from_currency, to_currency) == (self.from_currency, self.to_currency):
            return rate
        if (from_currency, to_currency) == (self.to_currency, self.from_currency):
            return 1 / rate
        raise ValueError(f"quote {self.pair} does not convert {from_currency}/{to_currency}")


class NoExchangeRate(Conflict):
    """A move between two currencies with no quote in force for the pair: nothing moves."""

    code = NO_RATE


def convert(amount_micros: int, factor: Fraction, *, up: bool) -> int:
    """``amount_micros * factor`` rounded to the micro-unit, away from zero when ``up``
    (a payer's side) and towards zero otherwise (a payee's side); sign preserved."""
    exact = abs(amount_micros) * factor
    num, den = exact.numerator, exact.denominator
    whole = -(-num // den) if up else num // den
    return whole if amount_micros >= 0 else -whole


async def quote_in_force(
    conn: Connection, from_currency: str, to_currency: str, at: datetime
) -> Quote | None:
    """The quote of the pair (either direction) with the latest ``effective_from <= at``."""
    row = await conn.fetchrow(
        "SELECT id, from_currency, to_currency, rate, effective_from FROM exchange_rates "
        "WHERE least(from_currency, to_currency) = least($1::text, $2::text) "
        "AND greatest(from_currency, to_currency) = greatest($1::text, $2::text) "
        "AND effective_from <= $3 ORDER BY effective_from DESC, (from_currency = $1) DESC "
        "LIMIT 1",
        from_currency,
        to_currency,
        at,
    )
    if row is None:
        return None
    return Quote(
        row["id"], row["from_currency"], row["to_currency"], row["rate"], row["effective_from"]
    )


@dataclass(frozen=True, slots=True)
class Converted:
    """An amount taken from ``from_currency`` into ``to_currency`` at ``quote``."""

    amount_micros: int
    quote: Quote

    def counter(self, amount_micros: int, currency: str) -> Counter:
        """The ledger's record of the other side: ``amount_micros`` in ``currency``."""
        quote = self.quote
        return Counter(amount_micros, currency, plain(quote.rate), quote.pair, quote.id)


async def converted(
    conn: Connection,
    amount_micros: int,
    from_currency: str,
    to_currency: str,
    at: datetime,
    *,
    up: bool,
) -> Converted:
    """``amount_micros`` of ``from_currency`` in ``to_currency`` at the quote in force at
    ``at``, rounded as ``convert`` does; ``NoExchangeRate`` when there is none."""
    quote = await quote_in_force(conn, from_currency, to_currency, at)
    if quote is None:
        raise NoExchangeRate(
            f"no exchange rate {from_currency}/{to_currency} in force at {at.isoformat()}"
        )
    factor = quote.factor(from_currency, to_currency)
    return Converted(convert(amount_micros, factor, up=up), quote)


# -- the operator's table ------------------------------------------------------------------


def plain(rate: Decimal) -> Decimal:
    """``rate`` without the column's trailing zeros (1.085000000000 -> 1.085)."""
    return Decimal(format(rate.normalize(), "f"))


def _view(row: Any) -> dict[str, Any]:
    return {**dict(row), "rate": plain(row["rate"])}


def check_rate(rate: Decimal) -> Decimal:
    """A positive rate of at most 12 decimal places (what the column holds exactly)."""
    if not rate.is_finite() or rate <= 0 or rate >= MAX_RATE:
        raise Invalid("rate", f"must be above 0 and below {MAX_RATE}")
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > RATE_PLACES:
        raise Invalid("rate", f"at most {RATE_PLACES} decimal places")
    return rate


async def add_rate(
    ctx: ManagementContext,
    principal: Principal,
    from_currency: str,
    to_currency: str,
    rate: Decimal,
    effective_from: datetime,
    note: str = "",
) -> dict[str, Any]:
    """Add a quote (operator only); one per pair direction and effective time."""
    if not principal.is_admin:
        raise Forbidden("only the operator maintains exchange rates")
    if from_currency == to_currency:
        raise Invalid("to_currency", "must differ from from_currency")
    if effective_from.tzinfo is None:
        raise Invalid("effective_from", "must carry a time zone")
    effective_from = utc_instant("effective_from", effective_from) or effective_from
    check_rate(rate)
    try:
        with pg_errors(), pg_integrity():
            row = await ctx.pool.fetchrow(
                "INSERT INTO exchange_rates (from_currency, to_currency, rate, effective_from, "
                f"note, created_by_user_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
                from_currency,
                to_currency,
                rate,
                effective_from,
                note,
                principal.user_id,
            )
    except Duplicate:
        raise Conflict(
            f"a {from_currency}/{to_currency} rate from {effective_from.isoformat()} exists",
            code="EXCHANGE_RATE_EXISTS",
        ) from None
    assert row is not None
    return _view(row)


async def list_rates(
    ctx: ManagementContext,
    principal: Principal,
    *,
    currency: str | None,
    at: datetime | None,
    order_by: str,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Quotes (operator and agents), optionally of one currency, or only those in force
    at ``at`` (per pair the latest ``effective_from <= at``; both directions if quoted
    at the same instant, where a lookup prefers the one quoted in its own direction)."""
    if principal.role == "customer":
        raise Forbidden("agents and the operator only")
    at = utc_instant("at", at)
    where = "WHERE ($1::text IS NULL OR $1 IN (from_currency, to_currency))"
    if at is not None:
        where += (
            " AND effective_from <= $2 AND NOT EXISTS (SELECT 1 FROM exchange_rates l "
            "WHERE least(l.from_currency, l.to_currency) = least(x.from_currency, x.to_currency) "
            "AND greatest(l.from_currency, l.to_currency) = "
            "greatest(x.from_currency, x.to_currency) AND l.effective_from <= $2 "
            "AND l.effective_from > x.effective_from)"
        )
    else:
        where += " AND $2::timestamptz IS NULL"
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM exchange_rates x {where}", currency, at
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM exchange_rates x {where} {order_by} LIMIT $3 OFFSET $4",
                currency,
                at,
                limit,
                offset,
            )
    return [_view(r) for r in rows], int(total)
