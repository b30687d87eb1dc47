"""Kill the committer at random moments while it drains: nothing lost, nothing twice.

The committer runs in its own process and is SIGKILLed several times while a
backlog drains and the switch keeps settling calls; sometimes it comes back under
the same consumer name (it resumes its own pending entries), sometimes under a new
one (its old entries are claimed once idle). At the end PostgreSQL holds every
settlement exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.settlement.committer import GROUP
from tests.integration.committer_support import Switch, assert_exactly_once, make_tree

ROOT = Path(__file__).resolve().parents[2]
BACKLOG = 10_000
KILLS = 5

pytestmark = pytest.mark.slow


async def spawn(env: dict[str, str], consumer: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.committer_proc",
        env={**env, "GW_CONSUMER": consumer},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line.strip() == b"ready", line
    return proc


async def drained(redis: aioredis.Redis, stream: str) -> bool:
    pending = await redis.xpending(stream, GROUP)
    return int(await redis.xlen(stream)) == 0 and pending["pending"] == 0


async def test_sigkilled_committer_loses_and_doubles_nothing(
    database_url: str,
    redis_url: str,
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
) -> None:
    started = time.monotonic()
    tree = await make_tree(db_pool, customers=5)
    switch = Switch(redis_client, keys)
    await switch.load(tree)
    calls = await switch.many(tree, keys.prefix, BACKLOG)
    stream = keys.settlements(0)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GW_DB_URL": database_url,
        "GW_REDIS_URL": redis_url,
        "GW_PREFIX": keys.prefix,
        "GW_BATCH": "100",
        "GW_CLAIM_IDLE_S": "1.0",
    }
    rng = random.Random(7)

    # The switch keeps settling calls while the committer is being killed.
    async def produce() -> None:
        offset = BACKLOG
        while offset < BACKLOG + 3_000:
            await switch.many(tree, keys.prefix, 250, start=offset, calls=calls)
            offset += 250
            await asyncio.sleep(0.05)

    producer = asyncio.create_task(produce())
    kills = 0
    for life in range(KILLS):
        consumer = "victim" if life % 2 == 0 else f"victim-{life}"
        proc = await spawn(env, consumer)
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        kills += 1
    await producer
    committed_mid_way = await db_pool.fetchval(
        "SELECT count(*) FROM cdrs WHERE nas = $1", keys.prefix
    )
    assert committed_mid_way > 0, "the committer never got to commit before being killed"

    # Last life: drains everything, including what the killed consumers left pending.
    proc = await spawn(env, "victim")
    for _ in range(300):
        if await drained(redis_client, stream):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("stream not drained within 30 s")
    await switch.pipeliner.close()  # the shared client's pool is bounded
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    counters = json.loads(out.splitlines()[-1])
    assert kills == KILLS
    await assert_exactly_once(db_pool, tree, calls)
    print(
        f"\nkill test: {len(calls.settled)} settlements, {kills} kills, "
        f"{committed_mid_way} committed before the last life, last life {counters}, "
        f"{time.monotonic() - started:.1f}s"
    )
