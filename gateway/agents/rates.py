"""Rates of a rate group: browse and search, change one by one, CSV decks in and out.

Browsing needs only that the caller may see the group; every change needs what
``rate_groups.check_may_change`` asks (admin, or the owning agent in transfer
mode). A rate is checked by the same rules as the deck importer (``Rate`` and the
schema's limits), each failure named by its field. Decks use the
``gateway rates import/export`` CSV format (``gateway.rating.csvio``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal
from gateway.agents.rate_groups import check_may_change, check_text, require_group
from gateway.core.errors import Duplicate
from gateway.db import BIGINT_MAX, INTEGER_MAX, Connection
from gateway.db import rates as rates_db
from gateway.db.pool import pg_errors, pg_integrity
from gateway.rating import InvalidNumber, NumberPlan, Rate, RowError, normalize
from gateway.rating.periods import Periods, parse_periods

PREFIX_MAX_DIGITS = 32
DESTINATION_MAX = 200
DECK_ERRORS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class RateRecord:
    """One stored rate; open period ends are None."""

    id: int
    rate_group_id: int
    prefix: str
    destination: str
    price_per_min_micros: int
    connect_fee_micros: int
    first_increment_s: int
    next_increment_s: int
    min_duration_s: int
    grace_s: int
    effective_from: datetime | None
    effective_to: datetime | None
    periods: str  # time-of-day prices (gateway.rating.periods text), '' for none
    next_increment_ms: int | None  # sub-second increments; None: whole seconds


@dataclass(frozen=True, slots=True)
class RateFields:
    """The editable values of a rate (what a create sends, what a patch merges into)."""

    prefix: str
    destination: str
    price_per_min_micros: int
    connect_fee_micros: int = 0
    first_increment_s: int = 60
    next_increment_s: int = 60
    min_duration_s: int = 0
    grace_s: int = 0
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    periods: str = ""
    next_increment_ms: int | None = None


EDITABLE = tuple(f.name for f in fields(RateFields))


class DeckInvalid(Invalid):
    """A CSV deck with bad rows; ``rows`` holds each (line, reason). Nothing was imported."""

    def __init__(self, rows: list[RowError]) -> None:
        shown = "; ".join(str(e) for e in rows[:DECK_ERRORS_SHOWN])
        super().__init__("file", f"{len(rows)} bad row(s), nothing imported: {shown}")
        self.rows = rows


_RATE_COLUMNS = """
r.id, r.rate_group_id, r.prefix, r.destination, r.price_per_min_micros, r.connect_fee_micros,
r.first_increment_s, r.next_increment_s, r.min_duration_s, r.grace_s,
NULLIF(r.effective_from, '-infinity') AS effective_from,
NULLIF(r.effective_to, 'infinity') AS effective_to, r.periods, r.next_increment_ms
"""

RATE_SORT = {
    "id": "r.id",
    "prefix": 'r.prefix COLLATE "C"',
    "destination": "r.destination",
    "price_per_min_micros": "r.price_per_min_micros",
    "effective_from": "r.effective_from",
}


def _record(row: asyncpg.Record) -> RateRecord:
    return RateRecord(**{f.name: row[f.name] for f in fields(RateRecord)})


def _utc(field: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        # Naive instants mean UTC, as in rate decks.
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 has no UTC datetime
        raise Invalid(field, "out of range") from None


def check_rate(values: RateFields) -> RateFields:
    """``values`` with UTC instants, if the importer would accept them; ``Invalid`` else."""
    prefix = values.prefix
    if not (prefix.isascii() and prefix.isdigit() and 1 <= len(prefix) <= PREFIX_MAX_DIGITS):
        raise Invalid("prefix", f"must be 1 to {PREFIX_MAX_DIGITS} digits 0-9")
    check_text("destination", values.destination)
    if len(values.destination) > DESTINATION_MAX:
        raise Invalid("destination", f"must be at most {DESTINATION_MAX} characters")
    for name, low, high in (
        ("price_per_min_micros", 0, BIGINT_MAX),
        ("connect_fee_micros", 0, BIGINT_MAX),
        ("first_increment_s", 1, INTEGER_MAX),
        ("next_increment_s", 1, INTEGER_MAX),
        ("min_duration_s", 0, INTEGER_MAX),
        ("grace_s", 0, INTEGER_MAX),
    ):
        value = getattr(values, name)
        if type(value) is not int or not low <= value <= high:
            raise Invalid(name, f"must be a whole number from {low} to {high}")
    start = _utc("effective_from", values.effective_from)
    end = _utc("effective_to", values.effective_to)
    if start is not None and end is not None and end <= start:
        raise Invalid("effective_to", "must be after effective_from")
    step_ms = values.next_increment_ms
    if step_ms is not None:
        if type(step_ms) is not int or not 1 <= step_ms < 1000 or 1000 % step_ms:
            raise Invalid("next_increment_ms", "must divide 1000 ms (1, 10, 100, 250, 500...)")
        if values.next_increment_s != 1:
            raise Invalid("next_increment_s", "must be 1 with next_increment_ms")
    if type(values.periods) is not str:
        raise Invalid("periods", "must be a string like 'mon-fri 08:00-18:00 0.10'")
    try:
        items = parse_periods(values.periods)
        periods = Periods(items) if items else None
    except ValueError as exc:
        raise Invalid("periods", str(exc)) from None
    text = "" if periods is None else periods.text()
    if len(text) > rates_db.PERIODS_MAX_CHARS:
        raise Invalid("periods", f"at most {rates_db.PERIODS_MAX_CHARS} characters")
    checked = RateFields(
        **{
            **{n: getattr(values, n) for n in EDITABLE},
            "effective_from": start,
            "effective_to": end,
            "periods": text,  # canonical: what the deck export writes
        }
    )
    try:
        # the rating engine's own rules
        Rate(**{n: getattr(checked, n) for n in EDITABLE if n != "periods"}, periods=periods)
    except (TypeError, ValueError) as exc:
        raise Invalid("rate", str(exc)) from None
    return checked


def _rate_exists(values: RateFields) -> Conflict:
    start = "open" if values.effective_from is None else values.effective_from.isoformat()
    return Conflict(
        f"the group already has a rate for prefix {values.prefix} from {start}", code="RATE_EXISTS"
    )


def _in_force(alias: str) -> str:
    return (
        f"{alias}.effective_from <= now() "
        f"AND ({alias}.effective_to IS NULL OR {alias}.effective_to > now())"
    )


def _prefixes_of(number: str) -> list[str]:
    try:
        digits = normalize(number, NumberPlan())
    except InvalidNumber as exc:
        raise Invalid("number", str(exc)) from None
    return [digits[:n] for n in range(1, min(len(digits), PREFIX_MAX_DIGITS) + 1)]


async def list_rates(
    ctx: ManagementContext,
    principal: Principal,
    group_id: int,
    page: PageRequest,
    *,
    prefix: str | None = None,
    number: str | None = None,
    destination: str | None = None,
    in_force: bool | None = None,
) -> tuple[list[RateRecord], int]:
    """Rates of a visible group and their count, filtered and sorted.

    ``prefix``: rates whose prefix starts with it. ``number``: the one rate a call
    to that number would be rated with now (longest prefix in force; the latest
    start wins). ``destination``: case-insensitive substring. ``in_force``: only
    rates in force now (True) or not (False).
    """
    if prefix is not None and not (prefix.isascii() and prefix.isdigit()):
        raise Invalid("prefix", "must be digits 0-9")
    check_text("number", number)
    check_text("destination", destination)
    order = page.order_by(RATE_SORT, "r.id")
    conditions = ["r.rate_group_id = $1"]
    args: list[Any] = [group_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    live = _in_force("r")
    if prefix:
        conditions.append(f"starts_with(r.prefix, {arg(prefix)})")
    if destination:
        conditions.append(f"strpos(lower(r.destination), lower({arg(destination)})) > 0")
    if in_force is not None:
        conditions.append(live if in_force else f"NOT ({live})")
    if number is not None:
        # The rating engine's choice: the longest prefix with a rate in force wins.
        conditions.append(
            f"r.id = (SELECT b.id FROM rates b WHERE b.rate_group_id = $1 "
            f"AND b.prefix = ANY({arg(_prefixes_of(number))}::text[]) AND {_in_force('b')} "
            "ORDER BY length(b.prefix) DESC, b.effective_from DESC LIMIT 1)"
        )
    where = " AND ".join(conditions)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_group(conn, principal, group_id)
            total = await conn.fetchval(f"SELECT count(*) FROM rates r WHERE {where}", *args)
            rows = await conn.fetch(
                f"SELECT {_RATE_COLUMNS} FROM rates r WHERE {where} {order} "
                f"LIMIT {arg(page.limit)} OFFSET {arg(page.offset)}",
                *args,
            )
    return [_record(r) for r in rows], int(total)


async def _require_rate(
    conn: Connection, group_id: int, rate_id: int, *, for_update: bool = False
) -> RateRecord:
    row = await conn.fetchrow(
        f"SELECT {_RATE_COLUMNS} FROM rates r WHERE r.id = $1 AND r.rate_group_id = $2"
        + (" FOR UPDATE" if for_update else ""),
        rate_id,
        group_id,
    )
    if row is None:
        raise NotFound(f"rate {rate_id} not found in rate group {group_id}")
    return _record(row)


async def get_rate(
    ctx: ManagementContext, principal: Principal, group_id: int, rate_id: int
) -> RateRecord:
    """One rate of a visible group."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_group(conn, principal, group_id)
            return await _require_rate(conn, group_id, rate_id)


