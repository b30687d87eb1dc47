"""PostgreSQL failover under the committer (issue 17): a primary killed mid-stream and
its synchronous standby promoted; every settlement lands exactly once.

Real servers (``tests/pg_servers.py``): a primary and a standby streaming from it,
the gateway's own pool on ``postgresql://primary,standby/db?target_session_attrs=
read-write``. Redis is the run's shared server, the calls go through the real Lua.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.agents import cdr_reports
from gateway.agents.context import ManagementContext
from gateway.agents.principal import Principal
from gateway.api.deps import Paging
from gateway.balance.keys import Keys
from gateway.config import CommitterConfig, DatabaseConfig, from_mapping
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.db import migrate
from gateway.db.pool import create_pool, pg_errors
from gateway.settlement.committer import Committer
from tests.integration.committer_support import (
    Calls,
    Switch,
    assert_exactly_once,
    make_tree,
)
from tests.pg_servers import PgPair, pg_pair

pytestmark = pytest.mark.timeout(60)

FAST = CommitterConfig(batch_size=50, retry_delay_s=0.05, claim_idle_s=30.0)
POOL = DatabaseConfig(pool_min=2, pool_max=4, command_timeout_s=5.0)
ADMIN = Principal(user_id=0, login="admin", role="admin", account_id=None, grants=None)


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as started:
        yield started


@pytest.fixture
async def gateway_db(pair: PgPair) -> AsyncIterator[str]:
    """A migrated database on the primary (the standby replays it); its multi-host URL."""
    conn = await asyncpg.connect(pair.url())
    try:
        await conn.execute("CREATE DATABASE gateway")
    finally:
        await conn.close()
    url = pair.url("gateway")
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    await asyncio.to_thread(pair.wait_replayed)
    yield url


async def drained(redis: aioredis.Redis, keys: Keys, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await redis.xlen(keys.settlements(0)):
        assert time.monotonic() < deadline, "the committer did not drain the stream"
        await asyncio.sleep(0.05)


def backend_errors() -> float:
    return metrics.BACKEND_ERRORS.labels("postgresql")._value.get()


async def server_ports(pool: asyncpg.Pool, size: int) -> set[int]:
    """The ports of the servers behind ``size`` connections of ``pool`` held at once."""
    conns = [await pool.acquire() for _ in range(size)]
    try:
        return {int(await c.fetchval("SELECT inet_server_port()")) for c in conns}
    finally:
        for c in conns:
            await pool.release(c)


async def test_committer_keeps_committing_across_a_promotion(
    pair: PgPair, gateway_db: str, redis_client: aioredis.Redis, keys: Keys
) -> None:
    pool = await create_pool(POOL, gateway_db)
    read_pool = await create_pool(POOL, pair.url("gateway", attrs="prefer-standby"))
    switch = Switch(redis_client, keys)
    committer = Committer(FAST, redis_client, pool, keys, "c1", drain_timeout_s=10.0)
    try:
        assert await server_ports(pool, POOL.pool_max) == {pair.primary.port}
        tree = await make_tree(pool)
        await switch.load(tree)
        await committer.start()
        calls = Calls("fo-nas")
        await switch.many(tree, calls.nas, 300, calls=calls)
        errors_before = backend_errors()

        # Calls keep settling in Redis while PostgreSQL fails over under the committer.
        placing = asyncio.create_task(
            switch.many(tree, calls.nas, 600, start=300, calls=calls, concurrency=20)
        )
        await asyncio.sleep(0.05)
        await asyncio.to_thread(pair.kill_primary)
        await asyncio.sleep(1.0)  # no host takes writes: the committer retries, Redis spools
        assert committer.retries > 0, "the committer never met the outage"
        await asyncio.to_thread(pair.promote_standby)
        await placing
        await switch.many(tree, calls.nas, 100, start=900, calls=calls)
        await drained(redis_client, keys)
        await committer.stop()

        assert len(calls.settled) == 1000
        await assert_exactly_once(pool, tree, calls)
        assert backend_errors() > errors_before  # counted as an outage
        # Every connection the pool hands out now reaches the promoted server.
        assert await server_ports(pool, POOL.pool_max) == {pair.standby.port}

        # The reports' pool found its way too (prefer-standby: the one server left).
        ctx = ManagementContext.create(
            from_mapping({}), pool, redis_client, keys, read_pool=read_pool
        )
        page = Paging(limit=1, offset=0, sort="setup_at", descending=True)
        report = await cdr_reports.cdr_report(ctx, ADMIN, cdr_reports.CdrFilter(), page)
        assert report.total == 1000
        await ctx.close()
    finally:
        await committer.stop()
        await switch.pipeliner.close()
        await read_pool.close()
        await pool.close()


async def test_a_standby_that_refuses_writes_is_an_outage_until_promoted(
    pair: PgPair,
    gateway_db: str,
    redis_client: aioredis.Redis,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pool that reached the standby (an address in front of the database that still
    routes to it, or no target_session_attrs): "cannot execute INSERT in a read-only
    transaction" is retried like an outage, never dead-lettered, and once the standby
    is promoted the same settlements commit, once."""
    setup = await create_pool(POOL, gateway_db)
    standby_only = await create_pool(POOL, pair.node_url(pair.standby, "gateway"))
    switch = Switch(redis_client, keys)
    committer = Committer(FAST, redis_client, standby_only, keys, "c2", drain_timeout_s=10.0)
    try:
        tree = await make_tree(setup)
        await switch.load(tree)
        calls = await switch.many(tree, "ro-nas", 200)
        await asyncio.to_thread(pair.wait_replayed)  # the standby knows the schema and tree
        errors_before = backend_errors()
        caplog.set_level(logging.WARNING, logger="gateway")
        await committer.start()
        deadline = time.monotonic() + 10
        while committer.retries < 3:
            assert time.monotonic() < deadline, "the committer never tried the standby"
            await asyncio.sleep(0.05)
        assert await redis_client.xlen(keys.settlements(0)) == 200  # all still spooled
        assert committer.dead_lettered == 0 and committer.rows == 0
        events = {r.getMessage() for r in caplog.records}
        assert "committer.batch_retry" in events and "committer.batch_failed" not in events
        retried = [r for r in caplog.records if r.getMessage() == "committer.batch_retry"]
        assert "ReadOnlySQLTransactionError" in retried[0].__dict__["error"]
        assert backend_errors() > errors_before

        await asyncio.to_thread(pair.kill_primary)
        await asyncio.to_thread(pair.promote_standby)
        await drained(redis_client, keys)
        await committer.stop()
        assert committer.dead_lettered == 0
        await assert_exactly_once(standby_only, tree, calls)
    finally:
        await committer.stop()
        await switch.pipeliner.close()
        await standby_only.close()
        await setup.close()


async def test_a_read_only_server_has_the_pool_replace_its_connections(database_url: str) -> None:
    """One connection finds its server read-only (as a standby is): the pool's other
    connections, alive as they look, are replaced at their next use, not trusted."""
    pool = await create_pool(POOL, database_url)
    try:
        held = [await pool.acquire() for _ in range(3)]
        pids = {int(await c.fetchval("SELECT pg_backend_pid()")) for c in held}
        for conn in held[1:]:
            await pool.release(conn)
        await held[0].execute("SET default_transaction_read_only = on")
        with pytest.raises(BackendUnavailable, match="ReadOnlySQLTransactionError"), pg_errors():
            await held[0].execute("CREATE TABLE failover_probe (x int)")
        await pool.release(held[0])
        await asyncio.sleep(0)  # the expiry runs as a task of its own
        again = await server_pids(pool, 3)
        assert not again & pids, "connections from before the error were handed out again"
    finally:
        await pool.close()


async def server_pids(pool: asyncpg.Pool, size: int) -> set[int]:
    conns = [await pool.acquire() for _ in range(size)]
    try:
        return {int(await c.fetchval("SELECT pg_backend_pid()")) for c in conns}
    finally:
        for c in conns:
            await pool.release(c)
