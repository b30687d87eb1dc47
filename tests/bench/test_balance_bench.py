"""Benchmark: reserve+settle pairs per second from one process (real Redis).

Run with `make bench`; prints figures, asserts only that the money adds up.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig
from tests import factories

CALLS = 20_000
CONCURRENCY = 200
CUSTOMERS = 50


async def test_reserve_settle_pairs_per_second(
    redis_client: aioredis.Redis, db_pool: asyncpg.Pool, keys: Keys
) -> None:
    balance = Balance(BalanceConfig(max_call_s=600), redis_client, db_pool, keys)
    await balance.pipeliner.load()
    async with db_pool.acquire() as conn:
        trees = [
            await factories.tree(
                conn, customer_balance=10**12, sub_balance=10**13, top_balance=10**14
            )
            for _ in range(CUSTOMERS)
        ]
    for t in trees:
        await balance.mirror.load(t.chain().account_ids)
    chains = [t.chain() for t in trees]
    queue = iter(range(CALLS))

    async def worker() -> int:
        done = 0
        for i in queue:
            chain = chains[i % CUSTOMERS]
            ref = SessionRef(chain.root_id, f"bench-{i}")
            grant = await balance.store.reserve(ref, chain, factories.meta(f"bench-{i}"))
            assert isinstance(grant, Grant)
            await balance.store.settle(ref, 61, CallEnd(disconnect_at=time.time()))
            done += 1
        return done

    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert sum(counts) == CALLS
    per_pipeline = balance.pipeliner.calls_sent / max(balance.pipeliner.pipelines_sent, 1)
    print(
        f"\nreserve+settle: {CALLS} pairs in {wall:.2f}s = {CALLS / wall:,.0f} pairs/s "
        f"({2 * CALLS / wall:,.0f} script calls/s); client CPU {cpu / CALLS * 1e6:.0f} µs/pair; "
        f"{per_pipeline:.1f} calls per pipeline"
    )
    # 61 s at 60/60 bills 120 s at 0.06/min = 0.12 per call for each customer.
    spent = 0
    for t in trees:
        spent += 10**12 - int(await redis_client.hget(keys.account(t.top, t.customer), "bal"))
    assert spent == CALLS * 120_000
