from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.balance.keys import Keys
from gateway.balance.redisconn import create_client
from gateway.config import Config
from tests.api import world as world_mod
from tests.redis_servers import Cluster


@pytest.fixture
async def api(ctx: ManagementContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx), client=("127.0.0.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture
async def world(db_pool: asyncpg.Pool) -> world_mod.World:
    async with db_pool.acquire() as conn:
        return await world_mod.build(conn)


@pytest.fixture
async def ctx(
    request: pytest.FixtureRequest,
    config: Config,
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
) -> AsyncIterator[ManagementContext]:
    """The management context, on the run's Redis; with GATEWAY_TEST_API_ON_CLUSTER=1,
    on the 6-node test cluster with trees over 6 shards (the whole API suite passes
    there too; `test_cluster_api.py` keeps a part of it on the cluster in every run)."""
    if os.environ.get("GATEWAY_TEST_API_ON_CLUSTER") != "1":
        context = ManagementContext.create(config, db_pool, redis_client, keys)
        await context.start()
        yield context
        await context.close()
        return
    async with cluster_context(request, config, db_pool, keys) as context:
        yield context


@contextlib.asynccontextmanager
async def cluster_context(
    request: pytest.FixtureRequest, config: Config, db_pool: asyncpg.Pool, keys: Keys
) -> AsyncIterator[ManagementContext]:
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    redis_config = dataclasses.replace(config.redis, url=cluster.url, shards=6)
    on_cluster = dataclasses.replace(config, redis=redis_config)
    client = create_client(redis_config, redis_config.url)
    context = ManagementContext.create(on_cluster, db_pool, client, Keys(keys.prefix, 6))
    await context.start()
    try:
        yield context
    finally:
        await context.close()
        await client.aclose()
