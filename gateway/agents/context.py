"""What every management operation needs: configuration and the two stores."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.scripts import Pipeliner, load_scripts
from gateway.config import Config


@dataclass(slots=True)
class ManagementContext:
    """Config, PostgreSQL pool, Redis client, key names and the balance scripts.

    Money moves go through ``gateway.balance.moves.move_money`` with ``pipeliner``, so
    the Redis mirror of the call path sees every refill and transfer at once.
    """

    config: Config
    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: Keys
    pipeliner: Pipeliner

    @classmethod
    def create(
        cls, config: Config, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
    ) -> ManagementContext:
        return cls(config, pool, redis, keys, Pipeliner(redis, load_scripts()))

    async def start(self) -> None:
        await self.pipeliner.load()

    async def close(self) -> None:
        await self.pipeliner.close()