async def _changeable(conn: Connection, principal: Principal, group_id: int) -> None:
    """Lock the group (so changes queue behind a deck import) and check the caller's rights."""
    group = await require_group(conn, principal, group_id, for_update=True)
    await check_may_change(conn, principal, group)
    await conn.execute("UPDATE rate_groups SET updated_at = now() WHERE id = $1", group_id)


_WRITE_VALUES = rates_db.VALUE_COLUMNS
_NULLABLE = ("effective_from", "effective_to", "next_increment_ms")


async def create_rate(
    ctx: ManagementContext, principal: Principal, group_id: int, values: RateFields
) -> RateRecord:
    """Add a rate to a group the caller may change; ``RATE_EXISTS`` on a taken
    (prefix, effective_from)."""
    checked = check_rate(values)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _changeable(conn, principal, group_id)
            try:
                with pg_integrity():
                    rate_id = await conn.fetchval(
                        "INSERT INTO rates (rate_group_id, prefix, effective_from, "
                        f"{', '.join(_WRITE_VALUES)}) "
                        "VALUES ($1, $2, coalesce($3, '-infinity'::timestamptz), "
                        "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                        group_id,
                        checked.prefix,
                        checked.effective_from,
                        *(getattr(checked, n) for n in _WRITE_VALUES),
                    )
            except Duplicate:
                raise _rate_exists(checked) from None
            return await _require_rate(conn, group_id, rate_id)


