"""A gateway's low-balance watch in its own process, for the two-gateway test: runs
rounds back to back until SIGTERM.

    GW_DB_URL, GW_REDIS_URL, GW_PREFIX, GW_WEBHOOK
    python -m tests.integration.low_balance_proc

Prints "ready" once it runs, and when it stops, as JSON, the crossings it claimed and
the refills it recorded: {"crossed": [[account, crossing], ...], "refills": [[account,
crossing, status], ...]}.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import asyncpg
import redis.asyncio as aioredis

from gateway.agents.context import ManagementContext
from gateway.agents.low_balance import run_round
from gateway.balance.keys import Keys
from gateway.config import from_mapping


async def main() -> None:
    env = os.environ
    config = from_mapping(
        {
            "redis": {"url": env["GW_REDIS_URL"], "key_prefix": env["GW_PREFIX"]},
            "database": {"url": env["GW_DB_URL"]},
            "alerts": {"webhook_url": env["GW_WEBHOOK"]},
        }
    )
    pool = await asyncpg.create_pool(env["GW_DB_URL"], min_size=1, max_size=2)
    client = aioredis.Redis.from_url(env["GW_REDIS_URL"])
    ctx = ManagementContext.create(config, pool, client, Keys(env["GW_PREFIX"]))
    await ctx.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    crossed: list[list[int]] = []
    refills: list[list[int | str]] = []
    print("ready", flush=True)
    while not stopping.is_set():
        result = await run_round(ctx)
        crossed += [[c.account_id, c.crossing] for c in result.crossed]
        refills += [[r.account_id, r.crossing, r.status] for r in result.refills]
        await asyncio.sleep(0.005)
    print(json.dumps({"crossed": crossed, "refills": refills}), flush=True)
    await ctx.close()
    await client.aclose()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
