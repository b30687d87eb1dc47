"""Rate groups and rates in PostgreSQL: load them for rating, import and export CSV decks.

Loading copies rows out as CSV and builds ``Rate`` objects in a worker thread, so
a million-row deck does not stall the event loop. An import validates every row
with the rating engine's CSV reader while the good rows stream to PostgreSQL
through COPY and are merged batch by batch inside one transaction, which any bad
row rolls back. Every change to ``rates`` or ``rate_groups`` is announced on the
``gateway_rates`` channel by triggers (migration 0003); ``gateway.calls.ratecache``
listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from gateway.core.errors import GatewayError
from gateway.db import BIGINT_MAX, INTEGER_MAX, Connection
from gateway.rating import Rate, RateTable, RatingIndex, RowError, iter_rows, write_rates
from gateway.rating.periods import Periods, parse_periods, zone_info
from gateway.rating.rounding import EXACT, Rounding

log = logging.getLogger(__name__)

CHANNEL = "gateway_rates"
"""NOTIFY channel: payload is comma-separated rate group ids, or ``*`` (all)."""

IMPORT_BATCH_ROWS = 20_000  # rows parsed per worker-thread step and sent per COPY
# Statements over the whole file (repeat check, removal of absent rates) outlast
# the pool's per-command timeout on large decks: ~1.5 s each at 1M rows.
WHOLE_FILE_TIMEOUT_S = 600.0

_PREFIX_MAX_DIGITS = 32  # rates.prefix CHECK
PERIODS_MAX_CHARS = 1000  # rates.periods CHECK


class RateGroupNotFound(GatewayError):
    """No rate group has the given id or name."""


class AmbiguousRateGroup(GatewayError):
    """Several rate groups (of different owners) share the given name."""


class RateFileInvalid(GatewayError):
    """A rate file had bad rows; nothing was imported. ``errors`` holds every one."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s) in rate file; nothing imported")
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import changed in one rate group."""

    group_id: int
    rows: int  # rates in the file
    inserted: int
    updated: int
    unchanged: int
    deleted: int  # only with replace=True: rates of the group absent from the file
    elapsed_s: float


# -- reading --------------------------------------------------------------------------
#
# Rows leave PostgreSQL as CSV through COPY (the server formats them on its own core)
# and become Rates in a worker thread: measured on 1M rows, 0.7 s + 3 s, where
# asyncpg records took 2.1 s to fetch + 3.6 s to convert. Instants travel as epoch
# microseconds, clamped to what a Python datetime holds ('infinity' becomes its
# latest value, which asyncpg writes back as 'infinity'); the open start
# '-infinity' (NOT NULL so it can take part in the unique key) becomes None.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
_MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


def _epoch_us(column: str) -> str:
    clamped = f"least(greatest({column}, '0001-01-01T00:00:00Z'), '9999-12-31T23:59:59.999999Z')"
    return (
        f"CASE WHEN {column} IS NULL OR {column} = '-infinity' THEN NULL "
        f"ELSE (extract(epoch FROM {clamped}) * 1000000)::bigint END"
    )


_RATE_COLUMNS = f"""prefix, destination, price_per_min_micros, connect_fee_micros,
    first_increment_s, next_increment_s, min_duration_s, grace_s,
    {_epoch_us("effective_from")}, {_epoch_us("effective_to")}, periods, next_increment_ms"""
_COPY_TABLES = f"""
SELECT rate_group_id, {_RATE_COLUMNS} FROM rates
WHERE $1::bigint[] IS NULL OR rate_group_id = ANY($1::bigint[])
"""
_COPY_GROUP = f"""
SELECT {_RATE_COLUMNS} FROM rates WHERE rate_group_id = $1 ORDER BY prefix, effective_from
"""


def _instant(text: str) -> datetime | None:
    if not text:
        return None
    return _EPOCH + timedelta(microseconds=int(text))


class _PeriodsReader:
    """Periods text -> ``Periods`` in one group's zone; a deck repeats a few texts."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self._seen: dict[str, Periods | None] = {"": None}

    def __call__(self, text: str) -> Periods | None:
        found = self._seen.get(text, False)
        if found is False:
            try:
                found = Periods(parse_periods(text), self.zone)
            except ValueError as exc:  # written by SQL past the importer's checks
                log.warning("rates.bad_periods", extra={"periods": text, "error": str(exc)})
                found = None
            self._seen[text] = found
        return found  # type: ignore[return-value]


