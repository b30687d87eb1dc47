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
    read_pool: asyncpg.Pool | None = None  # database.read_url: may be a standby

    @classmethod
    def create(
        cls,
        config: Config,
        pool: asyncpg.Pool,
        redis: RedisClient,
        keys: Keys,
        *,
        read_pool: asyncpg.Pool | None = None,
    ) -> ManagementContext:
        return cls(config, pool, redis, keys, pipeliner_for(redis, config.redis), read_pool)

    @property
    def report_pool(self) -> asyncpg.Pool:
        """Where reports of committed history (CDRs, traffic) read: ``read_pool``, which
        may lag the primary a little, or ``pool`` when none is configured. Anything that
        decides (access checks, balances, money moves) reads ``pool``."""
        return self.read_pool if self.read_pool is not None else self.pool

    async def start(self) -> None:
        await self.pipeliner.load()

    async def close(self) -> None:
        await self.pipeliner.close()
