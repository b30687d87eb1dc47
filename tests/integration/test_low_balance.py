"""Low-balance care on the real database and Redis: notices once per crossing, re-arm
above the threshold, two gateways racing, auto-refills and their refusals.

Rounds act on every account of the run's database that has a threshold, so each test
looks only at the accounts it built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.agents import low_balance
from gateway.agents.context import ManagementContext
from gateway.agents.low_balance import RoundResult, refill_key, run_round
from gateway.balance.keys import Keys
from gateway.balance.moves import MoneyMove, Posting, move_money
from gateway.config import Config
from tests import factories

UNIT = 1_000_000
ROOT = Path(__file__).resolve().parents[2]
HOOK = "http://hooks.example.test/low-balance"
_seq = itertools.count(1)


@dataclass(frozen=True)
class Pair:
    agent: int
    customer: int
    emails: tuple[str, str]


@pytest.fixture
async def care(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> AsyncIterator[ManagementContext]:
    """A management context whose alerts go to a webhook too."""
    alerts = dataclasses.replace(config.alerts, webhook_url=HOOK)
    context = ManagementContext.create(
        dataclasses.replace(config, alerts=alerts), db_pool, redis_client, keys
    )
    await context.start()
    yield context
    await context.close()


async def _pair(
    pool: asyncpg.Pool,
    *,
    balance: int,
    threshold: int,
    agent_balance: int = 100 * UNIT,
    mode: str = "transfer",
    refill: int = 0,
    monthly: int = 0,
) -> Pair:
    tag = f"{next(_seq)}x{id(pool) % 10_000}"
    emails = (f"customer-{tag}@example.test", f"agent-{tag}@example.test")
    async with pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode=mode, balance=agent_balance)
        customer = await factories.account(conn, parent=agent, balance=balance)
        await conn.execute(
            "UPDATE accounts SET contact_emails = $2 WHERE id = $1", customer, [emails[0]]
        )
        await conn.execute(
            "UPDATE accounts SET contact_emails = $2 WHERE id = $1", agent, [emails[1]]
        )
        await conn.execute(
            "UPDATE accounts SET low_balance_threshold_micros = $2, auto_refill_micros = $3, "
            "auto_refill_monthly_limit_micros = $4 WHERE id = $1",
            customer,
            threshold,
            refill,
            monthly,
        )
    return Pair(agent, customer, emails)


async def _spend(ctx: ManagementContext, account: int, amount: int, key: str) -> None:
    """Take ``amount`` off the account (as calls would), through the ledger."""
    move = MoneyMove("adjustment", key, (Posting(account, -amount),))
    await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)


async def _refill(ctx: ManagementContext, account: int, amount: int, key: str) -> None:
    move = MoneyMove("refill", key, (Posting(account, amount),))
    await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)


async def _notices(pool: asyncpg.Pool, account: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT channel, recipient, body, dedupe_key FROM notification_outbox "
        "WHERE kind = 'low_balance' AND dedupe_key LIKE $1 ORDER BY id",
        f"low-balance:{account}:%",
    )


async def _balance(pool: asyncpg.Pool, account: int) -> int:
    return int(await pool.fetchval("SELECT balance_micros FROM accounts WHERE id = $1", account))


def _crossed(result: RoundResult, account: int) -> list[int]:
    return [c.crossing for c in result.crossed if c.account_id == account]


def _refills(result: RoundResult, account: int) -> list[low_balance.Refill]:
    return [r for r in result.refills if r.account_id == account]


async def test_a_crossing_notifies_once_and_rearms_above_the_threshold(
    care: ManagementContext,
) -> None:
    pair = await _pair(care.pool, balance=10 * UNIT, threshold=5 * UNIT)
    c = pair.customer
    assert _crossed(await run_round(care), c) == []  # above: nothing
    await _spend(care, c, 6 * UNIT, f"lb-spend-{c}-1")
    first = await run_round(care)
    assert _crossed(first, c) == [1]
    crossing = next(x for x in first.crossed if x.account_id == c)
    assert crossing.available_micros == 4 * UNIT and crossing.threshold_micros == 5 * UNIT
    notices = await _notices(care.pool, c)
    assert sorted((n["channel"], n["recipient"]) for n in notices) == sorted(
        [("mail", pair.emails[0]), ("mail", pair.emails[1]), ("webhook", HOOK)]
    )
    hook = json.loads(next(n["body"] for n in notices if n["channel"] == "webhook"))
    assert hook["event"] == "account.low_balance" and hook["account_id"] == c
    assert hook["available_micros"] == 4 * UNIT and hook["threshold_micros"] == 5 * UNIT
    assert hook["crossing"] == 1 and hook["agent_id"] == pair.agent
    # Still below, spending more: no second notice for the same crossing.
    await _spend(care, c, 1 * UNIT, f"lb-spend-{c}-2")
    again = await run_round(care)
    assert _crossed(again, c) == [] and c not in again.rearmed
    assert len(await _notices(care.pool, c)) == 3
    # A refill above the threshold re-arms; the next fall is a new crossing.
    await _refill(care, c, 10 * UNIT, f"lb-refill-{c}-1")
    assert c in (await run_round(care)).rearmed
    await _spend(care, c, 9 * UNIT, f"lb-spend-{c}-3")
    assert _crossed(await run_round(care), c) == [2]
    notices = await _notices(care.pool, c)
    assert len(notices) == 6
    assert sum(n["channel"] == "webhook" for n in notices) == 2
    state = await care.pool.fetchrow("SELECT * FROM low_balance_state WHERE account_id = $1", c)
    assert state["below"] and state["crossings"] == 2 and not state["refill_due"]


async def test_two_gateways_racing_act_once_per_crossing(
    care: ManagementContext, config: Config, database_url: str, redis_client: aioredis.Redis
) -> None:
    """Two checkers on their own PostgreSQL connections (as two gateways), started at
    the same moment, over several crossings of many accounts: each crossing is claimed
    by one, notified once, refilled once."""
    other_pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    other = ManagementContext.create(care.config, other_pool, redis_client, care.keys)
    await other.start()
    try:
        pairs = [
            await _pair(
                care.pool,
                balance=10 * UNIT,
                threshold=5 * UNIT,
                agent_balance=1000 * UNIT,
                refill=2 * UNIT,
                monthly=100 * UNIT,
            )
            for _ in range(12)
        ]
        for cycle in range(3):
            for p in pairs:
                await _spend(care, p.customer, 6 * UNIT, f"lb-race-{p.customer}-{cycle}")
            results = await asyncio.gather(*(run_round(g) for g in (care, other, care, other)))
            for p in pairs:
                claims = [n for r in results for n in _crossed(r, p.customer)]
                assert claims == [cycle + 1], (p.customer, cycle, claims)
                refills = [x for r in results for x in _refills(r, p.customer)]
                assert [x.status for x in refills] == ["moved"], refills
            # The refill took each from 4 back to 6, above 5: a round re-arms them,
            # whoever runs it (one of the racing rounds, if it came late), once; a
            # top-up brings them back to 10.
            rearm = await asyncio.gather(run_round(care), run_round(other))
            for p in pairs:
                assert sum(p.customer in r.rearmed for r in (*results, *rearm)) == 1
                await _refill(care, p.customer, 4 * UNIT, f"lb-race-top-{p.customer}-{cycle}")
        for p in pairs:
            notices = await _notices(care.pool, p.customer)
            assert sum(n["channel"] == "webhook" for n in notices) == 3
            assert sum(n["channel"] == "mail" for n in notices) == 6
            moved = await care.pool.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND kind = 'transfer'",
                p.customer,
            )
            assert moved == 3
            # 10 - 3 * 6 spent + 3 * 2 refilled + 3 * 4 topped up.
            assert await _balance(care.pool, p.customer) == 10 * UNIT
    finally:
        await other.close()
        await other_pool.close()


async def test_auto_refill_moves_from_the_parent_up_to_the_monthly_limit(
    care: ManagementContext,
) -> None:
    pair = await _pair(
        care.pool,
        balance=6 * UNIT,
        threshold=5 * UNIT,
        agent_balance=100 * UNIT,
        refill=20 * UNIT,
        monthly=50 * UNIT,
    )
    c, agent = pair.customer, pair.agent
    statuses = []
    for n in range(3):
        balance = await _balance(care.pool, c)
        await _spend(care, c, balance - 1 * UNIT, f"lb-auto-{c}-{n}")  # down to 1
        result = await run_round(care)
        assert _crossed(result, c) == [n + 1]
        statuses += [r.status for r in _refills(result, c)]
        await run_round(care)  # re-arms when refilled
    assert statuses == ["moved", "moved", "limit_reached"]
    assert await _balance(care.pool, agent) == 60 * UNIT  # 100 - 2 * 20
    assert await _balance(care.pool, c) == 1 * UNIT  # the third was refused
    state = await care.pool.fetchrow("SELECT * FROM low_balance_state WHERE account_id = $1", c)
    assert state["refill_status"] == "limit_reached" and state["below"]
    assert "monthly limit 50" in state["refill_detail"]
    entry = await care.pool.fetchrow(
        "SELECT amount_micros, counterparty_account_id FROM ledger_entries "
        "WHERE idempotency_key = $1",
        f"{refill_key(c, 1)}#1",
    )
    assert entry["amount_micros"] == 20 * UNIT and entry["counterparty_account_id"] == agent
    async with care.pool.acquire() as conn:
        assert await low_balance.refilled_this_month(conn, c, state["refill_at"]) == 40 * UNIT


async def test_a_parent_short_of_funds_is_skipped_with_its_reason(
    care: ManagementContext,
) -> None:
    pair = await _pair(
        care.pool,
        balance=4 * UNIT,
        threshold=5 * UNIT,
        agent_balance=3 * UNIT,
        refill=10 * UNIT,
        monthly=30 * UNIT,
    )
    result = await run_round(care)
    [refused] = _refills(result, pair.customer)
    assert refused.status == "no_funds" and "INSUFFICIENT_FUNDS" in refused.detail
    assert await _balance(care.pool, pair.agent) == 3 * UNIT
    assert await _balance(care.pool, pair.customer) == 4 * UNIT
    # Not tried again for the same crossing.
    assert _refills(await run_round(care), pair.customer) == []


async def test_a_parent_no_longer_in_transfer_mode_is_skipped(care: ManagementContext) -> None:
    pair = await _pair(
        care.pool, balance=4 * UNIT, threshold=5 * UNIT, refill=10 * UNIT, monthly=30 * UNIT
    )
    await care.pool.execute(
        "UPDATE accounts SET billing_mode = 'wholesale' WHERE id = $1", pair.agent
    )
    [refused] = _refills(await run_round(care), pair.customer)
    assert refused.status == "not_transfer_mode"
    assert await _balance(care.pool, pair.customer) == 4 * UNIT


async def test_a_refill_retried_after_a_crash_moves_the_money_once(
    care: ManagementContext,
) -> None:
    """A gateway that moved the money and died before recording it: the crossing is
    still due, the next round books the same key and finds it booked (the monthly limit,
    one refill here, does not count that refill twice)."""
    pair = await _pair(
        care.pool, balance=4 * UNIT, threshold=5 * UNIT, refill=10 * UNIT, monthly=10 * UNIT
    )
    c = pair.customer
    _, crossed = await low_balance.claim_crossings(care.pool, care.config.alerts, datetime.now(UTC))
    assert [x.crossing for x in crossed if x.account_id == c] == [1]
    move = MoneyMove(
        "transfer", refill_key(c, 1), (Posting(pair.agent, -10 * UNIT), Posting(c, 10 * UNIT))
    )
    await move_money(care.pool, care.pipeliner, care.keys, move)  # ... and the crash
    [done] = _refills(await run_round(care), c)
    assert done.status == "moved" and done.detail == "moved before (retry)"
    assert await _balance(care.pool, c) == 14 * UNIT
    assert await _balance(care.pool, pair.agent) == 90 * UNIT


async def _watcher(env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.low_balance_proc",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line
    return proc


async def _wait_state(pool: asyncpg.Pool, ids: list[int], below: bool, crossings: int) -> None:
    for _ in range(500):
        n = await pool.fetchval(
            "SELECT count(*) FROM low_balance_state WHERE account_id = ANY($1::bigint[]) "
            "AND below = $2 AND crossings = $3 AND NOT refill_due",
            ids,
            below,
            crossings,
        )
        if n == len(ids):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the watchers did not reach below={below} crossings={crossings} in 10 s")


async def test_two_gateway_processes_act_once_per_crossing(
    care: ManagementContext, database_url: str, redis_url: str
) -> None:
    """Two watcher processes running rounds back to back while the accounts fall
    below, get refilled and are topped up again: every crossing is claimed by one of
    them, notified once and refilled once."""
    pairs = [
        await _pair(
            care.pool,
            balance=10 * UNIT,
            threshold=5 * UNIT,
            agent_balance=1000 * UNIT,
            refill=2 * UNIT,
            monthly=100 * UNIT,
        )
        for _ in range(8)
    ]
    ids = [p.customer for p in pairs]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GW_DB_URL": database_url,
        "GW_REDIS_URL": redis_url,
        "GW_PREFIX": care.keys.prefix,
        "GW_WEBHOOK": HOOK,
    }
    procs = [await _watcher(env), await _watcher(env)]
    try:
        cycles = 4
        for cycle in range(cycles):
            await asyncio.gather(*(_spend(care, c, 6 * UNIT, f"lb-procs-{c}-{cycle}") for c in ids))
            # Refilled from 4 to 6 (above 5) and re-armed by one of them.
            await _wait_state(care.pool, ids, False, cycle + 1)
            for c in ids:
                await _refill(care, c, 4 * UNIT, f"lb-procs-top-{c}-{cycle}")
    finally:
        reports = []
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    mine = set(ids)
    claims = sorted((a, n) for report in reports for a, n in report["crossed"] if a in mine)
    assert claims == sorted((c, n) for c in ids for n in range(1, cycles + 1))
    refills = sorted(
        (a, n, status) for report in reports for a, n, status in report["refills"] if a in mine
    )
    assert refills == sorted((c, n, "moved") for c in ids for n in range(1, cycles + 1))
    for c in ids:
        notices = await _notices(care.pool, c)
        assert sum(n["channel"] == "webhook" for n in notices) == cycles
        moved = await care.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND kind = 'transfer'", c
        )
        assert moved == cycles
        assert await _balance(care.pool, c) == 10 * UNIT