_UTC_PERIODS = _PeriodsReader("UTC")


def _parse_rate(cells: Sequence[str], periods: _PeriodsReader = _UTC_PERIODS) -> Rate:
    """One CSV row of ``_RATE_COLUMNS`` as a Rate (the schema already checked it)."""
    prefix, destination, price, fee, first, step, minimum, grace, start, end, timed, ms = cells
    return Rate(
        prefix,
        destination,
        int(price),
        int(fee),
        int(first),
        int(step),
        int(minimum),
        int(grace),
        _instant(start),
        _instant(end),
        periods(timed) if timed else None,
        int(ms) if ms else None,
    )


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    # Decoded a few KB at a time: one 40 MB decode would hold the GIL, and so stall
    # the event loop, for tens of milliseconds. newline="": destinations may hold
    # quoted line breaks.
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    return csv.reader(text)


async def _copy_out(conn: Connection, query: str, *args: object) -> bytes:
    buffer = io.BytesIO()
    await conn.copy_from_query(
        query, *args, output=buffer, format="csv", timeout=WHOLE_FILE_TIMEOUT_S
    )
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class GroupTerms:
    """What a rate group sets for all its rates: the zone of their periods and the
    rounding of a call's cost."""

    time_zone: str = "UTC"
    rounding: Rounding = EXACT


def _terms(row: Any) -> GroupTerms:
    zone = str(row["time_zone"])
    try:
        zone_info(zone)
    except ValueError:
        # Set by SQL past the API's check: rating goes on, in UTC, and says so.
        log.warning("rates.unknown_time_zone", extra={"rate_group": row["id"], "zone": zone})
        zone = "UTC"
    return GroupTerms(zone, Rounding(int(row["cost_decimals"]), str(row["cost_rounding"])))


def _build_tables(existing: dict[int, GroupTerms], data: bytes) -> dict[int, RateTable]:
    grouped: dict[int, list[Rate]] = {group_id: [] for group_id in existing}
    readers = {group_id: _PeriodsReader(t.time_zone) for group_id, t in existing.items()}
    for cells in _csv_rows(data):
        group_id = int(cells[0])
        grouped[group_id].append(_parse_rate(cells[1:], readers[group_id]))
    return {
        group_id: RateTable(rates, existing[group_id].rounding)
        for group_id, rates in grouped.items()
    }


@contextlib.asynccontextmanager
async def _snapshot(conn: Connection) -> AsyncIterator[None]:
    """One read-only snapshot for several statements (a savepoint inside a transaction)."""
    if conn.is_in_transaction():
        async with conn.transaction():
            yield
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


async def load_tables(conn: Connection, group_ids: Collection[int] | None) -> dict[int, RateTable]:
    """Load the rate tables of ``group_ids`` (every group when None) from one snapshot.

    Groups that do not exist are absent from the result; a group without rates
    maps to an empty table. The tables are built in a worker thread, so the event
    loop is never blocked for longer than a thread switch.
    """
    ids = None if group_ids is None else sorted(set(group_ids))
    async with _snapshot(conn):
        existing = await conn.fetch(
            "SELECT id, time_zone, cost_decimals, cost_rounding FROM rate_groups "
            "WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])",
            ids,
        )
        data = await _copy_out(conn, _COPY_TABLES, ids)
    terms = {int(r["id"]): _terms(r) for r in existing}
    return await asyncio.to_thread(_build_tables, terms, data)


async def load_index(conn: Connection) -> RatingIndex:
    """Load every rate group into a new ``RatingIndex`` (see ``load_tables``)."""
    return RatingIndex(await load_tables(conn, None))


async def load_group(conn: Connection, group_id: int) -> RateTable:
    """Load one rate group's table; ``RateGroupNotFound`` when the group does not exist."""
    tables = await load_tables(conn, (group_id,))
    if group_id not in tables:
        raise RateGroupNotFound(f"rate group {group_id}: no such id")
    return tables[group_id]


