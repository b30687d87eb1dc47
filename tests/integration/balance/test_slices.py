"""Credit control on a real Redis: the grant rule, slice holds and their extension,
cuts, setup timeout, overrun, provisional holds taken over by their accounting."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient
from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.calls.credit import SliceKeeper
from gateway.config import BalanceConfig, RedisConfig
from gateway.core.reasons import Reason, Refusal
from gateway.rating.billing import cost
from gateway.rating.chain import Chain, Level
from gateway.settlement.entry import SettlementEntry
from tests import factories
from tests.conftest import MakeBalance

REPO = str(Path(__file__).resolve().parents[3])
SLICES = BalanceConfig(max_call_s=7200, slice_min_s=60, slice_s=300, slice_lead_s=10)


async def _state(balance: Balance, root: int, account: int) -> dict[str, int]:
    raw = await balance.pipeliner.client.hgetall(balance.store.keys.account(root, account))
    return {k.decode(): int(v) for k, v in raw.items() if k != b"st"}


async def _session(balance: Balance, ref: SessionRef) -> dict[str, str]:
    raw = await balance.pipeliner.client.hgetall(balance.store.session_key(ref))
    return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture
async def slices(make_balance: MakeBalance) -> Balance:
    return await make_balance(SLICES)


async def _tree(db_pool: asyncpg.Pool, customer: int, agents: int = 10**9) -> factories.Tree:
    async with db_pool.acquire() as conn:
        return await factories.tree(
            conn, customer_balance=customer, sub_balance=agents, top_balance=agents
        )


# -- the grant rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer_balance", "granted"),
    [
        (1_278_000, 1278),  # 30/6 affords 1278 s; the 60/60 agents must not round it to 1260
        (90_000, 90),  # 30/6 affords 90 s; rounded to the agents' 60/60 it would be 60
    ],
)
async def test_grant_is_the_least_of_each_levels_own_time(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    customer_balance: int,
    granted: int,
    make_balance: MakeBalance,
) -> None:
    balance = await make_balance(BalanceConfig(max_call_s=7200))
    tree = await _tree(db_pool, customer_balance)
    chain = Chain(
        tree.top,
        (
            Level(tree.customer, True, factories.rate(60_000, 30, 6)),
            Level(tree.sub, True, factories.rate(40_000, 60, 60)),
            Level(tree.top, True, factories.rate(30_000, 60, 60)),
        ),
    )
    grant = await balance.reserve(SessionRef(tree.top, "rule"), chain, factories.meta("rule"))
    assert isinstance(grant, Grant) and grant.granted_s == granted
    assert grant.holds_micros == tuple(cost(level.rate, granted) for level in chain.levels)  # type: ignore[arg-type]
    assert grant.available_micros == 0  # the customer's whole balance covers the grant


# -- slices --------------------------------------------------------------------------


async def test_ten_concurrent_one_minute_calls_fit_twenty_minutes(
    slices: Balance,
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    make_balance: MakeBalance,
) -> None:
    tree = await _tree(db_pool, 1_200_000)  # 20 minutes at 0.06
    chain = tree.chain()
    refs = [SessionRef(tree.top, f"ten-{i}") for i in range(10)]
    grants = await asyncio.gather(
        *(
            slices.reserve(ref, chain, factories.meta(ref.session_key), slice_mode=True)
            for ref in refs
        )
    )
    assert all(isinstance(g, Grant) for g in grants), grants
    # Each is granted what is left beside the slices already held, and holds one slice.
    granted = sorted(g.granted_s for g in grants if isinstance(g, Grant))
    assert granted == [1200 - 60 * i for i in range(9, -1, -1)]
    for grant in grants:
        assert isinstance(grant, Grant)
        assert grant.held_s == 60 and grant.holds_micros[0] == 60_000
    customer = await _state(slices, tree.top, tree.customer)
    assert (customer["held"], customer["calls"]) == (600_000, 10)
    for ref in refs:
        settled = await slices.store.settle(ref, 55, CallEnd(disconnect_at=time.time()))
        assert settled.costs_micros[0] == 60_000
    customer = await _state(slices, tree.top, tree.customer)
    assert (customer["bal"], customer["held"], customer["calls"]) == (600_000, 0, 0)

    # Whole mode, as before: the first call holds all twenty minutes.
    whole = await make_balance(BalanceConfig(max_call_s=7200))
    other = await _tree(db_pool, 1_200_000)
    results = await asyncio.gather(
        *(
            whole.reserve(SessionRef(other.top, f"w{i}"), other.chain(), factories.meta(f"w{i}"))
            for i in range(10)
        )
    )
    assert sum(isinstance(r, Grant) for r in results) == 1
    assert {r.reason for r in results if isinstance(r, Refusal)} == {Reason.ZERO_BALANCE}


@pytest.mark.parametrize("mode", ["slice", "whole"])
async def test_exactly_k_of_a_thousand_in_either_mode(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    mode: str,
    make_balance: MakeBalance,
) -> None:
    # K = 7 slices of one minute (whole mode: calls granted one minute at most).
    config = SLICES if mode == "slice" else BalanceConfig(max_call_s=60)
    balance = await make_balance(config)
    tree = await _tree(db_pool, 7 * 60_000)
    chain = tree.chain()
    results = await asyncio.gather(
        *(
            balance.reserve(
                SessionRef(tree.top, f"k{i}"),
                chain,
                factories.meta(f"k{i}"),
                slice_mode=mode == "slice",
            )
            for i in range(1000)
        )
    )
    granted = [r for r in results if isinstance(r, Grant)]
    assert len(granted) == 7
    assert all(g.held_s == 60 for g in granted)
    assert {r.reason for r in results if isinstance(r, Refusal)} == {Reason.ZERO_BALANCE}
    customer = await _state(balance, tree.top, tree.customer)
    assert (customer["held"], customer["calls"]) == (420_000, 7)


async def test_first_slice_follows_the_average_call(slices: Balance, db_pool: asyncpg.Pool) -> None:
    tree = await _tree(db_pool, 100_000_000)
    chain = tree.chain()
    for i, seconds in enumerate((240, 240, 240, 240, 240, 240, 240, 240)):
        ref = SessionRef(tree.top, f"avg{i}")
        assert isinstance(
            await slices.reserve(ref, chain, factories.meta(ref.session_key), slice_mode=True),
            Grant,
        )
        await slices.store.settle(ref, seconds, CallEnd(disconnect_at=time.time()))
    average = (await _state(slices, tree.top, tree.customer))["avgd"]
    assert 200 <= average <= 240
    grant = await slices.reserve(
        SessionRef(tree.top, "next"), chain, factories.meta("n"), slice_mode=True
    )
    assert isinstance(grant, Grant) and grant.held_s == 240  # its 60/60 boundary at or above
    # Never beyond the largest slice.
    for i in range(8):
        ref = SessionRef(tree.top, f"long{i}")
        await slices.reserve(ref, chain, factories.meta(ref.session_key), slice_mode=True)
        await slices.store.settle(ref, 3000, CallEnd(disconnect_at=time.time()))
    grant = await slices.reserve(
        SessionRef(tree.top, "capped"), chain, factories.meta("c"), slice_mode=True
    )
    assert isinstance(grant, Grant) and grant.held_s == 300


async def test_keeper_extends_then_cuts_and_hangs_up_once(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    # 5 minutes of credit: granted 300 s, held 60 s at first.
    tree = await _tree(db_pool, 300_000)
    ref = SessionRef(tree.top, "kept")
    grant = await slices.reserve(ref, tree.chain(), factories.meta("kept"), slice_mode=True)
    assert isinstance(grant, Grant) and (grant.granted_s, grant.held_s) == (300, 60)
    hung_up: list[str] = []

    async def hangup(reach: str) -> None:
        hung_up.append(reach)

    keeper = SliceKeeper(slices.store, lambda: hangup)
    t0 = time.time()
    await slices.store.answered(ref, t0, reach="switch-a|call")
    assert await keeper.check(now=t0 + 10) == 0  # 50 s still held: nothing due
    assert (await _session(slices, ref))["held"] == "60"
    # 50 s in: the lead (10 s) is reached; the next slice (2 x 60) is held.
    await keeper.check(now=t0 + 50)
    session = await _session(slices, ref)
    assert session["held"] == "180" and "cut" not in session
    assert (await _state(slices, tree.top, tree.customer))["held"] == 180_000
    # Someone else takes the rest of the money: the next slice cannot be held.
    await slices.pipeliner.client.hincrby(
        slices.store.keys.account(tree.top, tree.customer), "bal", -120_000
    )
    assert await keeper.check(now=t0 + 170) == 0  # cut, but 10 s are still held
    assert (await _session(slices, ref))["cut"] == "1"
    assert await keeper.check(now=t0 + 179) == 0
    assert await keeper.check(now=t0 + 180.5) == 1
    assert hung_up == ["switch-a|call"]
    assert await keeper.check(now=t0 + 185) == 0  # claimed once
    assert hung_up == ["switch-a|call"]
    # The switch hangs up a second late: with the cap, billed at the held time.
    settled = await slices.store.settle(ref, 181, CallEnd(disconnect_at=t0 + 181))
    assert settled.costs_micros[0] == 180_000 and settled.overrun_s == 1
    customer = await _state(slices, tree.top, tree.customer)
    assert (customer["bal"], customer["held"]) == (0, 0)  # 0.30 - 0.12 taken - 0.18 billed
    assert (await _state(slices, tree.top, tree.top))["exp"] == 0


async def test_money_arriving_uncuts_a_call(slices: Balance, db_pool: asyncpg.Pool) -> None:
    tree = await _tree(db_pool, 120_000)
    ref = SessionRef(tree.top, "uncut")
    await slices.reserve(ref, tree.chain(), factories.meta("uncut"), slice_mode=True)
    t0 = time.time()
    await slices.store.answered(ref, t0)
    await slices.pipeliner.client.hincrby(
        slices.store.keys.account(tree.top, tree.customer), "bal", -60_000
    )
    cut = await slices.store.extend(ref, False, now=t0 + 55)
    assert cut.cut and cut.cut_at == t0 + 60 - (t0 % 1)  # start times are whole seconds
    await slices.pipeliner.client.hincrby(
        slices.store.keys.account(tree.top, tree.customer), "bal", 60_000
    )
    again = await slices.store.extend(ref, False, now=t0 + 58)
    assert not again.cut and again.grew and again.held_s == 120


async def test_interim_reported_time_drives_the_extension(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, 10_000_000)
    ref = SessionRef(tree.top, "reported")
    await slices.reserve(ref, tree.chain(), factories.meta("reported"), slice_mode=True)
    now = time.time()
    await slices.store.answered(ref, now)
    # The switch says 500 s have run (its clock): held covers 500 s + the lead.
    extended = await slices.store.extend(ref, False, now=now, elapsed_s=500)
    assert extended.grew and extended.held_s >= 510 and not extended.cut
    assert extended.held_s == 60 + 120 + 240 + 300  # slices double up to the largest


async def test_exposure_is_what_is_granted_but_not_held(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, 1_200_000)
    refs = [SessionRef(tree.top, f"exp{i}") for i in range(3)]
    for ref in refs:
        await slices.reserve(ref, tree.chain(), factories.meta(ref.session_key), slice_mode=True)
    # Granted 1200, 1140 and 1080 s (what was left), each holding 60 s (0.06): the
    # tree's exposure is the sum of what each was granted but does not hold.
    exposures = [1_200_000 - 60_000, 1_140_000 - 60_000, 1_080_000 - 60_000]
    assert (await _state(slices, tree.top, tree.top))["exp"] == sum(exposures)
    await slices.store.release(refs[0])
    await slices.store.settle(refs[1], 30, CallEnd(disconnect_at=time.time()))
    assert (await _state(slices, tree.top, tree.top))["exp"] == exposures[2]
    await slices.store.release(refs[2])
    assert (await _state(slices, tree.top, tree.top))["exp"] == 0


# -- setup timeout, overrun, orphans ---------------------------------------------------


async def test_a_hold_never_answered_is_released_at_the_setup_timeout(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    make_balance: MakeBalance,
) -> None:
    config = BalanceConfig(max_call_s=7200, setup_timeout_s=120)
    balance = await make_balance(config)
    tree = await _tree(db_pool, 10_000_000)
    ref = SessionRef(tree.top, "ringing")
    now = time.time()
    assert isinstance(await balance.reserve(ref, tree.chain(), factories.meta("ringing")), Grant)
    assert await balance.sweeper.sweep(now=now + 100) == 0
    assert await balance.sweeper.sweep(now=now + 122) == 1
    assert await balance.store.session_state(ref) == "released"
    customer = await _state(balance, tree.top, tree.customer)
    assert (customer["held"], customer["calls"]) == (0, 0)


@pytest.mark.parametrize(
    ("cap", "charged", "balance_after"), [(True, 60_000, 0), (False, 600_000, -540_000)]
)
async def test_a_stop_past_the_grant_is_capped_or_billed(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    cap: bool,
    charged: int,
    balance_after: int,
    make_balance: MakeBalance,
) -> None:
    balance = await make_balance(BalanceConfig(max_call_s=7200))
    tree = await _tree(db_pool, 60_000)
    ref = SessionRef(tree.top, "overrun")
    grant = await balance.reserve(ref, tree.chain(), factories.meta("overrun"))
    assert isinstance(grant, Grant) and grant.granted_s == 60
    await balance.store.answered(ref, time.time() - 600)
    settled = await balance.store.settle(
        ref, 600, CallEnd(disconnect_at=time.time()), overrun_cap=cap
    )
    assert (settled.costs_micros[0], settled.overrun_s) == (charged, 540)
    assert (await _state(balance, tree.top, tree.customer))["bal"] == balance_after
    raw = await balance.pipeliner.client.xrange(settled.stream)
    entry = SettlementEntry.from_json(raw[-1][1][b"s"])
    assert (entry.duration_s, entry.overrun_s, entry.billed_s[0]) == (600, 540, charged // 1000)


async def test_grace_bills_a_little_past_the_grant(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    make_balance: MakeBalance,
) -> None:
    config = BalanceConfig(max_call_s=7200, overrun_grace_s=5)
    balance = await make_balance(config)
    tree = await _tree(db_pool, 120_000)
    ref = SessionRef(tree.top, "grace")
    await balance.reserve(ref, tree.chain(), factories.meta("grace"))  # granted 120 s
    settled = await balance.store.settle(ref, 124, CallEnd(disconnect_at=time.time()))
    assert (settled.costs_micros[0], settled.overrun_s) == (180_000, 0)


async def test_a_slice_orphan_is_settled_at_its_held_time(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, 10_000_000)
    ref = SessionRef(tree.top, "orphan")
    grant = await slices.reserve(ref, tree.chain(), factories.meta("orphan"), slice_mode=True)
    assert isinstance(grant, Grant) and grant.held_s == 60 and grant.granted_s == 7200
    t0 = time.time()
    await slices.store.answered(ref, t0)
    # No keeper ran, no Stop came: past held + margin, billed for what was held.
    assert await slices.sweeper.sweep(now=t0 + 60 + SLICES.hold_margin_s + 1) == 1
    customer = await _state(slices, tree.top, tree.customer)
    assert (customer["bal"], customer["held"]) == (10_000_000 - 60_000, 0)


# -- provisional holds -----------------------------------------------------------------


async def test_a_provisional_hold_is_taken_over_once(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    tree = await _tree(db_pool, 10_000_000)
    keys = slices.store.keys
    link = keys.link(tree.top, "nas1", "conf:ABC")
    by_caller = keys.link(tree.top, "nas1", "acct:1:4930")
    provisional = SessionRef(tree.top, "nas1|~p1|")
    links = ((link, 120), (by_caller, 30))
    grant = await slices.reserve(provisional, tree.chain(), factories.meta(""), links=links)
    assert isinstance(grant, Grant)
    target = SessionRef(tree.top, "nas1|acct-7|")
    assert await slices.store.adopt(target, ((by_caller, 30),), "acct-7", "") is True
    assert await slices.store.session_state(provisional) is None
    assert await slices.store.session_state(target) == "reserved"
    # Its other links are gone: a second request finds nothing to take.
    other = SessionRef(tree.top, "nas1|acct-8|")
    assert await slices.store.adopt(other, links, "acct-8", "") is False
    # A link older than its window finds nothing either.
    late = SessionRef(tree.top, "nas1|~p2|")
    await slices.reserve(late, tree.chain(), factories.meta(""), links=((by_caller, 30),))
    assert not await slices.store.adopt(
        other, ((by_caller, 30),), "acct-8", "", now=time.time() + 31
    )
    settled = await slices.store.settle(target, 61, CallEnd(disconnect_at=time.time()))
    raw = await slices.pipeliner.client.xrange(settled.stream)
    entry = SettlementEntry.from_json(raw[-1][1][b"s"])
    assert (entry.meta.session_id, entry.meta.leg) == ("acct-7", "")
    customer = await _state(slices, tree.top, tree.customer)
    assert customer["calls"] == 1  # only the late provisional one is still up
    session = await _session(slices, late)
    assert json.loads(session["links"]) == [[by_caller, 30]]


@pytest.mark.parametrize("mode", ["slice", "whole"])
async def test_two_workers_admit_exactly_k(
    redis_client: RedisClient, redis_config: RedisConfig, keys: Keys, mode: str
) -> None:
    """Two processes, 500 Access-Requests each, one balance covering K = 9 slices (in
    whole mode: 9 one-minute calls): exactly 9 are admitted in all."""
    root = 3
    prices = {1: 60_000, 2: 40_000, 3: 30_000}
    money = {1: 9 * 60_000, 2: 10**9, 3: 10**9}
    for account, balance in money.items():
        await redis_client.hset(
            keys.account(root, account),
            mapping=factories.mirrored(balance),
        )
    chain_json = json.dumps([root, [[a, prices[a]] for a in (1, 2, 3)]])
    at = str(time.time() + 2.0)  # both start then, after their imports
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.balance.reserve_worker",
            redis_config.url,
            keys.prefix,
            str(keys.shards),
            chain_json,
            "500",
            mode,
            f"w{n}",
            at,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        for n in range(2)
    ]
    outputs = await asyncio.gather(*(asyncio.wait_for(w.communicate(), 60) for w in workers))
    admitted = [int(out.decode().strip()) for out, _ in outputs]
    assert sum(admitted) == 9, admitted
    customer = await redis_client.hgetall(keys.account(root, 1))
    assert (int(customer[b"held"]), int(customer[b"calls"])) == (9 * 60_000, 9)


async def test_a_slice_call_past_its_hold_uncut_is_billed_what_is_there(
    slices: Balance, db_pool: asyncpg.Pool
) -> None:
    # Two calls share 3 minutes; neither was extended (no keeper ran) and both Stops
    # say 150 s. The first is billed in full (the money is there), the second only
    # what is left of the customer's balance: never below its credit limit (0).
    tree = await _tree(db_pool, 180_000 + 120_000)
    refs = [SessionRef(tree.top, f"late{i}") for i in range(2)]
    for ref in refs:
        grant = await slices.reserve(
            ref, tree.chain(), factories.meta(ref.session_key), slice_mode=True
        )
        assert isinstance(grant, Grant) and grant.held_s == 60
        await slices.store.answered(ref, time.time() - 150)
    first = await slices.store.settle(refs[0], 150, CallEnd(disconnect_at=time.time()))
    assert (first.costs_micros[0], first.overrun_s) == (180_000, 0)
    second = await slices.store.settle(refs[1], 150, CallEnd(disconnect_at=time.time()))
    assert (second.costs_micros[0], second.overrun_s) == (120_000, 30)
    customer = await _state(slices, tree.top, tree.customer)
    assert (customer["bal"], customer["held"]) == (0, 0)
