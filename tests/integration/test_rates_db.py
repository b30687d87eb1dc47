"""Rates in PostgreSQL: import, export, loading, notifications and the live cache."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from gateway.calls.ratecache import RateCache
from gateway.db import rates
from gateway.db.group_cache import RELOAD_ALL
from gateway.rating import Rate, read_rates

HEADER = (
    "prefix,destination,price_per_min,connect_fee,first_increment_s,next_increment_s,"
    "min_duration_s,grace_s,effective_from,effective_to\n"
)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


async def _group(conn: asyncpg.Connection, name: str | None = None) -> int:
    value: int = await conn.fetchval(
        "INSERT INTO rate_groups (name) VALUES ($1) RETURNING id",
        name or f"g-{secrets.token_hex(4)}",
    )
    return value


async def _stored(conn: asyncpg.Connection, group_id: int) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT prefix, destination, price_per_min_micros, effective_from FROM rates "
        "WHERE rate_group_id = $1 ORDER BY prefix, effective_from",
        group_id,
    )
    return [tuple(r) for r in rows]


def _lines(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


@pytest.fixture
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with db_pool.acquire() as connection:
        yield connection


# -- import -----------------------------------------------------------------------------


async def test_import_good_file(conn: asyncpg.Connection) -> None:
    group = await _group(conn)
    seen: list[int] = []
    result = await rates.import_rates(
        conn,
        group,
        _lines(
            HEADER + "44,United Kingdom,0.012,0,60,60,0,0,,\n"
            '447,"UK, mobile",0.045,0.01,30,6,0,0,,\n'
            "1,USA,0.008,,,,,,2025-01-01,2026-01-01T00:00:00+00:00\n"
        ),
        replace=False,
        progress=seen.append,
    )
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (3, 3, 0, 0)
    assert seen and seen[-1] == 3
    table = await rates.load_group(conn, group)
    assert len(table) == 3
    mobile = table.lookup("447700900123", NOW)
    assert mobile == Rate("447", "UK, mobile", 45_000, 10_000, 30, 6)
    usa = table.lookup("12125550100", NOW)
    assert usa is not None and usa.effective_from == datetime(2025, 1, 1, tzinfo=UTC)
    assert table.lookup("12125550100", datetime(2026, 2, 1, tzinfo=UTC)) is None
    # The open start is stored as '-infinity' and comes back as None.
    start = await conn.fetchval(
        "SELECT effective_from = '-infinity' FROM rates WHERE rate_group_id = $1 AND prefix = '44'",
        group,
    )
    assert start is True
    assert table.lookup("4420", NOW) == Rate("44", "United Kingdom", 12_000)


@pytest.mark.parametrize("batch_rows", [20_000, 2])
async def test_bad_file_reports_every_row_and_changes_nothing(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    # With 2-row batches, good batches are merged before the bad rows turn up and
    # the repeated key sits in another batch: everything must still roll back.
    monkeypatch.setattr(rates, "IMPORT_BATCH_ROWS", batch_rows)
    group = await _group(conn)
    await rates.import_rates(conn, group, _lines(HEADER + "44,UK,0.01,,,,,,,\n"), replace=False)
    before = await _stored(conn, group)
    text = (
        HEADER
        + "33,France,0.02,,,,,,,\n"  # 2: good
        + "49,Germany,abc,,,,,,,\n"  # 3: bad price
        + "34,Spain,0.03,,,,,,,\n"  # 4: good
        + "4x,Bad prefix,0.01,,,,,,,\n"  # 5: bad prefix
        + "33,France again,0.02,,,,,,,\n"  # 6: repeats line 2
        + ("1" * 33)
        + ",Too long,0.01,,,,,,,\n"  # 7: longer than the schema allows
        + "39,Italy,0.01,0,60\n"  # 8: wrong field count
        + "44,UK,0.05,,,,,,,\n"  # 9: good (would change the stored rate)
        + "7,Russia,0.01,,0,,,,,\n"  # 10: first_increment_s must be >= 1
    )
    with pytest.raises(rates.RateFileInvalid) as caught:
        await rates.import_rates(conn, group, _lines(text), replace=True)
    errors = caught.value.errors
    assert [e.line for e in errors] == [3, 5, 6, 7, 8, 10]
    assert "price_per_min" in errors[0].message
    assert "duplicate rate for prefix 33" in errors[2].message
    assert "first defined on line 2" in errors[2].message
    assert "at most 32 digits" in errors[3].message
    assert str(errors[0]).startswith("line 3: ")
    assert await _stored(conn, group) == before
    assert await conn.fetchval("SELECT to_regclass('rates_import')") is None


async def test_missing_header_column_is_one_error(conn: asyncpg.Connection) -> None:
    group = await _group(conn)
    with pytest.raises(rates.RateFileInvalid) as caught:
        await rates.import_rates(conn, group, _lines("prefix,price\n44,1\n"), replace=False)
    assert [e.line for e in caught.value.errors] == [1]


async def test_upsert_keeps_other_rates_and_replace_removes_them(
    conn: asyncpg.Connection,
) -> None:
    group = await _group(conn)
    await rates.import_rates(
        conn,
        group,
        _lines(HEADER + "44,UK,0.01,,,,,,,\n33,France,0.02,,,,,,,\n"),
        replace=False,
    )
    new_deck = HEADER + "44,UK,0.015,,,,,,,\n49,Germany,0.03,,,,,,,\n"

    upsert = await rates.import_rates(conn, group, _lines(new_deck), replace=False)
    assert (upsert.inserted, upsert.updated, upsert.unchanged, upsert.deleted) == (1, 1, 0, 0)
    assert [r[0] for r in await _stored(conn, group)] == ["33", "44", "49"]
    assert (await _stored(conn, group))[1][2] == 15_000

    again = await rates.import_rates(conn, group, _lines(new_deck), replace=False)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)

    replace = await rates.import_rates(conn, group, _lines(new_deck), replace=True)
    assert (replace.inserted, replace.updated, replace.unchanged, replace.deleted) == (0, 0, 2, 1)
    assert [r[0] for r in await _stored(conn, group)] == ["44", "49"]


async def test_rates_with_other_starts_are_separate_keys(conn: asyncpg.Connection) -> None:
    group = await _group(conn)
    deck = HEADER + "44,UK,0.01,,,,,,,2025-03-01\n44,UK new,0.02,,,,,,2025-03-01,\n"
    await rates.import_rates(conn, group, _lines(deck), replace=False)
    table = await rates.load_group(conn, group)
    old, new = table.lookup("44", datetime(2025, 2, 1, tzinfo=UTC)), table.lookup("44", NOW)
    assert old is not None and old.price_per_min_micros == 10_000
    assert new is not None and new.price_per_min_micros == 20_000


async def test_import_into_unknown_group(conn: asyncpg.Connection) -> None:
    with pytest.raises(rates.RateGroupNotFound, match="999999999"):
        await rates.import_rates(conn, 999_999_999, _lines(HEADER), replace=False)


# -- export, load, resolve --------------------------------------------------------------

ROUND_TRIP = (
    HEADER.replace("\n", ",periods,next_increment_ms\n")
    + "1,USA,0.008,0,30,6,0,0,2025-01-01T00:00:00+00:00,2026-01-01T00:00:00+00:00,,\n"
    + '33,"France, ""fixed""",0.014,0.05,60,60,10,3,,,,\n'
    + "44,UK,0.012,0,60,60,0,0,,,mon-fri 08:00-18:00 0.02 0.01; sat 09:00-13:00 0.015,\n"
    + "44,UK (new),0.011,0,60,60,0,0,2025-07-01T12:30:15.000250+00:00,,,\n"
    + '91,"India\nmultiline",0.035,0,1,1,0,0,,,,100\n'
)


