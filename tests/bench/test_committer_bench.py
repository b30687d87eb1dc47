"""Benchmark: committer rows per second (real Redis and PostgreSQL).

Run with `make bench`; prints figures, asserts only that every settlement landed
exactly once. A few hundred settlements come from the real Lua scripts; the rest
are copies of them under new session ids (the committer cannot tell the difference,
and filling the stream then takes seconds instead of minutes).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.config import CommitterConfig
from gateway.settlement.cdr_writer import Method
from gateway.settlement.committer import Committer
from tests.integration.committer_support import (
    START_BALANCE,
    Switch,
    Tree,
    balances,
    make_tree,
)

SETTLEMENTS = 50_000
TEMPLATES = 300


async def fill(redis: aioredis.Redis, keys: Keys, tree: Tree, nas: str) -> Counter[int]:
    """SETTLEMENTS entries in the stream; returns what each account must have spent."""
    switch = Switch(redis, keys)
    await switch.load(tree)
    await switch.many(tree, nas, TEMPLATES)
    stream = keys.settlements(0)
    templates: list[dict[str, Any]] = [
        json.loads(fields[b"s"]) for _, fields in await redis.xrange(stream)
    ]
    await redis.delete(stream)
    spent: Counter[int] = Counter()
    pipe = redis.pipeline(transaction=False)
    for i in range(SETTLEMENTS):
        entry = templates[i % TEMPLATES]
        entry["meta"]["session_id"] = f"bench-{i}"
        pipe.xadd(stream, {"s": json.dumps(entry)})
        for key, cost in zip(entry["accounts"], entry["costs"], strict=True):
            spent[int(key.rsplit(":", 1)[1])] += cost
        if len(pipe) >= 5_000:
            await pipe.execute()
    await pipe.execute()
    return spent


async def check(pool: asyncpg.Pool, tree: Tree, nas: str, spent: Counter[int]) -> None:
    count = await pool.fetchval("SELECT count(*) FROM cdrs WHERE nas = $1", nas)
    assert count == SETTLEMENTS
    got = await balances(pool, tree.accounts)
    assert got == {a: START_BALANCE - spent[a] for a in tree.accounts}


async def drained(redis: aioredis.Redis, keys: Keys) -> bool:
    return int(await redis.xlen(keys.settlements(0))) == 0


@pytest.mark.parametrize(
    ("method", "batch_size", "service"),
    [
        ("json", 500, False),
        ("unnest", 500, False),
        ("copy", 500, False),
        ("json", 500, True),
        ("json", 2000, True),
    ],
)
async def test_committer_rows_per_second(
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
    method: Method,
    batch_size: int,
    service: bool,
) -> None:
    tree = await make_tree(db_pool, customers=20)
    nas = f"{keys.prefix}-bench"
    spent = await fill(redis_client, keys, tree, nas)
    config = CommitterConfig(batch_size=batch_size)
    committer = Committer(config, redis_client, db_pool, keys, "bench", method=method)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if service:  # the running loop: reads the next batch while one is written
        await committer.start()
        for _ in range(100_000):
            if await drained(redis_client, keys):
                break
            await asyncio.sleep(0.01)
        await committer.stop()
    else:  # process_available: read, write, acknowledge, one after the other
        await committer.process_available()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await check(db_pool, tree, nas, spent)
    print(
        f"\ncommitter {method:6} batch {batch_size:4} {'loop' if service else 'sync'}: "
        f"{SETTLEMENTS} settlements ({committer.ledger_rows} ledger rows) in {wall:.2f}s = "
        f"{SETTLEMENTS / wall:,.0f} rows/s; client CPU {cpu / SETTLEMENTS * 1e6:.0f} µs/row"
    )
