"""Test harness: real PostgreSQL and Redis, isolated per test run.

The local servers (127.0.0.1:5432 and 127.0.0.1:6379, or GATEWAY_TEST_DATABASE_URL /
GATEWAY_TEST_REDIS_URL) are used when they answer; otherwise embedded ones are
started under a temporary folder. Each run creates its own database and its own
Redis key namespace, and removes both at the end; nothing else is touched.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis

from gateway.agents.context import ManagementContext
from gateway.balance.keys import Keys
from gateway.balance.service import Balance
from gateway.config import BalanceConfig, Config, from_mapping
from gateway.db import migrate
from gateway.runtime.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.redis_servers import Cluster

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        with socket.create_connection((host, parts.port or default_port), timeout=1.0):
            return True
    except OSError:
        return False


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def embedded_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gwtest-embedded-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def postgres_server_url(embedded_root: Path) -> Iterator[str]:
    """A PostgreSQL server URL with rights to create databases."""
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL", DEFAULT_PG)
    if _reachable(url, 5432):
        yield url
        return
    server = EmbeddedPostgres(embedded_root / "postgres")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(embedded_root: Path) -> Iterator[str]:
    url = os.environ.get("GATEWAY_TEST_REDIS_URL", DEFAULT_REDIS)
    if _reachable(url, 6379):
        yield url
        return
    server = EmbeddedRedis(embedded_root / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


class DatabaseFactory:
    """Creates throw-away databases on the test server and drops them all at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"gwtest_{RUN_ID}_{len(self.created)}"
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return with_database(self.server_url, name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def databases(postgres_server_url: str) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_server_url)
    yield factory
    await factory.drop_all()


@pytest.fixture(scope="session")
async def database_url(databases: DatabaseFactory) -> str:
    """This run's database, migrated once; tests add their own rows and leave others'."""
    url = await databases.create()
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    return url


@pytest.fixture
async def empty_database_url(databases: DatabaseFactory) -> str:
    """A brand-new database with no schema, for migration tests."""
    return await databases.create()


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def redis_namespace(redis_url: str) -> Iterator[str]:
    """This run's key prefix; every key under it is deleted at the end."""
    prefix = f"gwtest:{RUN_ID}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(batch), 500):
            client.delete(*batch[start : start + 500])
    finally:
        client.close()


_counter = iter(range(1_000_000))


@pytest.fixture
def keys(redis_namespace: str) -> Keys:
    """Keys under a namespace of this test's own, inside the run's namespace."""
    return Keys(f"{redis_namespace}:{next(_counter)}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A 6-node Redis Cluster (3 primaries, 3 replicas) on loopback, for this run only.
    Shared: tests that kill nodes start a cluster of their own."""
    with tempfile.TemporaryDirectory(prefix="gwtest-cluster-") as folder:
        cluster = Cluster(Path(folder))
        try:
            yield cluster.start(6)
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


MakeBalance = Callable[..., Awaitable[Balance]]


@pytest.fixture
async def make_balance(
    redis_client: aioredis.Redis, db_pool: asyncpg.Pool, keys: Keys
) -> AsyncIterator[MakeBalance]:
    """Builds balance services on the shared Redis client (scripts loaded), and gives
    their pipelines' connections back at the end: the shared pool is bounded."""
    made: list[Balance] = []

    async def make(config: BalanceConfig | None = None, on_keys: Keys | None = None) -> Balance:
        service = Balance(config or BalanceConfig(), redis_client, db_pool, on_keys or keys)
        made.append(service)
        await service.pipeliner.load()
        return service

    yield make
    for service in made:
        await service.stop()


@pytest.fixture
def config(database_url: str, redis_url: str, keys: Keys, tmp_path: Path) -> Config:
    """A gateway configuration pointing at this run's database and namespace."""
    return from_mapping(
        {
            "service": {"state_dir": str(tmp_path / "state"), "log_format": "text"},
            "redis": {"url": redis_url, "key_prefix": keys.prefix},
            "database": {"url": database_url},
        }
    )


@pytest.fixture
async def ctx(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> AsyncIterator[ManagementContext]:
    """A started management context (API, portal, dormancy) on this test's stores."""
    context = ManagementContext.create(config, db_pool, redis_client, keys)
    await context.start()
    yield context
    await context.close()