async def test_export_import_round_trip(conn: asyncpg.Connection) -> None:
    first, second = await _group(conn), await _group(conn)
    await rates.import_rates(conn, first, _lines(ROUND_TRIP), replace=True)
    out = io.StringIO(newline="")
    assert await rates.export_rates(conn, first, out) == 5
    exported = out.getvalue()
    assert exported == ROUND_TRIP
    await rates.import_rates(conn, second, _lines(exported), replace=True)
    again = io.StringIO(newline="")
    await rates.export_rates(conn, second, again)
    assert again.getvalue() == exported
    expected, errors = read_rates(_lines(ROUND_TRIP))
    assert not errors
    loaded = await rates.load_group(conn, second)
    assert sorted(loaded, key=repr) == sorted(expected, key=repr)


async def test_load_index_and_resolve(conn: asyncpg.Connection) -> None:
    name = f"named-{secrets.token_hex(4)}"
    group = await _group(conn, name)
    empty = await _group(conn)
    await rates.import_rates(conn, group, _lines(HEADER + "44,UK,0.01,,,,,,,\n"), replace=False)
    index = await rates.load_index(conn)
    assert len(index[group]) == 1 and len(index[empty]) == 0
    assert await rates.resolve_group(conn, name) == group
    assert await rates.resolve_group(conn, str(group)) == group
    assert await rates.resolve_group(conn, group) == group
    with pytest.raises(rates.RateGroupNotFound, match="no-such-group"):
        await rates.resolve_group(conn, "no-such-group")
    with pytest.raises(rates.RateGroupNotFound):
        await rates.load_group(conn, 999_999_999)
    user = await conn.fetchval(
        "INSERT INTO users (login, password_hash, role) VALUES ($1, '$argon2x', 'admin') "
        "RETURNING id",
        f"u{secrets.token_hex(4)}",
    )
    await conn.execute("INSERT INTO rate_groups (name, owner_user_id) VALUES ($1, $2)", name, user)
    with pytest.raises(rates.AmbiguousRateGroup, match="several groups"):
        await rates.resolve_group(conn, name)


# -- notifications ----------------------------------------------------------------------


