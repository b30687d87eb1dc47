"""The balance proofs run twice: on one Redis server and on a 6-node Redis Cluster
(trees spread over several shards, so scripts are routed to three primaries and each
pipeline waits for a replica), since money must behave the same on either."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client
from gateway.balance.service import Balance
from gateway.config import BalanceConfig, RedisConfig
from tests.conftest import MakeBalance
from tests.redis_servers import Cluster

CLUSTER_SHARDS = 6


@pytest.fixture(params=["server", "cluster"])
def redis_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_config(redis_kind: str, redis_url: str, request: pytest.FixtureRequest) -> RedisConfig:
    if redis_kind == "server":
        return RedisConfig(url=redis_url)
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    return RedisConfig(url=cluster.url, max_connections=64)


@pytest.fixture
async def redis_client(  # overrides the session's single-server client
    redis_kind: str, redis_config: RedisConfig, redis_client: aioredis.Redis
) -> AsyncIterator[RedisClient]:
    if redis_kind == "server":
        yield redis_client
        return
    client = create_client(redis_config, redis_config.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys(redis_kind: str, keys: Keys) -> Keys:
    # the cluster is this run's own and thrown away whole: no clean-up needed there
    return keys if redis_kind == "server" else Keys(keys.prefix, CLUSTER_SHARDS)


@pytest.fixture
async def make_balance(
    redis_client: RedisClient, redis_config: RedisConfig, db_pool: asyncpg.Pool, keys: Keys
) -> AsyncIterator[MakeBalance]:
    made: list[Balance] = []

    async def make(config: BalanceConfig | None = None, on_keys: Keys | None = None) -> Balance:
        service = Balance(
            config or BalanceConfig(), redis_client, db_pool, on_keys or keys, redis_config
        )
        made.append(service)
        await service.pipeliner.load()
        return service

    yield make
    for service in made:
        await service.stop()


@pytest.fixture
async def balance(make_balance: MakeBalance) -> Balance:
    return await make_balance(BalanceConfig(max_call_s=3600))