async def update_rate(
    ctx: ManagementContext,
    principal: Principal,
    group_id: int,
    rate_id: int,
    changes: dict[str, Any],
) -> RateRecord:
    """Change some fields of a rate (``changes``: field name -> new value; a None
    effective_from/effective_to opens that end of the period)."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Invalid(unknown[0], "not a field of a rate")
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _changeable(conn, principal, group_id)
            current = await _require_rate(conn, group_id, rate_id, for_update=True)
            merged = {n: getattr(current, n) for n in EDITABLE} | changes
            for name, value in merged.items():
                if value is None and name not in _NULLABLE:
                    raise Invalid(name, "must not be null")
            checked = check_rate(RateFields(**merged))
            try:
                with pg_integrity():
                    await conn.execute(
                        "UPDATE rates SET prefix = $3, "
                        "effective_from = coalesce($4, '-infinity'::timestamptz), "
                        + ", ".join(f"{n} = ${i}" for i, n in enumerate(_WRITE_VALUES, 5))
                        + " WHERE id = $1 AND rate_group_id = $2",
                        rate_id,
                        group_id,
                        checked.prefix,
                        checked.effective_from,
                        *(getattr(checked, n) for n in _WRITE_VALUES),
                    )
            except Duplicate:
                raise _rate_exists(checked) from None
            return await _require_rate(conn, group_id, rate_id)


async def delete_rate(
    ctx: ManagementContext, principal: Principal, group_id: int, rate_id: int
) -> None:
    """Remove a rate from a group the caller may change."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            await _changeable(conn, principal, group_id)
            deleted = await conn.fetchval(
                "DELETE FROM rates WHERE id = $1 AND rate_group_id = $2 RETURNING id",
                rate_id,
                group_id,
            )
            if deleted is None:
                raise NotFound(f"rate {rate_id} not found in rate group {group_id}")


async def export_deck(ctx: ManagementContext, principal: Principal, group_id: int) -> str:
    """A visible group's rates as a CSV deck (``gateway rates export`` format)."""
    out = io.StringIO()
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await require_group(conn, principal, group_id)
            await rates_db.export_rates(conn, group_id, out)
    return out.getvalue()


async def import_deck(
    ctx: ManagementContext, principal: Principal, group_id: int, text: str, *, replace: bool
) -> rates_db.ImportResult:
    """Import a CSV deck into a group the caller may change, all or nothing.

    Without ``replace`` the deck's rates are added or updated by (prefix,
    effective_from); with it the group ends up holding exactly the deck.
    ``DeckInvalid`` lists the bad rows.
    """
    check_text("file", text)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            async with conn.transaction():
                group = await require_group(conn, principal, group_id)
                await check_may_change(conn, principal, group)
            try:
                return await rates_db.import_rates(
                    conn, group_id, io.StringIO(text), replace=replace
                )
            except rates_db.RateFileInvalid as exc:
                raise DeckInvalid(exc.errors) from None
            except rates_db.RateGroupNotFound:
                raise NotFound(f"rate group {group_id} not found") from None
