"""What every management operation needs: configuration and the two stores."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient
from gateway.balance.scripts import ScriptRunner
from gateway.config import Config


@dataclass(slots=True)
class ManagementContext:
    """Config, PostgreSQL pool, Redis client, key names and the balance scripts.

    Money moves go through ``gateway.balance.moves.move_money`` with ``pipeliner``, so
    the Redis mirror of the call path sees every refill and transfer at once.
    """

    config: Config
    pool: asyncpg.Pool
    redis: RedisClient
    keys: Keys
    pipeliner: ScriptRunner

    @classmethod
    def create(
        cls, config: Config, pool: asyncpg.Pool, redis: RedisClient, keys: Keys
    ) -> ManagementContext:
        return cls(config, pool, redis, keys, pipeliner_for(redis, config.redis))

    async def start(self) -> None:
        await self.pipeliner.load()

    async def close(self) -> None:
        await self.pipeliner.close()
