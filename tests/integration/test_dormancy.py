"""The dormancy job on the real database and Redis, with an injected clock.

Each test builds its own tree (agent > sub-agent > customer), backdates it, and runs
rounds limited to that tree (``roots``), so the rest of the shared database is left
alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from gateway.agents import dormancy
from gateway.agents.context import ManagementContext
from gateway.balance.moves import MoneyMove, Posting, move_money
from gateway.config import Config
from gateway.runtime.app import ManagementJobs, Runtime
from tests import factories

_seq = itertools.count(1)


@dataclass(frozen=True)
class Tree:
    agent: int
    sub: int
    customer: int
    emails: tuple[str, ...]


async def _tree(pool: asyncpg.Pool, silent_days: int) -> Tree:
    """A tree created ``silent_days`` ago that never called."""
    n = next(_seq)
    tag = f"{n}x{id(pool) % 10_000}"
    async with pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode="transfer")
        sub = await factories.account(conn, kind="agent", mode="transfer", parent=agent)
        customer = await factories.account(conn, parent=sub)
        contacts = [f"owner-{tag}@example.test", f"Billing-{tag}@example.test"]
        await conn.execute(
            "UPDATE accounts SET contact_emails = $2, "
            "created_at = now() - make_interval(days => $3) "
            "WHERE root_id = $1",
            agent,
            [*contacts, "not-an-address", f"owner-{tag}@EXAMPLE.test"],
            silent_days,
        )
        await conn.execute(
            "INSERT INTO users (login, password_hash, role, account_id, email) "
            "VALUES ($1, '$argon2id$x', 'agent', $2, $3)",
            f"dormant-{tag}",
            agent,
            f"user-{tag}@example.test",
        )
    return Tree(agent, sub, customer, (*contacts, f"user-{tag}@example.test"))


async def _account(pool: asyncpg.Pool, account_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)
    assert row is not None
    return row


async def _outbox(pool: asyncpg.Pool, kind: str, account_id: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM notification_outbox WHERE kind = $1 AND dedupe_key LIKE $2 "
            "ORDER BY recipient",
            kind,
            f"{kind}:{account_id}:%",
        )


def _now() -> datetime:
    return datetime.now(UTC)


async def test_silent_tree_is_disabled_and_notified_once(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    now = _now()
    result = await dormancy.run(ctx, now, roots=[tree.agent])
    assert result is not None
    assert set(result.disabled) == {tree.agent, tree.sub}
    agent = await _account(db_pool, tree.agent)
    assert agent["status"] == "disabled"
    assert agent["disabled_reason"] == "dormancy"
    assert agent["disabled_at"] == now
    # The customer itself stays active: its agent's status stops its calls.
    assert (await _account(db_pool, tree.customer))["status"] == "active"

    mails = await _outbox(db_pool, "dormancy-disabled", tree.agent)
    # Invalid addresses are skipped, the same address in two cases is written once.
    assert sorted(m["recipient"].lower() for m in mails) == sorted(e.lower() for e in tree.emails)
    assert all(m["sent_at"] is None and m["attempts"] == 0 for m in mails)
    assert "disabled" in mails[0]["subject"]
    assert "refill" in mails[0]["body"]

    again = await dormancy.run(ctx, now + timedelta(minutes=1), roots=[tree.agent])
    assert again == dormancy.DormancyResult()
    assert len(await _outbox(db_pool, "dormancy-disabled", tree.agent)) == len(tree.emails)


async def test_recent_tree_or_recent_call_is_not_dormant(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    young = await _tree(db_pool, silent_days=119)
    calling = await _tree(db_pool, silent_days=400)
    now = _now()
    async with db_pool.acquire() as conn:
        # A call by the customer deep in the tree keeps every agent above it alive.
        await conn.execute(
            "UPDATE accounts SET last_call_at = $2 WHERE id = $1",
            calling.customer,
            now - timedelta(days=10),
        )
    result = await dormancy.run(ctx, now, roots=[young.agent, calling.agent])
    assert result == dormancy.DormancyResult()
    later = await dormancy.run(ctx, now + timedelta(days=2), roots=[young.agent])
    assert later is not None and set(later.disabled) == {young.agent, young.sub}


async def test_call_after_disable_reactivates(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    now = _now()
    await dormancy.run(ctx, now, roots=[tree.agent])
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE accounts SET last_call_at = $2 WHERE id = $1",
            tree.customer,
            now + timedelta(minutes=1),
        )
    later = now + timedelta(minutes=2)
    result = await dormancy.run(ctx, later, roots=[tree.agent])
    assert result is not None
    assert set(result.reactivated) == {tree.agent, tree.sub}
    agent = await _account(db_pool, tree.agent)
    assert agent["status"] == "active"
    assert agent["disabled_reason"] == ""
    assert agent["disabled_at"] is None
    assert agent["reactivated_at"] == later


async def test_refill_reactivates_only_the_credited_agent_and_gives_a_new_period(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    now = _now() - timedelta(seconds=5)  # the refill below is booked at the database's now()
    await dormancy.run(ctx, now, roots=[tree.agent])
    await move_money(
        ctx.pool,
        ctx.pipeliner,
        ctx.keys,
        MoneyMove("refill", f"test-dormancy-{tree.agent}", (Posting(tree.agent, 1_000_000),)),
    )
    result = await dormancy.run(ctx, _now(), roots=[tree.agent])
    assert result is not None
    assert result.reactivated == (tree.agent,)
    assert (await _account(db_pool, tree.sub))["status"] == "disabled"
    # Its last call is still 121 days old, but the re-activation starts a new period.
    soon = await dormancy.run(ctx, _now() + timedelta(days=119), roots=[tree.agent])
    assert soon is not None and tree.agent not in soon.disabled
    late = await dormancy.run(ctx, _now() + timedelta(days=121), roots=[tree.agent])
    assert late is not None and tree.agent in late.disabled


async def test_reactivate_on_none_keeps_refilled_agent_disabled_but_not_removed(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    ctx.config = dataclasses.replace(
        ctx.config, dormancy=dataclasses.replace(ctx.config.dormancy, reactivate_on=())
    )
    tree = await _tree(db_pool, silent_days=121)
    now = _now() - timedelta(seconds=5)
    await dormancy.run(ctx, now, roots=[tree.agent])
    mails = await _outbox(db_pool, "dormancy-disabled", tree.agent)
    assert "Contact the operator" in mails[0]["body"]
    await move_money(
        ctx.pool,
        ctx.pipeliner,
        ctx.keys,
        MoneyMove("refill", f"test-dormancy-{tree.agent}", (Posting(tree.agent, 1_000_000),)),
    )
    result = await dormancy.run(ctx, now + timedelta(days=31), roots=[tree.agent])
    assert result is not None
    assert result.reactivated == ()
    # Someone paid into it: the job leaves it to the operator rather than remove it.
    assert result.removed == (tree.sub,)
    assert (await _account(db_pool, tree.agent))["status"] == "disabled"


async def test_still_silent_after_the_grace_period_is_removed(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    now = _now()
    await dormancy.run(ctx, now, roots=[tree.agent])
    early = await dormancy.run(ctx, now + timedelta(days=29), roots=[tree.agent])
    assert early == dormancy.DormancyResult()
    removal = now + timedelta(days=30, hours=1)
    result = await dormancy.run(ctx, removal, roots=[tree.agent])
    assert result is not None
    assert set(result.removed) == {tree.agent, tree.sub}
    agent = await _account(db_pool, tree.agent)
    assert agent["status"] == "removed"
    assert agent["removed_at"] == removal
    assert agent["disabled_reason"] == "dormancy"  # why it went, kept for the record
    notices = await _outbox(db_pool, "dormancy-removed", tree.agent)
    assert len(notices) == len(tree.emails)
    # Removed is final for the job: nothing re-activates it.
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE accounts SET last_call_at = $2 WHERE id = $1", tree.agent, removal
        )
    after = await dormancy.run(ctx, removal + timedelta(days=1), roots=[tree.agent])
    assert after == dormancy.DormancyResult()


async def test_manually_disabled_agent_is_left_alone(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE accounts SET status = 'disabled', disabled_reason = 'manual', "
            "disabled_at = now() - interval '60 days' WHERE id = $1",
            tree.agent,
        )
        await conn.execute("UPDATE accounts SET last_call_at = now() WHERE id = $1", tree.customer)
    result = await dormancy.run(ctx, _now() + timedelta(minutes=1), roots=[tree.agent])
    assert result == dormancy.DormancyResult()
    assert (await _account(db_pool, tree.agent))["disabled_reason"] == "manual"


async def test_manual_reactivation_is_stamped_by_the_trigger(db_pool: asyncpg.Pool) -> None:
    tree = await _tree(db_pool, silent_days=121)
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", tree.agent)
        assert (await _account(db_pool, tree.agent))["reactivated_at"] is None
        await conn.execute("UPDATE accounts SET status = 'active' WHERE id = $1", tree.agent)
    assert (await _account(db_pool, tree.agent))["reactivated_at"] is not None


async def test_two_concurrent_rounds_act_once(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    now = _now()
    results = await asyncio.gather(
        dormancy.run(ctx, now, roots=[tree.agent]), dormancy.run(ctx, now, roots=[tree.agent])
    )
    acted = [r for r in results if r is not None and r.disabled]
    assert len(acted) == 1
    assert None in results  # the other found the lock taken
    assert len(await _outbox(db_pool, "dormancy-disabled", tree.agent)) == len(tree.emails)
    # The lock was released by its holder.
    assert await ctx.redis.get(ctx.keys.lock(dormancy.LOCK_NAME)) is None


async def test_lock_held_elsewhere_is_neither_used_nor_released(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, silent_days=121)
    key = ctx.keys.lock(dormancy.LOCK_NAME)
    await ctx.redis.set(key, "someone-else", px=60_000)
    try:
        assert await dormancy.run(ctx, _now(), roots=[tree.agent]) is None
        assert (await _account(db_pool, tree.agent))["status"] == "active"
        assert await ctx.redis.get(key) == b"someone-else"
    finally:
        await ctx.redis.delete(key)
    done = await dormancy.run(ctx, _now(), roots=[tree.agent])
    assert done is not None and tree.agent in done.disabled


def _runs(outcome: str) -> float:
    value = REGISTRY.get_sample_value("gateway_dormancy_runs_total", {"outcome": outcome})
    return value or 0.0


async def test_management_jobs_run_dormancy_and_stop_cleanly(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    # Periods no account of the shared database can reach: the round runs, changes nothing.
    quiet = dataclasses.replace(
        config.dormancy, disable_after_days=100_000, remove_after_days=100_000
    )
    no_invoices = dataclasses.replace(config.invoices, enabled=False)
    runtime = Runtime(dataclasses.replace(config, dormancy=quiet, invoices=no_invoices))
    runtime.db, runtime.redis = db_pool, redis_client
    before = _runs("acted")
    jobs = ManagementJobs(runtime)
    await jobs.start()
    try:
        # No SMTP host: no outbox sender; the charge job and the low-balance watch run too.
        assert [j.name for j in jobs.jobs] == ["dormancy", "recurring", "low-balance"]
        for _ in range(100):
            if _runs("acted") > before:
                break
            await asyncio.sleep(0.05)
        assert _runs("acted") == before + 1
    finally:
        await jobs.stop()
    assert jobs.jobs == []


async def test_management_jobs_disabled_dormancy_starts_nothing(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    off = dataclasses.replace(config.dormancy, enabled=False)
    no_invoices = dataclasses.replace(config.invoices, enabled=False)
    no_charges = dataclasses.replace(config.recurring, enabled=False)
    for watch, names in ((True, ["low-balance"]), (False, [])):
        care = dataclasses.replace(config.low_balance, enabled=watch)
        runtime = Runtime(
            dataclasses.replace(
                config, dormancy=off, invoices=no_invoices, recurring=no_charges, low_balance=care
            )
        )
        runtime.db, runtime.redis = db_pool, redis_client
        jobs = ManagementJobs(runtime)
        await jobs.start()
        assert [j.name for j in jobs.jobs] == names
        await jobs.stop()
        assert jobs.ctx is None
