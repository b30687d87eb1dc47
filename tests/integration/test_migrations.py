"""Migrations on a real PostgreSQL: from empty, re-run, concurrent starts, changed history."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.core.errors import MigrationError
from gateway.db import migrate


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_from_empty_then_rerun(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert not await migrate.is_current(conn)
        first = await migrate.migrate(conn)
        assert first == [m.version for m in migrate.available()]
        tables = await _tables(conn)
        for table in (
            "accounts",
            "users",
            "rate_groups",
            "rates",
            "caller_ids",
            "extensions",
            "cdrs",
            "ledger_entries",
            "tickets",
            "ticket_messages",
            "announcements",
            "notification_outbox",
            "user_account_access",
            "user_rate_group_access",
            "schema_migrations",
        ):
            assert table in tables
        assert await migrate.migrate(conn) == []
        assert await migrate.is_current(conn)
    finally:
        await conn.close()


async def test_concurrent_starts_apply_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.migrate(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in migrate.available()]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(migrate.available())
    finally:
        for c in conns:
            await c.close()


async def test_second_migrator_waits_for_the_lock(empty_database_url: str) -> None:
    holder = await asyncpg.connect(empty_database_url)
    waiter = await asyncpg.connect(empty_database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATION_LOCK_KEY)
        task = asyncio.create_task(migrate.migrate(waiter))
        await asyncio.sleep(0.3)
        assert not task.done(), "migrate must wait while another process holds the lock"
        await holder.execute("SELECT pg_advisory_unlock($1)", migrate.MIGRATION_LOCK_KEY)
        assert await asyncio.wait_for(task, 30) == [m.version for m in migrate.available()]
    finally:
        await holder.close()
        await waiter.close()


async def test_changed_history_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate.migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate.migrate(conn)
        assert not await migrate.is_current(conn)
    finally:
        await conn.close()


async def test_0012_reads_existing_causes_as_q850_and_keeps_the_raw(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        for m in migrate.available():
            if m.version != 12:
                await conn.execute(m.sql)
        account = await conn.fetchval(
            "INSERT INTO accounts (kind, name, billing_mode) "
            "VALUES ('agent', 'c', 'wholesale') RETURNING id"
        )
        raws = ["10", "0x11", "7F", "80", "User-Request", "Idle-Timeout", "nas-restart", ""]
        for i, raw in enumerate(raws):
            await conn.execute(
                "INSERT INTO cdrs (nas, session_id, setup_at, disconnect_at, account_id, chain, "
                "status, disconnect_cause) VALUES ('n', $1, now(), now(), $2, $3, 'failed', $4)",
                f"s{i}",
                account,
                [account],
                raw,
            )
        await conn.execute(next(m.sql for m in migrate.available() if m.version == 12))
        rows = await conn.fetch(
            "SELECT disconnect_cause_raw, disconnect_cause FROM cdrs ORDER BY session_id"
        )
        assert [(r[0], r[1]) for r in rows] == [
            ("10", 16),
            ("0x11", 17),
            ("7F", 127),
            ("80", None),  # out of Q.850's range: raw only
            ("User-Request", 16),
            ("Idle-Timeout", 102),
            ("nas-restart", None),
            ("", None),
        ]
    finally:
        await conn.close()
