"""Readiness against real back-ends: PostgreSQL away is degraded while the settlement
spool in Redis is small, not ready past the bound; on a Redis Cluster every primary
serving a shard must answer, and a finished failover makes the gateway ready again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client
from gateway.config import RedisConfig
from gateway.runtime import readiness
from gateway.runtime.ops import Degraded
from tests.integration.tcp_proxy import TcpProxy
from tests.redis_servers import Cluster


@pytest.fixture
async def cut_pool(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, TcpProxy]]:
    """A pool reaching this run's database through a proxy the test can cut."""
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    via = f"{netloc[0]}@127.0.0.1:{proxy.port}" if len(netloc) == 2 else f"127.0.0.1:{proxy.port}"
    pool = await asyncpg.create_pool(parts._replace(netloc=via).geturl(), min_size=1, max_size=2)
    try:
        yield pool, proxy
    finally:
        await proxy.close()
        pool.terminate()


async def test_postgresql_answering_is_ready(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> None:
    assert await readiness.postgres_problem(db_pool, redis_client, keys) is None
    assert await readiness.redis_problem(redis_client, keys) is None


async def test_postgresql_away_is_degraded_until_the_spool_is_full(
    cut_pool: tuple[asyncpg.Pool, TcpProxy], redis_client: aioredis.Redis, keys: Keys
) -> None:
    pool, proxy = cut_pool
    assert await readiness.postgres_problem(pool, redis_client, keys, spool_max=2) is None
    await proxy.cut()
    for n in range(2):
        await redis_client.xadd(keys.settlements(0), {"n": n})
    problem = await readiness.postgres_problem(pool, redis_client, keys, spool_max=2)
    assert isinstance(problem, Degraded), problem
    assert "unreachable" in problem and "2 settlements spooled" in problem

    await redis_client.xadd(keys.settlements(0), {"n": 2})
    problem = await readiness.postgres_problem(pool, redis_client, keys, spool_max=2)
    assert problem is not None and not isinstance(problem, Degraded)
    assert "3 settlements spooled in Redis, over 2" in problem

    await proxy.restore()
    for _ in range(50):  # the pool drops the cut connection and opens a new one
        if await readiness.postgres_problem(pool, redis_client, keys, spool_max=2) is None:
            return
        await asyncio.sleep(0.1)
    pytest.fail("PostgreSQL back, but still not ready")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path / "cluster")
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
async def cluster_client(cluster: Cluster) -> AsyncIterator[RedisClient]:
    client = create_client(RedisConfig(url=cluster.url, socket_timeout_s=0.5), cluster.url)
    await client.ping()
    yield client
    await client.aclose()


async def test_a_cluster_is_ready_only_while_every_shard_has_a_primary(
    cluster: Cluster, cluster_client: RedisClient
) -> None:
    keys = Keys("gwready", shards=64)
    assert await readiness.redis_problem(cluster_client, keys) is None

    victim = cluster.primary_of(keys.settlements(0))
    victim.kill()
    # Its replica takes over after the node timeout (1 s): until then shard 0 is down.
    problem = await readiness.redis_problem(cluster_client, keys)
    assert problem is not None and f"127.0.0.1:{victim.port}" in problem, problem

    deadline = time.monotonic() + 30
    while (problem := await readiness.redis_problem(cluster_client, keys)) is not None:
        assert time.monotonic() < deadline, f"never ready after the failover: {problem}"
        await asyncio.sleep(0.2)
    assert cluster.primary_of(keys.settlements(0)) is not victim
