"""Rates at a million rows: COPY import, load, index build, lookups per second.

Run by ``make bench`` (``-s`` shows the figures). Asserts correctness only, never
timing: the figures depend on the machine and on what else it is doing.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from gateway.db import migrate, rates
from gateway.rating import RateTable, format_money
from tests.conftest import DatabaseFactory

ROWS = 1_000_000
LOOKUPS = 200_000
NOW = datetime(2025, 6, 1, tzinfo=UTC)
HEADER = (
    "prefix,destination,price_per_min,connect_fee,first_increment_s,next_increment_s,"
    "min_duration_s,grace_s,effective_from,effective_to\n"
)


def _prefixes(count: int, rng: random.Random) -> list[str]:
    """Unique digit prefixes, 2 to 9 digits long, like a wholesale A-Z deck."""
    found: set[str] = set()
    while len(found) < count:
        length = rng.choice((2, 3, 4, 5, 6, 6, 7, 7, 7, 8, 8, 9))
        found.add(str(rng.randrange(10 ** (length - 1), 10**length)))
    return sorted(found)


def _write_deck(path: Path, prefixes: list[str], rng: random.Random) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for i, prefix in enumerate(prefixes):
            price = format_money(rng.randrange(1, 999_999))
            # Every 20th rate has a period of validity. Written as the exporter writes
            # them, so the export can be compared with the file byte for byte.
            dated = i % 20 == 0
            start, end = (
                ("2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00") if dated else ("", "")
            )
            out.write(f"{prefix},Destination {i % 5000},{price},0,60,60,0,0,{start},{end}\n")


def _longest(prefixes: set[str], number: str) -> str | None:
    for length in range(len(number), 0, -1):
        if number[:length] in prefixes:
            return number[:length]
    return None


@pytest.fixture
async def bench_db(databases: DatabaseFactory) -> AsyncIterator[asyncpg.Connection]:
    url = await databases.create()
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        yield conn
    finally:
        await conn.close()


async def test_rates_at_one_million(bench_db: asyncpg.Connection, tmp_path: Path) -> None:
    conn = bench_db
    rng = random.Random(20250601)
    started = time.perf_counter()
    prefixes = _prefixes(ROWS, rng)
    deck = tmp_path / "deck.csv"
    _write_deck(deck, prefixes, rng)
    size_mb = deck.stat().st_size / 1e6
    print(f"\n  generated {ROWS:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f}s")
    group = await conn.fetchval("INSERT INTO rate_groups (name) VALUES ('bench') RETURNING id")

    with deck.open(encoding="utf-8", newline="") as lines:
        result = await rates.import_rates(conn, group, lines, replace=True)
    assert (result.rows, result.inserted) == (ROWS, ROWS)
    print(
        f"  import (parse + COPY + merge): {result.elapsed_s:.1f}s, "
        f"{ROWS / result.elapsed_s:,.0f} rows/s"
    )

    with deck.open(encoding="utf-8", newline="") as lines:
        again = await rates.import_rates(conn, group, lines, replace=True)
    assert (again.unchanged, again.deleted) == (ROWS, 0)
    print(f"  re-import of the same deck (all unchanged): {again.elapsed_s:.1f}s")

    started = time.perf_counter()
    index = await rates.load_index(conn)
    load_s = time.perf_counter() - started
    table = index[group]
    assert len(table) == ROWS
    print(f"  load_index (COPY out + build): {load_s:.1f}s")

    all_rates = list(table)
    started = time.perf_counter()
    rebuilt = RateTable(all_rates)
    build_s = time.perf_counter() - started
    assert len(rebuilt) == ROWS
    print(f"  RateTable build from {ROWS:,} Rates: {build_s:.2f}s")

    started = time.perf_counter()
    exported = io.StringIO(newline="")
    assert await rates.export_rates(conn, group, exported) == ROWS
    print(f"  export: {time.perf_counter() - started:.1f}s")
    assert exported.getvalue() == deck.read_text(encoding="utf-8")

    numbers = [
        rng.choice(prefixes) + str(rng.randrange(10**6, 10**7)) for _ in range(LOOKUPS // 2)
    ] + [str(rng.randrange(10**10, 10**11)) for _ in range(LOOKUPS // 2)]
    rng.shuffle(numbers)
    lookup = table.lookup
    started = time.perf_counter()
    found = [lookup(number, NOW) for number in numbers]
    lookup_s = time.perf_counter() - started
    print(
        f"  lookups at {ROWS:,} rates: {LOOKUPS / lookup_s:,.0f}/s "
        f"({lookup_s / LOOKUPS * 1e6:.2f} µs each)"
    )

    # Longest-prefix match checked against brute force on a sample (no dated rate
    # is out of force at NOW, so the longest prefix always wins).
    known = set(prefixes)
    for number, rate in list(zip(numbers, found, strict=True))[:5000]:
        expected = _longest(known, number)
        assert (rate.prefix if rate is not None else None) == expected
