"""Orphans: a call whose Stop never comes is ended by the sweeper, once."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.sweeper import Sweeper
from gateway.balance.types import Grant
from gateway.config import BalanceConfig
from gateway.settlement.entry import SettlementEntry
from tests import factories
from tests.conftest import MakeBalance


async def test_orphans_are_settled_at_grant_or_released(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=180_000, sub_balance=10**9, top_balance=10**9
        )
        other = await factories.tree(
            conn, customer_balance=180_000, sub_balance=10**9, top_balance=10**9
        )
    chain = tree.chain()
    answered = SessionRef(tree.top, "orphan-answered")
    unanswered = SessionRef(other.top, "orphan-unanswered")
    grant = await balance.reserve(answered, chain, factories.meta("orphan-answered"))
    assert isinstance(grant, Grant) and grant.granted_s == 180
    await balance.store.answered(answered, answered_at=time.time())
    assert isinstance(
        await balance.reserve(unanswered, other.chain(), factories.meta("orphan-unanswered")),
        Grant,
    )

    assert await balance.sweeper.sweep() == 0  # nothing overdue yet
    later = time.time() + 180 + balance.store.config.hold_margin_s + 1
    assert await balance.sweeper.sweep(now=later) == 2
    assert await balance.sweeper.sweep(now=later) == 0
    assert (balance.sweeper.settled, balance.sweeper.released) == (1, 1)
    assert await balance.store.session_state(answered) == "settled"
    assert await balance.store.session_state(unanswered) == "released"

    client = balance.pipeliner.client
    stream = balance.store.keys.settlements(balance.store.keys.shard_of(tree.top))
    entries = await client.xrange(stream)
    assert len(entries) == 1
    entry = SettlementEntry.from_json(entries[0][1][b"s"])
    assert entry.duration_s == 180 and entry.end.cause == "orphan-swept"
    account = await client.hgetall(balance.store.keys.account(tree.top, tree.customer))
    assert (account[b"bal"], account[b"held"], account[b"calls"]) == (b"0", b"0", b"0")


async def test_release_policy_charges_nothing(
    redis_client: aioredis.Redis, db_pool: asyncpg.Pool, keys: Keys, make_balance: MakeBalance
) -> None:
    service = await make_balance(BalanceConfig(orphan_policy="release"))
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=600_000, sub_balance=10**9, top_balance=10**9
        )
    ref = SessionRef(tree.top, "free-orphan")
    grant = await service.reserve(ref, tree.chain(), factories.meta("free-orphan"))
    assert isinstance(grant, Grant)
    await service.store.answered(ref, answered_at=time.time())
    sweeper = Sweeper(service.store)
    assert await sweeper.sweep(now=time.time() + grant.granted_s + 10_000) == 1
    assert await service.store.session_state(ref) == "released"
    account = await redis_client.hgetall(keys.account(tree.top, tree.customer))
    assert (account[b"bal"], account[b"held"]) == (b"600000", b"0")


async def test_two_gateways_sweeping_at_once_end_each_orphan_once(
    make_balance: MakeBalance, db_pool: asyncpg.Pool
) -> None:
    """Every gateway runs a sweeper over the same shards: the session's state, changed
    in the script, lets one of them end an orphan and makes the other's try a no-op."""
    here = await make_balance(BalanceConfig(max_call_s=60))
    there = await make_balance(BalanceConfig(max_call_s=60))
    refs = []
    async with db_pool.acquire() as conn:
        for i in range(12):
            tree = await factories.tree(
                conn, customer_balance=10**9, sub_balance=10**9, top_balance=10**9
            )
            ref = SessionRef(tree.top, f"orphan-{i}")
            assert isinstance(
                await here.reserve(ref, tree.chain(), factories.meta(ref.session_key)), Grant
            )
            if i % 2:
                await here.store.answered(ref, answered_at=time.time())
            refs.append(ref)
    later = time.time() + 60 + here.store.config.hold_margin_s + 1
    ended = await asyncio.gather(*(b.sweeper.sweep(now=later) for b in (here, there, here, there)))
    assert sum(ended) == 12
    keys = here.store.keys
    entries = []
    for shard in {keys.shard_of(r.root_id) for r in refs}:
        entries += await here.pipeliner.client.xrange(keys.settlements(shard))
    sessions = [SettlementEntry.from_json(fields[b"s"]).session for _id, fields in entries]
    ours = [s for s in sessions if "orphan-" in s]
    assert len(ours) == len(set(ours)) == 6  # the answered ones, each once
