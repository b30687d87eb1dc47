"""A committer in its own process, for the kill test: runs until SIGTERM.

    GW_DB_URL, GW_REDIS_URL, GW_PREFIX, GW_CONSUMER, GW_BATCH, GW_CLAIM_IDLE_S
    python -m tests.integration.committer_proc

Prints "ready" once it runs, and its counters as JSON when it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import asyncpg
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.config import CommitterConfig
from gateway.settlement.committer import Committer


async def main() -> None:
    env = os.environ
    config = CommitterConfig(
        batch_size=int(env.get("GW_BATCH", "100")),
        retry_delay_s=0.1,
        claim_idle_s=float(env.get("GW_CLAIM_IDLE_S", "1.0")),
    )
    pool = await asyncpg.create_pool(env["GW_DB_URL"], min_size=1, max_size=2)
    client = aioredis.Redis.from_url(env["GW_REDIS_URL"])
    keys = Keys(env["GW_PREFIX"], int(env.get("GW_SHARDS", "1")))
    committer = Committer(config, client, pool, keys, env["GW_CONSUMER"], drain_timeout_s=30)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    await committer.start()
    print("ready", flush=True)
    await stopping.wait()
    await committer.stop()
    counters = {"rows": committer.rows, "duplicates": committer.duplicates}
    counters["claimed"] = committer.claimed
    print(json.dumps(counters), flush=True)
    await client.aclose()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