async def resolve_group(conn: Connection, name_or_id: str | int) -> int:
    """Return the id of the rate group given by id or by name.

    A string of digits is tried as an id first, then as a name. Raises
    ``RateGroupNotFound`` naming what was asked for, or ``AmbiguousRateGroup`` when
    groups of different owners share the name.
    """
    text = str(name_or_id).strip()
    if text.isascii() and text.isdigit() and int(text) <= BIGINT_MAX:
        found = await conn.fetchval("SELECT id FROM rate_groups WHERE id = $1", int(text))
        if found is not None:
            return int(found)
    rows = await conn.fetch("SELECT id FROM rate_groups WHERE name = $1 ORDER BY id", text)
    if len(rows) == 1:
        return int(rows[0]["id"])
    if not rows:
        raise RateGroupNotFound(f"rate group {text!r}: no group has this name or id")
    ids = ", ".join(str(r["id"]) for r in rows)
    raise AmbiguousRateGroup(f"rate group {text!r}: several groups have this name (ids {ids})")


def _write_csv(data: bytes, out: TextIO) -> int:
    written = [0]

    def counted() -> Iterator[Rate]:
        for cells in _csv_rows(data):
            written[0] += 1
            yield _parse_rate(cells)

    write_rates(counted(), out)
    return written[0]


async def export_rates(conn: Connection, group_id: int, out: TextIO) -> int:
    """Write the group's rates to ``out`` in the ``write_rates`` CSV format; return the count.

    Rows are ordered by prefix, then start; the file imports back into equal rates.
    Formatting and writing run in a worker thread. ``RateGroupNotFound`` when the
    group does not exist.
    """
    async with _snapshot(conn):
        if await conn.fetchval("SELECT 1 FROM rate_groups WHERE id = $1", group_id) is None:
            raise RateGroupNotFound(f"rate group {group_id}: no such id")
        data = await _copy_out(conn, _COPY_GROUP, group_id)
    return await asyncio.to_thread(_write_csv, data, out)


# -- importing ------------------------------------------------------------------------
#
# One transaction: the file streams through a worker thread (parse and validate a
# batch) while the event loop sends the previous batch to PostgreSQL, which merges
# it into `rates` on its own core. Every row also lands in `rates_import`, where
# PostgreSQL finds repeated (prefix, effective_from) pairs and, for a replace, the
# rates the file no longer has. Any bad row stops the merging and rolls it all back.

_STAGING_COLUMNS = """
    line                    integer NOT NULL,
    prefix                  text NOT NULL,
    destination             text NOT NULL,
    price_per_min_micros    bigint NOT NULL,
    connect_fee_micros      bigint NOT NULL,
    first_increment_s       integer NOT NULL,
    next_increment_s        integer NOT NULL,
    min_duration_s          integer NOT NULL,
    grace_s                 integer NOT NULL,
    effective_from          timestamptz,
    effective_to            timestamptz,
    periods                 text NOT NULL,
    next_increment_ms       integer
"""
_CREATE_STAGING = (
    f"CREATE TEMP TABLE rates_import ({_STAGING_COLUMNS}) ON COMMIT DROP;"
    f"CREATE TEMP TABLE rates_batch ({_STAGING_COLUMNS}) ON COMMIT DROP"
)

# Same key as the unique constraint on rates: an open start is '-infinity' there.
_DUPLICATES = """
WITH keyed AS (
    SELECT line, prefix, coalesce(effective_from, '-infinity') AS start FROM rates_import
), repeated AS (
    SELECT prefix, start, min(line) AS first_line FROM keyed
    GROUP BY prefix, start HAVING count(*) > 1
)
SELECT k.line, k.prefix, NULLIF(k.start, '-infinity') AS start, r.first_line
FROM keyed k JOIN repeated r USING (prefix, start)
WHERE k.line <> r.first_line
"""

# A rate's columns besides its key (group, prefix, start): what an import or edit writes.
VALUE_COLUMNS = (
    "destination",
    "price_per_min_micros",
    "connect_fee_micros",
    "first_increment_s",
    "next_increment_s",
    "min_duration_s",
    "grace_s",
    "effective_to",
    "periods",
    "next_increment_ms",
)

