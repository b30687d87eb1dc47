"""The monthly invoicing job and concurrent issuers: once per account and period,
numbers without gaps per issuer, whoever issues and however often."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.agents import invoice_job, invoices
from gateway.agents.context import ManagementContext
from gateway.config import Config
from gateway.runtime.app import ManagementJobs, Runtime
from tests import factories


async def _tree(conn: asyncpg.Connection, customers: int) -> tuple[int, list[int]]:
    """A transfer agent with ``customers`` customers, each with some balance."""
    group = await factories.rate_group(conn, [factories.rate(60_000)])
    agent = await factories.account(
        conn, kind="agent", mode="transfer", balance=10_000_000, rate_group_id=group
    )
    below = [
        await factories.account(
            conn, parent=agent, balance=1_000_000 * (n + 1), rate_group_id=group
        )
        for n in range(customers)
    ]
    return agent, below


def _seq(number: str) -> int:
    return int(number.rsplit("-", 1)[1])


async def _invoices(db_pool: asyncpg.Pool, accounts: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db_pool.fetch(
        "SELECT i.*, a.balance_micros FROM invoices i JOIN accounts a ON a.id = i.account_id "
        "WHERE i.account_id = ANY($1::bigint[]) ORDER BY i.id",
        accounts,
    )
    return rows


def _next_month(now: datetime) -> datetime:
    """A moment early in the month after ``now``'s, past the job's issue delay."""
    return invoices.month_start(invoices.month_start(now) + timedelta(days=32)) + timedelta(hours=1)


async def test_a_round_invoices_every_account_of_the_month_once(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        agent, customers = await _tree(conn, 3)
    # A round in the next month invoices this month: the one these accounts lived in.
    now = _next_month(datetime.now(UTC))
    first = await invoice_job.run(ctx, now, roots=[agent])
    assert (first.period_start, first.period_end) == invoices.previous_month(now)
    assert len(first.issued) == 4
    rows = await _invoices(db_pool, [agent, *customers])
    assert {r["account_id"] for r in rows} == {agent, *customers}
    # Nothing moved after the period: each closing balance is the account's balance.
    for row in rows:
        assert row["closing_balance_micros"] == row["balance_micros"], row["number"]
        assert row["opening_balance_micros"] == 0  # the accounts were born in the period
    # The customers' invoices are the agent's, numbered 1..3; the agent's the operator's.
    mine = sorted(_seq(r["number"]) for r in rows if r["issuer_account_id"] == agent)
    assert mine == [1, 2, 3]
    year = first.period_start.year
    assert all(r["number"].startswith(f"A{agent}-{year}-") for r in rows if r["issuer_account_id"])
    operator = [r for r in rows if r["issuer_account_id"] is None]
    assert [r["account_id"] for r in operator] == [agent]
    assert operator[0]["number"].startswith(f"OP-{year}-")
    # A restart, or the same round on another gateway: nothing more.
    again = await invoice_job.run(ctx, now, roots=[agent])
    assert again.issued == () and again.failed == 0
    assert len(await _invoices(db_pool, [agent, *customers])) == 4


async def test_a_month_waits_for_the_issue_delay(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        agent, _ = await _tree(conn, 1)
    boundary = invoices.month_start(_next_month(datetime.now(UTC)))
    early = await invoice_job.run(ctx, boundary + timedelta(seconds=30), roots=[agent])
    # 30 s into the month the delay (600 s) is not over: the round looks a month back,
    # before these accounts existed, and issues nothing.
    assert early.period_end < boundary and early.issued == ()
    late = await invoice_job.run(ctx, boundary + timedelta(seconds=601), roots=[agent])
    assert late.period_end == boundary and len(late.issued) == 2


@pytest.mark.parametrize("issuers", [2, 4])
async def test_concurrent_issuers_issue_once(
    ctx: ManagementContext, db_pool: asyncpg.Pool, issuers: int
) -> None:
    """Several gateways issuing the same account's period at once: one invoice, one
    number; the others get that invoice back."""
    async with db_pool.acquire() as conn:
        agent, (customer,) = await _tree(conn, 1)
        account = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", customer)
    start = invoices.month_start(datetime.now(UTC))
    end = datetime.now(UTC)

    async def one() -> invoices.Issued:
        async with db_pool.acquire() as conn:
            return await invoices.issue(conn, account, start, end, operator_prefix="OP")

    results = await asyncio.gather(*(one() for _ in range(issuers)))
    assert sum(r.created for r in results) == 1
    assert len({r.detail.invoice.number for r in results}) == 1
    assert results[0].detail.invoice.number == f"A{agent}-{start.year}-000001"
    counter = await db_pool.fetchval(
        "SELECT last_number FROM invoice_counters WHERE issuer_key = $1 AND year = $2",
        agent,
        start.year,
    )
    assert counter == 1


async def test_two_gateways_running_rounds_at_once_leave_no_gap(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        agent, customers = await _tree(conn, 8)
    now = _next_month(datetime.now(UTC))
    rounds = await asyncio.gather(*(invoice_job.run(ctx, now, roots=[agent]) for _ in range(2)))
    issued = [i for r in rounds for i in r.issued]
    assert len(issued) == len(set(issued)) == 9
    rows = await _invoices(db_pool, [agent, *customers])
    assert len(rows) == 9
    assert sorted(_seq(r["number"]) for r in rows if r["issuer_account_id"] == agent) == list(
        range(1, 9)
    )


async def test_a_failed_issue_gives_its_number_back(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    """An issue that fails after taking its number rolls the counter back with it."""
    async with db_pool.acquire() as conn:
        agent, (c1, c2) = await _tree(conn, 2)
        first = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", c1)
        second = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", c2)
    start, end = invoices.month_start(datetime.now(UTC)), datetime.now(UTC)
    async with db_pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await invoices.issue(conn, first, start, end, operator_prefix="OP")
                # Something later in the same transaction fails: the invoice and its
                # number go together.
                await conn.execute(
                    "INSERT INTO invoice_counters (issuer_key, year) VALUES ($1, $2)",
                    agent,
                    start.year,
                )
        done = await invoices.issue(conn, second, start, end, operator_prefix="OP")
    assert done.detail.invoice.number == f"A{agent}-{start.year}-000001"


async def test_management_jobs_run_the_invoicing_job(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    # A delay of ~30 years: the round looks at a month no account of the shared
    # database lived in, so it runs and issues nothing.
    late = dataclasses.replace(config.invoices, issue_delay_s=30 * 365 * 86400.0)
    off = dataclasses.replace(config.dormancy, enabled=False)
    no_charges = dataclasses.replace(config.recurring, enabled=False)
    no_watch = dataclasses.replace(config.low_balance, enabled=False)
    runtime = Runtime(
        dataclasses.replace(
            config, dormancy=off, invoices=late, recurring=no_charges, low_balance=no_watch
        )
    )
    runtime.db, runtime.redis = db_pool, redis_client
    jobs = ManagementJobs(runtime)
    await jobs.start()
    try:
        assert [j.name for j in jobs.jobs] == ["invoices"]
    finally:
        await jobs.stop()
    assert jobs.jobs == [] and jobs.ctx is None


async def test_a_round_invoices_the_rest_of_a_month_invoiced_on_demand(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        agent, (customer,) = await _tree(conn, 1)
        account = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", customer)
        # Someone invoiced this month up to now already.
        now = datetime.now(UTC)
        start = invoices.month_start(now)
        early = await invoices.issue(conn, account, start, now, operator_prefix="OP")
    round_at = _next_month(now)
    result = await invoice_job.run(ctx, round_at, roots=[agent])
    assert len(result.issued) == 2 and result.failed == 0  # the agent's, and the rest
    rows = await _invoices(db_pool, [customer])
    assert [(r["period_start"], r["period_end"]) for r in rows] == [
        (start, now),
        (now, result.period_end),
    ]
    assert rows[1]["opening_balance_micros"] == early.detail.invoice.closing_balance_micros
    assert [_seq(r["number"]) for r in rows] == [1, 2]
    again = await invoice_job.run(ctx, round_at, roots=[agent])
    assert again.issued == () and again.failed == 0
