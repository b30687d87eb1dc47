"""Reserve, start, extend, settle, release on a real Redis, over a 3-level chain."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.balance.service import Balance
from gateway.balance.store import SessionEnded, SessionRef, UnknownSession
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig
from gateway.core.reasons import Reason, Refusal
from gateway.rating.chain import Chain, Level
from gateway.settlement.entry import SettlementEntry
from tests import factories
from tests.conftest import MakeBalance


async def _account_state(balance: Balance, root: int, account: int) -> dict[str, str]:
    raw = await balance.pipeliner.client.hgetall(balance.store.keys.account(root, account))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_reserve_holds_every_level_and_settle_debits(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=10_000_000, sub_balance=50_000_000, top_balance=80_000_000
        )
    ref = SessionRef(tree.top, "nas1|call-1|")
    grant = await balance.reserve(ref, tree.chain(), factories.meta("call-1"))
    assert isinstance(grant, Grant)
    # Customer: 10 units at 0.06/min -> 166 whole minutes; capped at max_call_s 3600.
    assert grant.granted_s == 3600
    assert grant.holds_micros == (3_600_000, 2_400_000, 1_800_000)
    for account, hold in zip((tree.customer, tree.sub, tree.top), grant.holds_micros, strict=True):
        state = await _account_state(balance, tree.top, account)
        assert (int(state["held"]), int(state["calls"])) == (hold, 1)

    granted, _held = await balance.store.answered(ref, answered_at=1_000)
    assert granted == 3600
    settled = await balance.store.settle(ref, 61, CallEnd(disconnect_at=1_061, cause="16"))
    # 61 s at 60/60 bills 120 s: 0.12, 0.08 and 0.06 units.
    assert settled.costs_micros == (120_000, 80_000, 60_000)
    assert not settled.duplicate
    for account, start, cost in (
        (tree.customer, 10_000_000, 120_000),
        (tree.sub, 50_000_000, 80_000),
        (tree.top, 80_000_000, 60_000),
    ):
        state = await _account_state(balance, tree.top, account)
        assert int(state["bal"]) == start - cost
        assert (int(state["held"]), int(state["calls"])) == (0, 0)

    entries = await balance.pipeliner.client.xrange(settled.stream)
    assert [e[0].decode() for e in entries] == [settled.stream_id]
    entry = SettlementEntry.from_json(entries[0][1][b"s"])
    assert entry.account_ids == (tree.customer, tree.sub, tree.top)
    assert entry.costs_micros == (120_000, 80_000, 60_000)
    assert entry.billed_s == (120, 120, 120)
    assert entry.duration_s == 61
    assert entry.meta.session_id == "call-1"
    assert entry.end.cause == "16"


async def test_every_verb_is_idempotent(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=5_000_000, sub_balance=5_000_000, top_balance=5_000_000
        )
    ref = SessionRef(tree.top, "nas1|idem|")
    first = await balance.reserve(ref, tree.chain(), factories.meta("idem"))
    again = await balance.reserve(ref, tree.chain(), factories.meta("idem"))
    assert isinstance(first, Grant) and isinstance(again, Grant)
    assert again.repeated and again.granted_s == first.granted_s
    state = await _account_state(balance, tree.top, tree.customer)
    assert int(state["calls"]) == 1 and int(state["held"]) == first.holds_micros[0]

    await balance.store.answered(ref, 100)
    await balance.store.answered(ref, 100)
    one = await balance.store.settle(ref, 30, CallEnd(disconnect_at=130))
    two = await balance.store.settle(ref, 30, CallEnd(disconnect_at=130))
    assert two.duplicate and two.stream_id == one.stream_id
    assert await balance.pipeliner.client.xlen(one.stream) == 1
    state = await _account_state(balance, tree.top, tree.customer)
    assert int(state["bal"]) == 5_000_000 - one.costs_micros[0]
    with pytest.raises(SessionEnded):
        await balance.store.release(ref)
    with pytest.raises(SessionEnded):
        await balance.store.answered(ref, 100)
    assert isinstance(await balance.reserve(ref, tree.chain(), factories.meta("idem")), Refusal)


async def test_release_frees_without_charge(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=1_000_000, sub_balance=1_000_000, top_balance=1_000_000
        )
    ref = SessionRef(tree.top, "nas1|rel|")
    assert isinstance(await balance.reserve(ref, tree.chain(), factories.meta("rel")), Grant)
    assert await balance.store.release(ref) is True
    assert await balance.store.release(ref) is False
    for account in (tree.customer, tree.sub, tree.top):
        state = await _account_state(balance, tree.top, account)
        assert (int(state["bal"]), int(state["held"]), int(state["calls"])) == (1_000_000, 0, 0)
    with pytest.raises(SessionEnded):
        await balance.store.settle(ref, 10, CallEnd(disconnect_at=10))
    with pytest.raises(UnknownSession):
        await balance.store.settle(SessionRef(tree.top, "never"), 10, CallEnd(disconnect_at=1))


async def test_failed_call_settles_at_zero(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=1_000_000, sub_balance=1_000_000, top_balance=1_000_000
        )
    ref = SessionRef(tree.top, "nas1|failed|")
    await balance.reserve(ref, tree.chain(), factories.meta("failed"))
    settled = await balance.store.settle(ref, 0, CallEnd(disconnect_at=5, cause="17"))
    assert settled.costs_micros == (0, 0, 0)
    state = await _account_state(balance, tree.top, tree.customer)
    assert (int(state["bal"]), int(state["held"]), int(state["calls"])) == (1_000_000, 0, 0)


@pytest.mark.parametrize(
    ("balances", "reason", "level"),
    [
        ((0, 10_000_000, 10_000_000), Reason.ZERO_BALANCE, 0),
        ((30_000, 10_000_000, 10_000_000), Reason.INSUFFICIENT_FUNDS, 0),
        ((10_000_000, 10_000, 10_000_000), Reason.AGENT_CAP, 1),
        ((10_000_000, 10_000_000, 0), Reason.AGENT_CAP, 2),
    ],
)
async def test_refusal_names_the_level(
    balance: Balance,
    db_pool: asyncpg.Pool,
    balances: tuple[int, int, int],
    reason: Reason,
    level: int,
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=balances[0], sub_balance=balances[1], top_balance=balances[2]
        )
    ref = SessionRef(tree.top, "nas1|refused|")
    result = await balance.reserve(ref, tree.chain(), factories.meta("refused"))
    assert isinstance(result, Refusal)
    assert (result.reason, result.level) == (reason, level)
    assert result.account_id == (tree.customer, tree.sub, tree.top)[level]
    # A refusal changes nothing.
    for account in (tree.customer, tree.sub, tree.top):
        state = await _account_state(balance, tree.top, account)
        assert (int(state["held"]), int(state["calls"])) == (0, 0)


async def test_disabled_agent_and_call_limit(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn,
            customer_balance=10_000_000,
            sub_balance=10_000_000,
            top_balance=10_000_000,
            customer_max_calls=1,
        )
    chain = tree.chain()
    first = await balance.reserve(SessionRef(tree.top, "a"), chain, factories.meta("a"))
    assert isinstance(first, Grant)
    second = await balance.reserve(SessionRef(tree.top, "b"), chain, factories.meta("b"))
    assert isinstance(second, Refusal) and second.reason is Reason.TOO_MANY_CALLS
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", tree.sub)
    assert await balance.mirror.sync(tree.sub)
    await balance.store.release(SessionRef(tree.top, "a"))
    third = await balance.reserve(SessionRef(tree.top, "c"), chain, factories.meta("c"))
    assert isinstance(third, Refusal)
    assert (third.reason, third.account_id) == (Reason.ACCOUNT_DISABLED, tree.sub)


async def test_transfer_agent_caps_calls_but_is_not_charged(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn,
            customer_balance=2_000_000,
            sub_balance=0,
            top_balance=10_000_000,
            sub_mode="transfer",
        )
    chain = Chain(
        tree.top,
        (
            Level(tree.customer, True, tree.rates[0]),
            Level(tree.sub, False),
            Level(tree.top, True, tree.rates[2]),
        ),
    )
    ref = SessionRef(tree.top, "transfer")
    grant = await balance.reserve(ref, chain, factories.meta("transfer"))
    assert isinstance(grant, Grant)
    assert grant.holds_micros[1] == 0
    settled = await balance.store.settle(ref, 60, CallEnd(disconnect_at=60))
    assert settled.costs_micros == (60_000, 0, 30_000)
    sub = await _account_state(balance, tree.top, tree.sub)
    assert (int(sub["bal"]), int(sub["calls"])) == (0, 0)


async def test_extend_grows_the_hold_when_money_arrives(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=120_000, sub_balance=10_000_000, top_balance=10_000_000
        )
    ref = SessionRef(tree.top, "ext")
    grant = await balance.reserve(ref, tree.chain(), factories.meta("ext"))
    assert isinstance(grant, Grant) and grant.granted_s == 120  # two minutes at 0.06
    await balance.store.answered(ref, 1000)

    async def extend(may_grow: bool) -> tuple[int, bool]:
        extended = await balance.store.extend(ref, may_grow=may_grow)
        return extended.granted_s, extended.grew

    assert await extend(True) == (120, False)
    await balance.pipeliner.client.hincrby(
        balance.store.keys.account(tree.top, tree.customer), "bal", 60_000
    )
    assert await extend(False) == (120, False)
    assert await extend(True) == (180, True)
    state = await _account_state(balance, tree.top, tree.customer)
    assert int(state["held"]) == 180_000


@pytest.fixture
async def one_minute_calls(make_balance: MakeBalance) -> Balance:
    """Calls granted at most one minute, so a balance covers a countable number."""
    return await make_balance(BalanceConfig(max_call_s=60))


async def test_exactly_ten_of_a_thousand_concurrent_reserves(
    one_minute_calls: Balance, db_pool: asyncpg.Pool
) -> None:
    # Each call's first minute costs 0.06; the customer can afford exactly 10.
    balance = one_minute_calls
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=600_000, sub_balance=10**9, top_balance=10**9
        )
    chain = tree.chain()
    results = await asyncio.gather(
        *(
            balance.reserve(SessionRef(tree.top, f"c{i}"), chain, factories.meta(f"c{i}"))
            for i in range(1000)
        )
    )
    granted = [r for r in results if isinstance(r, Grant)]
    assert len(granted) == 10
    assert all(g.granted_s == 60 for g in granted)
    refusals = {r.reason for r in results if isinstance(r, Refusal)}
    assert refusals == {Reason.ZERO_BALANCE}  # all of it is held by the ten
    state = await _account_state(balance, tree.top, tree.customer)
    assert (int(state["held"]), int(state["calls"])) == (600_000, 10)
    # Batched: far fewer pipelines than calls.
    assert balance.pipeliner.pipelines_sent < 500


async def test_exactly_ten_when_the_agent_binds(
    one_minute_calls: Balance, db_pool: asyncpg.Pool
) -> None:
    balance = one_minute_calls
    # The top agent pays 0.03 per first minute and has 0.30: ten calls, whatever the
    # customer holds.
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=10**9, sub_balance=10**9, top_balance=300_000
        )
    chain = tree.chain()
    results = await asyncio.gather(
        *(
            balance.reserve(SessionRef(tree.top, f"a{i}"), chain, factories.meta(f"a{i}"))
            for i in range(1000)
        )
    )
    assert sum(isinstance(r, Grant) for r in results) == 10
    refused = [r for r in results if isinstance(r, Refusal)]
    assert {(r.reason, r.account_id) for r in refused} == {(Reason.AGENT_CAP, tree.top)}