# A rate equal to the stored one is not rewritten (no new row version, no dead
# tuple), so re-importing a weekly deck touches only what changed. xmax = 0 tells
# a fresh insert from an update.
_UPSERT_BATCH = f"""
WITH written AS (
    INSERT INTO rates (rate_group_id, prefix, effective_from, {", ".join(VALUE_COLUMNS)})
    SELECT $1, prefix, coalesce(effective_from, '-infinity'), {", ".join(VALUE_COLUMNS)}
    FROM rates_batch
    ON CONFLICT (rate_group_id, prefix, effective_from) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in VALUE_COLUMNS)}
    WHERE ({", ".join(f"rates.{c}" for c in VALUE_COLUMNS)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in VALUE_COLUMNS)})
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM written
"""

_DELETE_ABSENT = """
DELETE FROM rates r
WHERE r.rate_group_id = $1
  AND NOT EXISTS (
    SELECT 1 FROM rates_import i
    WHERE i.prefix = r.prefix AND coalesce(i.effective_from, '-infinity') = r.effective_from
  )
"""

# asyncpg sends the earliest datetime as '-infinity': the same key as an open start.
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _database_problem(rate: Rate) -> str | None:
    """What the schema would refuse in a row the CSV reader accepted."""
    problems: list[str] = []
    if len(rate.prefix) > _PREFIX_MAX_DIGITS:
        problems.append(f"prefix: at most {_PREFIX_MAX_DIGITS} digits, got {len(rate.prefix)}")
    if rate.periods is not None and len(rate.periods.text()) > PERIODS_MAX_CHARS:
        problems.append(f"periods: at most {PERIODS_MAX_CHARS} characters")
    if "\x00" in rate.destination:
        problems.append("destination: contains a NUL character")
    if rate.price_per_min_micros > BIGINT_MAX:
        problems.append("price_per_min: too large")
    if rate.connect_fee_micros > BIGINT_MAX:
        problems.append("connect_fee: too large")
    for column, value in (
        ("first_increment_s", rate.first_increment_s),
        ("next_increment_s", rate.next_increment_s),
        ("min_duration_s", rate.min_duration_s),
        ("grace_s", rate.grace_s),
    ):
        if value > INTEGER_MAX:
            problems.append(f"{column}: must be <= {INTEGER_MAX}")
    return "; ".join(problems) if problems else None


class _Parser:
    """Validates a rate file one batch at a time (each call runs in a worker thread)."""

    def __init__(self, lines: Iterable[str]) -> None:
        # Repeats across the file are found by PostgreSQL in rates_import: a Python
        # set of a million keys would cost ~200 MB and a second.
        self._rows = iter_rows(lines, detect_duplicates=False)
        self.errors: list[RowError] = []
        self.repeat_in_batch = False  # a batch with a repeated key cannot be upserted
        self.seen = 0
        self.done = False

    def next_batch(self) -> list[tuple[Any, ...]]:
        batch: list[tuple[Any, ...]] = []
        keys: set[tuple[str, datetime | None]] = set()
        for line, item in self._rows:
            self.seen += 1
            if isinstance(item, RowError):
                self.errors.append(item)
                continue
            problem = _database_problem(item)
            if problem is not None:
                self.errors.append(RowError(line, problem))
                continue
            start = None if item.effective_from == _EARLIEST else item.effective_from
            key = (item.prefix, start)
            if key in keys:
                self.repeat_in_batch = True
            keys.add(key)
            batch.append(
                (
                    line,
                    item.prefix,
                    item.destination,
                    item.price_per_min_micros,
                    item.connect_fee_micros,
                    item.first_increment_s,
                    item.next_increment_s,
                    item.min_duration_s,
                    item.grace_s,
                    start,
                    item.effective_to,
                    "" if item.periods is None else item.periods.text(),
                    item.next_increment_ms,
                )
            )
            if len(batch) >= IMPORT_BATCH_ROWS:
                return batch
        self.done = True
        return batch


