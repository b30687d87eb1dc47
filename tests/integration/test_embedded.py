"""Embedded PostgreSQL and Redis: start, keep data across a restart, stop."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis

from gateway.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, _pid_alive


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def test_postgres_keeps_data_across_restart(state: Path) -> None:
    server = EmbeddedPostgres(state / "postgres")
    try:
        url = server.start()
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('call-1')")
        await conn.close()
        server.stop()
        assert server._running_pid() is None

        again = server.start()
        conn = await asyncpg.connect(again)
        assert await conn.fetchval("SELECT v FROM kept") == "call-1"
        await conn.close()
    finally:
        server.stop()
    assert server._running_pid() is None


def test_postgres_takes_over_a_stale_server(state: Path) -> None:
    first = EmbeddedPostgres(state / "postgres")
    first.start()
    try:
        # A second handle on the same folder (a gateway restarted after a crash)
        # stops the orphan and starts its own.
        second = EmbeddedPostgres(state / "postgres")
        second.start()
        assert second._running_pid() is not None
    finally:
        first.stop()


def test_redis_keeps_data_across_restart(state: Path) -> None:
    server = EmbeddedRedis(state / "redis")
    try:
        url = server.start()
        client = redis.Redis.from_url(url)
        client.set("balance", "1500000")
        client.xadd("settlements", {"session": "s1"})
        client.close()
        pid = server._running_pid()
        assert pid is not None
        server.stop()
        assert not _pid_alive(pid)
        assert (state / "redis" / "appendonly.aof").exists() or (
            state / "redis" / "appendonlydir"
        ).exists()

        client = redis.Redis.from_url(server.start())
        assert client.get("balance") == b"1500000"
        assert client.xlen("settlements") == 1
        client.close()
    finally:
        server.stop()