async def test_one_notification_per_statement(database_url: str, conn: asyncpg.Connection) -> None:
    listener = await asyncpg.connect(database_url)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(rates.CHANNEL, lambda *args: payloads.put_nowait(args[3]))
    try:
        group = await _group(conn)
        assert await asyncio.wait_for(payloads.get(), 2) == str(group)
        await conn.executemany(  # many statements in one transaction: one payload
            "INSERT INTO rates (rate_group_id, prefix, price_per_min_micros) VALUES ($1, $2, 1)",
            [(group, str(p)) for p in range(100, 150)],
        )
        await conn.execute(
            "INSERT INTO rates (rate_group_id, prefix, price_per_min_micros) "
            "SELECT $1, p::text, 1 FROM generate_series(200, 5000) p",
            group,
        )
        await conn.execute("UPDATE rates SET grace_s = 1 WHERE rate_group_id = $1", group)
        await conn.execute("DELETE FROM rates WHERE rate_group_id = $1", group)
        got = [await asyncio.wait_for(payloads.get(), 2) for _ in range(4)]
        assert got == [str(group)] * 4
        await asyncio.sleep(0.2)
        assert payloads.empty()
        # Over the 8000-byte payload limit: '*', reload everything.
        groups = await conn.fetch(
            "INSERT INTO rate_groups (name) SELECT 'many-' || $1 || g "
            "FROM generate_series(1, 2000) g RETURNING id",
            secrets.token_hex(4),
        )
        assert await asyncio.wait_for(payloads.get(), 2) == RELOAD_ALL
        await conn.execute(
            "DELETE FROM rate_groups WHERE id = ANY($1::bigint[])", [g["id"] for g in groups]
        )
        assert await asyncio.wait_for(payloads.get(), 2) == RELOAD_ALL
        await conn.execute("UPDATE rates SET grace_s = 2 WHERE false")
        await asyncio.sleep(0.2)
        assert payloads.empty(), "a statement that changed nothing must not notify"
    finally:
        await listener.close()


# -- the live cache ---------------------------------------------------------------------


async def _eventually(check: Callable[[], bool], timeout_s: float = 2.0) -> float:
    """Poll until ``check()`` holds; return how long it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not seen within {timeout_s}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _price(cache: RateCache, group: int, number: str) -> int | None:
    table = cache.index.get(group)
    rate = None if table is None else table.lookup(number, NOW)
    return None if rate is None else rate.price_per_min_micros


@pytest.fixture
async def cache(db_pool: asyncpg.Pool, database_url: str) -> AsyncIterator[RateCache]:
    service = RateCache(db_pool, database_url)
    await service.start()
    yield service
    await service.stop()


async def test_cache_sees_insert_update_delete_within_a_second(
    cache: RateCache, conn: asyncpg.Connection
) -> None:
    group = await _group(conn)
    await _eventually(lambda: group in cache.index)
    before = cache.index
    await conn.execute(
        "INSERT INTO rates (rate_group_id, prefix, price_per_min_micros) VALUES ($1, '44', 100)",
        group,
    )
    assert await _eventually(lambda: _price(cache, group, "4420") == 100) < 1.0
    assert len(before[group]) == 0, "a reload must build a new index, not change the old one"
    await conn.execute(
        "UPDATE rates SET price_per_min_micros = 200 WHERE rate_group_id = $1", group
    )
    assert await _eventually(lambda: _price(cache, group, "4420") == 200) < 1.0
    await conn.execute("DELETE FROM rates WHERE rate_group_id = $1", group)
    assert await _eventually(lambda: _price(cache, group, "4420") is None) < 1.0
    await conn.execute("DELETE FROM rate_groups WHERE id = $1", group)
    assert await _eventually(lambda: group not in cache.index) < 1.0


async def test_cache_sees_an_import_as_one_reload(
    cache: RateCache, conn: asyncpg.Connection
) -> None:
    group = await _group(conn)
    await _eventually(lambda: group in cache.index)
    loads = cache.group_loads
    deck = HEADER + "".join(f"{p},D,0.01,,,,,,,\n" for p in range(1000, 3000))
    await rates.import_rates(conn, group, _lines(deck), replace=True)
    await _eventually(lambda: len(cache.index[group]) == 2000)
    await asyncio.sleep(0.2)
    assert cache.group_loads == loads + 1


async def test_cache_reloads_everything_after_its_listen_connection_dies(
    cache: RateCache, conn: asyncpg.Connection
) -> None:
    group = await _group(conn)
    await _eventually(lambda: group in cache.index)
    full_loads = cache.full_loads
    killed = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN %gateway_rates%'"
    )
    assert killed >= 1
    # Committed while the listener may be down: only a full reload can bring it.
    await conn.execute(
        "INSERT INTO rates (rate_group_id, prefix, price_per_min_micros) VALUES ($1, '49', 7)",
        group,
    )
    await _eventually(lambda: _price(cache, group, "4930") == 7)
    await _eventually(lambda: cache.reconnects >= 1 and cache.full_loads > full_loads)
    # And it listens again.
    await conn.execute("UPDATE rates SET price_per_min_micros = 8 WHERE rate_group_id = $1", group)
    assert await _eventually(lambda: _price(cache, group, "4930") == 8) < 1.0
