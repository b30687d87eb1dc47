"""Constraints live in the database: the schema refuses what the code must never write."""

from __future__ import annotations

import asyncpg
import pytest


async def _agent(conn: asyncpg.Connection, name: str, parent: int | None = None) -> int:
    value: int = await conn.fetchval(
        "INSERT INTO accounts (kind, name, parent_id, billing_mode) "
        "VALUES ('agent', $1, $2, 'wholesale') RETURNING id",
        name,
        parent,
    )
    return value


async def test_tree_fields_follow_the_parent(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        top = await _agent(conn, "top")
        mid = await _agent(conn, "mid", top)
        leaf = await conn.fetchval(
            "INSERT INTO accounts (kind, name, parent_id) VALUES ('customer', 'c', $1) "
            "RETURNING id",
            mid,
        )
        row = await conn.fetchrow("SELECT root_id, ancestors FROM accounts WHERE id = $1", leaf)
        assert row["root_id"] == top
        assert list(row["ancestors"]) == [top, mid]
        top_row = await conn.fetchrow("SELECT root_id, ancestors FROM accounts WHERE id = $1", top)
        assert top_row["root_id"] == top and list(top_row["ancestors"]) == []


async def test_parent_must_be_an_agent_and_cannot_move(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        agent = await _agent(conn, "a")
        other = await _agent(conn, "b")
        customer = await conn.fetchval(
            "INSERT INTO accounts (kind, name, parent_id) VALUES ('customer', 'c', $1) "
            "RETURNING id",
            agent,
        )
        with pytest.raises(asyncpg.CheckViolationError, match="not an agent"):
            await conn.execute(
                "INSERT INTO accounts (kind, name, parent_id) VALUES ('customer', 'd', $1)",
                customer,
            )
        with pytest.raises(asyncpg.CheckViolationError, match="parent_id cannot change"):
            await conn.execute("UPDATE accounts SET parent_id = $1 WHERE id = $2", other, customer)


@pytest.mark.parametrize(
    "statement",
    [
        # an agent needs a billing mode, a customer must not have one
        "INSERT INTO accounts (kind, name) VALUES ('agent', 'x')",
        "INSERT INTO accounts (kind, name, billing_mode) VALUES ('customer', 'x', 'transfer')",
        "INSERT INTO accounts (kind, name, billing_mode) VALUES ('agent', 'x', 'resale')",
        "INSERT INTO accounts (kind, name, credit_limit_micros) VALUES ('customer', 'x', -1)",
        "INSERT INTO accounts (kind, name, commission_rate_bp) VALUES ('customer', 'x', 10001)",
        "INSERT INTO accounts (kind, name, currency) VALUES ('customer', 'x', 'usd')",
        "INSERT INTO accounts (kind, name, status) VALUES ('customer', 'x', 'removed')",
    ],
)
async def test_account_checks(db_pool: asyncpg.Pool, statement: str) -> None:
    async with db_pool.acquire() as conn:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            await conn.execute(statement)


async def test_ledger_idempotency_key_is_unique(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        account = await _agent(conn, "ledger")
        insert = (
            "INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key) "
            "VALUES ($1, 'refill', 1000000, $2)"
        )
        await conn.execute(insert, account, f"test:refill:{account}")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, account, f"test:refill:{account}")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key) "
                "VALUES ($1, 'gift', 1, 'k')",
                account,
            )


async def test_cdr_unique_per_call_leg_and_partitioned(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        account = await _agent(conn, "cdr")
        session = f"s-{account}"
        setup = await conn.fetchval("SELECT date_trunc('second', now() - interval '1 day')")
        row = (
            "INSERT INTO cdrs (nas, session_id, leg, setup_at, account_id, chain, status) "
            "VALUES ('10.0.0.1', $3, $2, $4, $1, ARRAY[$1::bigint], 'answered') "
            "ON CONFLICT DO NOTHING"
        )
        assert await conn.execute(row, account, "answer", session, setup) == "INSERT 0 1"
        assert await conn.execute(row, account, "answer", session, setup) == "INSERT 0 0"
        assert await conn.execute(row, account, "originate", session, setup) == "INSERT 0 1"
        partition = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM cdrs WHERE session_id = $1 LIMIT 1", session
        )
        assert partition.startswith("cdrs_2"), partition


async def test_partitions_can_be_added_and_take_rows_from_default(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        account = await _agent(conn, "far")
        await conn.execute(
            "INSERT INTO cdrs (nas, session_id, setup_at, account_id, chain, status) "
            "VALUES ('n', 'future', '2031-05-04T10:00:00Z', $1, ARRAY[$1::bigint], 'failed')",
            account,
        )
        where = "SELECT tableoid::regclass::text FROM cdrs WHERE session_id = 'future'"
        assert await conn.fetchval(where) == "cdrs_default"
        assert await conn.fetchval("SELECT cdrs_ensure_partitions('2031-05-01', 1)") == 1
        assert await conn.fetchval(where) == "cdrs_203105"
        assert await conn.fetchval("SELECT cdrs_ensure_partitions('2031-05-01', 1)") == 0


async def test_chain_accounts_come_customer_first(db_pool: asyncpg.Pool) -> None:
    from gateway.db.chains import fetch_chain_accounts

    async with db_pool.acquire() as conn:
        top = await _agent(conn, "chain-top")
        mid = await _agent(conn, "chain-mid", top)
        customer = await conn.fetchval(
            "INSERT INTO accounts (kind, name, parent_id) VALUES ('customer', 'c', $1) "
            "RETURNING id",
            mid,
        )
        chain = await fetch_chain_accounts(conn, customer)
    assert [a.id for a in chain] == [customer, mid, top]


async def test_demo_seeds_on_postgresql_15_too(db_pool: asyncpg.Pool) -> None:
    """The demo seed runs on the local server (no PostgreSQL 16-only syntax)."""
    from gateway.runtime import demo

    async with db_pool.acquire() as conn:
        await demo.seed(conn)  # seeds, or finds the demo data another test seeded
        again = await demo.seed(conn)
        admins = await conn.fetchval("SELECT count(*) FROM users WHERE login = 'admin'")
    assert not again.created and admins == 1
