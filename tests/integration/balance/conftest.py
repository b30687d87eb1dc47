from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.service import Balance
from gateway.config import BalanceConfig
from gateway.keys import Keys


@pytest.fixture
async def balance(
    redis_client: aioredis.Redis, db_pool: asyncpg.Pool, keys: Keys
) -> AsyncIterator[Balance]:
    service = Balance(BalanceConfig(max_call_s=3600), redis_client, db_pool, keys)
    await service.pipeliner.load()
    yield service
