"""Spend caps and call-attempt rates (call rules) in the reservation's atomic step, on
a real Redis: the grant keeps every level under every cap, what live calls hold counts,
settled calls count in their window, and concurrent reservations never pass a cap."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.core.reasons import Reason, Refusal
from tests import factories
from tests.factories import Tree


async def _rules(db_pool: asyncpg.Pool, account: int, **values: int) -> None:
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(2, len(values) + 2))
    await db_pool.execute(
        f"INSERT INTO call_rules (account_id, {columns}) VALUES ($1, {marks})",
        account,
        *values.values(),
    )


async def _tree(db_pool: asyncpg.Pool, customer_balance: int = 100_000_000) -> Tree:
    async with db_pool.acquire() as conn:
        return await factories.tree(
            conn,
            customer_balance=customer_balance,
            sub_balance=10**9,
            top_balance=10**9,
        )


async def _reserve(
    balance: Balance, tree: Tree, session: str, *, slice_mode: bool = False
) -> Grant | Refusal:
    ref = SessionRef(tree.top, f"nas|{session}|")
    return await balance.reserve(ref, tree.chain(), factories.meta(session), slice_mode=slice_mode)


async def _held(balance: Balance, tree: Tree, account: int) -> int:
    raw = await balance.pipeliner.client.hget(balance.store.keys.account(tree.top, account), "held")
    return int(raw or 0)


async def test_an_hourly_cap_limits_the_grant_and_counts_what_is_held(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool)
    await _rules(db_pool, tree.customer, max_spend_hour_micros=300_000)  # 5 min at 0.06
    first = await _reserve(balance, tree, "cap-1")
    assert isinstance(first, Grant) and first.granted_s == 300  # balance alone: 3600
    second = await _reserve(balance, tree, "cap-2")
    assert isinstance(second, Refusal) and second.reason == Reason.SPEND_CAP_HOUR
    assert second.level == 0
    # Settled at 61 s (0.12 spent): the hour has 0.18 left for the next call.
    ref = SessionRef(tree.top, "nas|cap-1|")
    await balance.store.answered(ref, answered_at=1_000)
    settled = await balance.store.settle(ref, 61, CallEnd(disconnect_at=1_061, cause="16"))
    assert settled.costs_micros[0] == 120_000
    third = await _reserve(balance, tree, "cap-3")
    assert isinstance(third, Grant) and third.granted_s == 180


async def test_an_agents_daily_cap_binds_its_whole_subtree(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool)
    # The top agent pays 0.03/min: 0.09 a day is three minutes of its customers' calls.
    await _rules(db_pool, tree.top, max_spend_day_micros=90_000)
    first = await _reserve(balance, tree, "day-1")
    assert isinstance(first, Grant) and first.granted_s == 180
    refused = await _reserve(balance, tree, "day-2")
    assert isinstance(refused, Refusal)
    assert (refused.reason, refused.level, refused.account_id) == (
        Reason.SPEND_CAP_DAY,
        2,
        tree.top,
    )


async def test_a_per_call_cap_limits_each_call_not_the_sum(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool)
    await _rules(db_pool, tree.customer, max_spend_call_micros=120_000)  # two minutes
    grants = [await _reserve(balance, tree, f"call-{i}") for i in range(3)]
    assert [g.granted_s for g in grants if isinstance(g, Grant)] == [120, 120, 120]
    other = await _tree(db_pool)
    await _rules(db_pool, other.customer, max_spend_call_micros=59_999)  # not one minute
    refused = await _reserve(balance, other, "call-x")
    assert isinstance(refused, Refusal) and refused.reason == Reason.SPEND_CAP_CALL


async def test_no_rules_no_change(balance: Balance, db_pool: asyncpg.Pool) -> None:
    tree = await _tree(db_pool, customer_balance=10_000_000)
    grant = await _reserve(balance, tree, "plain")
    assert isinstance(grant, Grant) and grant.granted_s == 3600


@pytest.mark.parametrize("slice_mode", [False, True], ids=["whole", "slice"])
async def test_a_thousand_concurrent_authorizations_never_pass_an_hourly_cap(
    balance: Balance, db_pool: asyncpg.Pool, slice_mode: bool
) -> None:
    tree = await _tree(db_pool)
    cap = 6_000_000  # 100 minutes at 0.06
    await _rules(db_pool, tree.customer, max_spend_hour_micros=cap)
    await balance.mirror.load(tree.chain().account_ids)
    results = await asyncio.gather(
        *(_reserve(balance, tree, f"burst-{i}", slice_mode=slice_mode) for i in range(1000))
    )
    grants = [r for r in results if isinstance(r, Grant)]
    refusals = {r.reason for r in results if isinstance(r, Refusal)}
    held = await _held(balance, tree, tree.customer)
    assert held == sum(g.holds_micros[0] for g in grants)
    assert held <= cap
    assert refusals == {Reason.SPEND_CAP_HOUR}
    # Every minute of the cap went to some call: nothing left for one more minute.
    assert cap - held < 60_000
    if slice_mode:
        assert len(grants) == 100  # one 60 s slice (0.06) each


async def test_call_attempts_per_second_of_an_agents_subtree(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool)
    await _rules(db_pool, tree.sub, max_attempts_per_s=3)
    await balance.mirror.load(tree.chain().account_ids)
    client = balance.pipeliner.client
    for attempt in range(5):  # within one second of Redis time (retried at a boundary)
        before = (await client.time())[0]
        results = await asyncio.gather(
            *(_reserve(balance, tree, f"cps-{attempt}-{i}") for i in range(5))
        )
        if (await client.time())[0] == before:
            break
        await asyncio.sleep(1.0)
    else:
        pytest.fail("could not run five attempts within one second")
    accepted = [r for r in results if isinstance(r, Grant)]
    refused = [r for r in results if isinstance(r, Refusal)]
    assert len(accepted) == 3
    assert {(r.reason, r.account_id) for r in refused} == {(Reason.CPS_LIMIT, tree.sub)}


async def test_spend_leaves_the_hour_window_bucket_by_bucket(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    """Spend written 60-65 minutes ago still counts (a bucket counts whole); spend of
    its bucket's predecessor has left the window and no longer does."""
    tree = await _tree(db_pool)
    await _rules(db_pool, tree.customer, max_spend_hour_micros=600_000)  # 10 min at 0.06
    await balance.mirror.load(tree.chain().account_ids)
    client = balance.pipeliner.client
    key = balance.store.keys.account(tree.top, tree.customer)
    now = int((await client.time())[0])
    if now % 300 > 295:  # not at a bucket's edge: the reservation must see this bucket
        await asyncio.sleep(300 - now % 300 + 0.1)
        now = int((await client.time())[0])
    current = now // 300
    gone, kept = current - 12, current - 11  # 60-65 min ago, 55-60 min ago
    await client.hset(
        key,
        mapping={
            f"sh{gone % 12}": 240_000,
            f"sht{gone % 12}": gone,
            f"sh{kept % 12}": 120_000,
            f"sht{kept % 12}": kept,
            "shsum": 360_000,
            "shat": current - 1,  # last brought up to date in the previous bucket
        },
    )
    grant = await _reserve(balance, tree, "window-1")
    # 0.24 left the window; 0.12 is still in it: 0.48 of room, 8 minutes.
    assert isinstance(grant, Grant) and grant.granted_s == 480
    assert int(await client.hget(key, "shsum") or 0) == 120_000
