"""What /readyz asks of the back-ends: can this gateway answer calls now?

- Redis: every primary that serves one of this deployment's shards answers PING. On
  one server or under Sentinel that is the one primary; on a Redis Cluster it is each
  node the slot map names for a shard's hash tag (a slot with no primary, mid-failover,
  is a failure naming it). A failed round reads the slot map again and asks once more,
  so a finished failover is seen at the next probe, not after the next call.
- PostgreSQL: reachable with the schema current. Unreachable is *degraded*, not down:
  calls are still answered and settlements wait in the Redis streams (DESIGN.md,
  durability), so the gateway stays ready while that spool holds at most
  ``SPOOL_MAX`` settlements. Past it the gateway reports not ready, so a balancer
  sends the calls to a gateway whose committer keeps up, and Redis memory stops
  growing from this one.

A check returns ``None`` when fine, a ``Degraded`` note when ready with a caveat, and
any other text when not ready (``gateway.runtime.ops``).
"""

from __future__ import annotations

import asyncio

import asyncpg
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient
from gateway.db import migrate
from gateway.runtime.ops import Degraded

SPOOL_MAX = 100_000  # settlements waiting in Redis while PostgreSQL is away
POSTGRES_TIMEOUT_S = 1.0  # within ops.CHECK_TIMEOUT_S, leaving time to read the spool


async def redis_problem(client: RedisClient, keys: Keys) -> str | None:
    """None when every primary this gateway writes to answers, else which do not."""
    if not isinstance(client, RedisCluster):
        await client.ping()
        return None
    problem = await _cluster_problem(client, keys)
    if problem is None:
        return None
    await client.nodes_manager.initialize()  # a failover may have moved the slots
    return await _cluster_problem(client, keys)


async def _cluster_problem(client: RedisCluster, keys: Keys) -> str | None:
    nodes: dict[str, ClusterNode] = {}
    uncovered: list[int] = []
    for shard in range(keys.shards):
        slot = client.keyslot(keys.settlements(shard))
        serving = client.nodes_manager.slots_cache.get(slot)
        if not serving:
            uncovered.append(shard)
            continue
        nodes[serving[0].name] = serving[0]
    if uncovered:
        return f"no primary serves the slots of shards {_ranges(uncovered)}"
    replies = await asyncio.gather(
        *(node.execute_command("PING") for node in nodes.values()), return_exceptions=True
    )
    down = [
        f"{name} ({type(reply).__name__})"
        for name, reply in zip(nodes, replies, strict=True)
        if isinstance(reply, BaseException)
    ]
    return f"primaries not answering: {', '.join(sorted(down))}" if down else None


async def postgres_problem(
    pool: asyncpg.Pool, redis: RedisClient, keys: Keys, *, spool_max: int = SPOOL_MAX
) -> str | None:
    """None when PostgreSQL answers with the current schema; ``Degraded`` when it does
    not answer but the settlement spool in Redis is within ``spool_max``; else why not."""
    try:
        current = await asyncio.wait_for(_schema_current(pool), POSTGRES_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        return None if current else "schema migrations pending"
    try:
        spooled = await settlement_backlog(redis, keys)
    except (RedisError, OSError) as exc:
        return f"unreachable ({reason}), and the spool cannot be read ({exc})"
    if spooled > spool_max:
        return f"unreachable ({reason}); {spooled} settlements spooled in Redis, over {spool_max}"
    return Degraded(f"unreachable ({reason}); {spooled} settlements spooled in Redis")


async def _schema_current(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return await migrate.is_current(conn)


async def settlement_backlog(redis: RedisClient, keys: Keys) -> int:
    """Settlements in every shard's stream, not yet committed to PostgreSQL."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.xlen(keys.settlements(shard))
    return sum(int(n) for n in await pipe.execute())


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5": a cluster of 64 shards stays one readable line."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and spans[-1][1] == n - 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