@dataclass(slots=True)
class _Merge:
    group_id: int
    rows: int = 0
    inserted: int = 0
    updated: int = 0

    async def add(self, conn: Connection, batch: list[tuple[Any, ...]], merging: bool) -> None:
        self.rows += len(batch)
        if not merging:
            # The file is already refused; keep collecting rows for the repeat report.
            await conn.copy_records_to_table("rates_import", records=batch)
            return
        await conn.execute("TRUNCATE rates_batch")
        await conn.copy_records_to_table("rates_batch", records=batch)
        await conn.execute("INSERT INTO rates_import SELECT * FROM rates_batch")
        counts = await conn.fetchrow(_UPSERT_BATCH, self.group_id)
        assert counts is not None
        self.inserted += int(counts["inserted"])
        self.updated += int(counts["updated"])


async def _merge_file(
    conn: Connection,
    merge: _Merge,
    lines: Iterable[str],
    progress: Callable[[int], None] | None,
) -> list[RowError]:
    """Stream the file into ``rates`` (inside the caller's transaction); return row errors."""
    await conn.execute(_CREATE_STAGING)
    parser = _Parser(lines)
    parsing = asyncio.ensure_future(asyncio.to_thread(parser.next_batch))
    try:
        while True:
            batch = await parsing
            done = parser.done
            merging = not parser.errors and not parser.repeat_in_batch
            if not done:
                parsing = asyncio.ensure_future(asyncio.to_thread(parser.next_batch))
            if batch:
                await merge.add(conn, batch, merging)
            if progress is not None:
                progress(parser.seen)
            if done:
                break
    finally:
        # At most one batch of parsing is left after a failure: let it end rather than
        # leak a busy thread (and collect its outcome, so none goes unretrieved).
        with contextlib.suppress(BaseException):
            await asyncio.shield(parsing)
    errors = parser.errors
    for row in await conn.fetch(_DUPLICATES, timeout=WHOLE_FILE_TIMEOUT_S):
        start = "open" if row["start"] is None else row["start"].isoformat()
        errors.append(
            RowError(
                row["line"],
                f"duplicate rate for prefix {row['prefix']} with effective_from {start} "
                f"(first defined on line {row['first_line']})",
            )
        )
    errors.sort(key=lambda e: e.line)
    return errors


async def import_rates(
    conn: Connection,
    group_id: int,
    lines: Iterable[str],
    *,
    replace: bool,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a CSV rate deck into one rate group, all or nothing.

    Every row is validated (``gateway.rating.csvio`` rules, repeated
    ``(prefix, effective_from)`` pairs, the schema's limits); if any row is bad,
    ``RateFileInvalid`` carries every error with its line number and the database
    is left as it was. Otherwise, in one transaction: with ``replace`` the group
    ends up holding exactly the file's rates; without it the file's rates are
    upserted by ``(prefix, effective_from)`` and the group's other rates are kept.
    Rates equal to the stored ones are not rewritten. ``progress`` is called with
    the number of rows read so far, after each batch. Imports into the same group
    run one at a time.
    """
    started = time.perf_counter()
    merge = _Merge(group_id)
    deleted = 0
    async with conn.transaction():
        # Locks the group's row: a second import into it waits for this one.
        locked = await conn.fetchval(
            "UPDATE rate_groups SET updated_at = now() WHERE id = $1 RETURNING id", group_id
        )
        if locked is None:
            raise RateGroupNotFound(f"rate group {group_id}: no such id")
        errors = await _merge_file(conn, merge, lines, progress)
        if errors:
            raise RateFileInvalid(errors)
        if replace:
            await conn.execute("ANALYZE rates_import", timeout=WHOLE_FILE_TIMEOUT_S)
            status = await conn.execute(_DELETE_ABSENT, group_id, timeout=WHOLE_FILE_TIMEOUT_S)
            deleted = int(status.split()[-1])
    return ImportResult(
        group_id=group_id,
        rows=merge.rows,
        inserted=merge.inserted,
        updated=merge.updated,
        unchanged=merge.rows - merge.inserted - merge.updated,
        deleted=deleted,
        elapsed_s=time.perf_counter() - started,
    )
