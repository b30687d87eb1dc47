"""Peak/off-peak rates on a real Redis (one server and a cluster): the grant counts the
change of price, a call is billed split at the boundary exactly as an independent
second-by-second pricing says, and no grant mode lets a level go below its credit
limit whenever within the setup window the call is answered."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.balance.service import Balance
from gateway.balance.store import ANSWER_SKEW_S, SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig
from gateway.core.reasons import Refusal
from gateway.rating.billing import billed_ms, billed_seconds, grant_seconds
from gateway.rating.chain import Chain, Level
from gateway.rating.periods import Periods, parse_periods, segments
from gateway.rating.rates import Rate
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.schedule import worst_case
from tests import factories
from tests.conftest import MakeBalance

# Peak Mon-Fri 08:00-18:00 in Paris at 0.12 with a 0.05 connect fee; off-peak 0.06.
PARIS = "Europe/Paris"
PEAK = Periods(parse_periods("mon-fri 08:00-18:00 0.12 0.05"), PARIS)
CUSTOMER_RATE = Rate("33", "France", 60_000, 0, 1, 1, periods=PEAK)
# Thursday 3 December 2026, 07:55 in Paris: five minutes before the peak.
BEFORE_PEAK = int(datetime(2026, 12, 3, 7, 55, tzinfo=ZoneInfo(PARIS)).timestamp())
SETUP_S = 120
_examples = itertools.count()


def reference_cost(rate: Rate, answered_at: int, seconds: int, rounding: Rounding = EXACT) -> int:
    """The cost read straight off the periods, one billed second at a time: each at
    the price of the period its own local time falls in, the fee of the start's."""
    assert rate.periods is not None
    zone = ZoneInfo(rate.periods.zone)

    def price_at(t: int) -> tuple[int, int]:
        local = datetime.fromtimestamp(t, zone)
        minute = local.hour * 60 + local.minute
        for p in rate.periods.items:  # type: ignore[union-attr]
            if local.weekday() in p.days and p.start_min <= minute < p.end_min:
                fee = (
                    rate.connect_fee_micros
                    if p.connect_fee_micros is None
                    else p.connect_fee_micros
                )
                return p.price_per_min_micros, fee
        return rate.price_per_min_micros, rate.connect_fee_micros

    billed = billed_seconds(rate, seconds)
    if billed == 0:
        return 0
    weight = sum(price_at(answered_at + x)[0] for x in range(billed))
    return rounding.apply(price_at(answered_at)[1] + -(-weight // 60))


def reference_cost_ms(rate: Rate, answered_at: int, ms: int, rounding: Rounding) -> int:
    """``reference_cost`` to the millisecond (prices change on whole seconds)."""
    assert rate.periods is not None
    billed = billed_ms(rate, ms)
    if billed == 0:
        return 0
    # Each whole second's price from the periods; a part second pays its share.
    zone = ZoneInfo(rate.periods.zone)
    weight, fee = 0, None
    for second in range(-(-billed // 1000)):
        local = datetime.fromtimestamp(answered_at + second, zone)
        minute = local.hour * 60 + local.minute
        price, seg_fee = rate.price_per_min_micros, rate.connect_fee_micros
        for p in rate.periods.items:
            if local.weekday() in p.days and p.start_min <= minute < p.end_min:
                price = p.price_per_min_micros
                seg_fee = (
                    rate.connect_fee_micros
                    if p.connect_fee_micros is None
                    else p.connect_fee_micros
                )
        if fee is None:
            fee = seg_fee
        weight += price * min(1000, billed - second * 1000)
    assert fee is not None
    return rounding.apply(fee + -(-weight // 60_000))


async def _chain(
    db_pool: asyncpg.Pool,
    balance: Balance,
    customer: int,
    rounding: Rounding,
    rate: Rate = CUSTOMER_RATE,
) -> Chain:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=customer, sub_balance=10**9, top_balance=10**9
        )
    chain = Chain(
        tree.top,
        (
            Level(tree.customer, True, rate, rounding=rounding),
            # Per-second agents: a slice call can then hold up to any grant.
            Level(tree.sub, True, factories.rate(40_000, 1, 1)),
            Level(tree.top, True, factories.rate(30_000, 1, 1)),
        ),
    )
    await balance.mirror.load(chain.account_ids)
    return chain


async def _customer(balance: Balance, chain: Chain) -> dict[str, int]:
    raw = await balance.pipeliner.client.hgetall(
        balance.store.keys.account(chain.root_id, chain.account_ids[0])
    )
    return {k.decode(): int(v) for k, v in raw.items() if k != b"st"}


@pytest.mark.parametrize("mode", ["whole", "slice"])
async def test_a_call_five_minutes_before_peak_is_granted_for_the_peak(
    make_balance: MakeBalance, db_pool: asyncpg.Pool, mode: str
) -> None:
    config = BalanceConfig(max_call_s=7200, setup_timeout_s=SETUP_S, slice_min_s=60, slice_s=300)
    balance = await make_balance(config)
    chain = await _chain(db_pool, balance, 1_200_000, EXACT)  # 20 minutes off-peak
    ref = SessionRef(chain.root_id, f"peak-{mode}")
    grant = await balance.store.reserve(
        ref, chain, factories.meta(ref.session_key), BEFORE_PEAK, slice_mode=mode == "slice"
    )
    assert isinstance(grant, Grant)
    # Answered as late as the setup window allows, peak starts 3 minutes in: 0.18
    # off-peak, then 1.02 at 0.12 is 510 s. Never the 1200 s all-off-peak would give.
    assert grant.granted_s == 180 + 510
    # Answered at the last moment and run to the grant: billed split at 08:00.
    answered = BEFORE_PEAK + SETUP_S
    await balance.store.answered(ref, answered)
    now = answered
    while mode == "slice" and now < answered + grant.granted_s:
        now += 5
        await balance.store.extend(ref, False, now, now - answered)
    settled = await balance.store.settle(ref, grant.granted_s, CallEnd(disconnect_at=now))
    assert settled.costs_micros[0] == reference_cost(CUSTOMER_RATE, answered, grant.granted_s)
    assert settled.costs_micros[0] == 180 * 1_000 + 510 * 2_000 == 1_200_000
    customer = await _customer(balance, chain)
    assert (customer["bal"], customer["held"]) == (0, 0)


async def test_reserve_grants_the_worst_case_of_the_setup_window(
    make_balance: MakeBalance, db_pool: asyncpg.Pool
) -> None:
    balance = await make_balance(BalanceConfig(max_call_s=7200, setup_timeout_s=SETUP_S))
    chain = await _chain(db_pool, balance, 900_000, Rounding(2, "up"))
    for minutes_before in (30, 5, 2, 0):
        now = BEFORE_PEAK + 300 - 60 * minutes_before
        ref = SessionRef(chain.root_id, f"w{minutes_before}")
        grant = await balance.store.reserve(ref, chain, factories.meta(ref.session_key), now)
        assert isinstance(grant, Grant)
        segs = segments(PEAK, 60_000, 0, now - ANSWER_SKEW_S, now + SETUP_S + 7200)
        worst = worst_case(segs, now - ANSWER_SKEW_S, now + SETUP_S)
        pricing = [(worst, Rounding(2, "up")), (None, EXACT), (None, EXACT)]
        levels = [(level.rate, 900_000) for level in chain.levels]
        assert grant.granted_s == grant_seconds(levels, 7200, pricing)
        assert grant.holds_micros[0] <= 900_000 and grant.holds_micros[0] % 10_000 == 0
        await balance.store.release(ref)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    money=st.integers(50_000, 3_000_000),
    starts=st.lists(st.integers(-900, 900), min_size=1, max_size=5),
    delays=st.lists(st.integers(-ANSWER_SKEW_S, SETUP_S), min_size=5, max_size=5),
    durations=st.lists(st.integers(0, 3000), min_size=5, max_size=5),
    slice_mode=st.booleans(),
    rounding=st.sampled_from([EXACT, Rounding(4, "up"), Rounding(3, "half_up")]),
    # Sub-second increments, the switch's ms up to a second below what it reports.
    short_ms=st.one_of(st.none(), st.lists(st.integers(0, 999), min_size=5, max_size=5)),
)
async def test_no_overdraft_and_every_cdr_is_the_reference_split(
    make_balance: MakeBalance,
    db_pool: asyncpg.Pool,
    money: int,
    starts: list[int],
    delays: list[int],
    durations: list[int],
    slice_mode: bool,
    rounding: Rounding,
    short_ms: list[int] | None,
) -> None:
    n = next(_examples)
    config = BalanceConfig(max_call_s=3600, setup_timeout_s=SETUP_S, slice_min_s=60, slice_s=120)
    balance = await make_balance(config)
    rate = CUSTOMER_RATE if short_ms is None else replace(CUSTOMER_RATE, next_increment_ms=100)
    chain = await _chain(db_pool, balance, money, rounding, rate)
    # Concurrent calls authorized around the peak's start, each answered somewhere in
    # its setup window and ended after a random time (capped at what it could hold).
    refs = [SessionRef(chain.root_id, f"p{n}-{i}") for i in range(len(starts))]
    grants = await asyncio.gather(
        *(
            balance.store.reserve(
                ref,
                chain,
                factories.meta(ref.session_key),
                BEFORE_PEAK + 300 + start,
                slice_mode=slice_mode,
            )
            for ref, start in zip(refs, starts, strict=True)
        )
    )
    for i, (ref, grant) in enumerate(zip(refs, grants, strict=True)):
        if isinstance(grant, Refusal):
            continue
        answered = BEFORE_PEAK + 300 + starts[i] + delays[i]
        await balance.store.answered(ref, answered)
        duration = durations[i]
        for elapsed in range(0, duration, 30):
            await balance.store.extend(ref, False, answered + elapsed, elapsed)
            customer = await _customer(balance, chain)
            assert customer["bal"] - customer["held"] >= 0  # available never below 0
        ms = None if short_ms is None else max(0, duration * 1000 - short_ms[i])
        end = CallEnd(disconnect_at=answered + duration, duration_ms=ms)
        settled = await balance.store.settle(ref, duration, end)
        billed_duration = duration - settled.overrun_s
        if ms is None:
            expected = reference_cost(rate, answered, billed_duration, rounding)
        else:
            expected = reference_cost_ms(rate, answered, min(ms, billed_duration * 1000), rounding)
        assert settled.costs_micros[0] == expected
        customer = await _customer(balance, chain)
        assert customer["bal"] >= 0, (i, customer, grant)
    customer = await _customer(balance, chain)
    assert (customer["held"], customer["calls"]) == (0, 0)


async def test_a_stop_without_reservation_is_split_from_its_connect_time(
    make_balance: MakeBalance, db_pool: asyncpg.Pool
) -> None:
    balance = await make_balance(BalanceConfig(max_call_s=7200, setup_timeout_s=SETUP_S))
    chain = await _chain(db_pool, balance, 5_000_000, Rounding(4, "half_up"))
    connected = BEFORE_PEAK + 100
    for i, end in enumerate(
        (
            CallEnd(disconnect_at=connected + 700, connect_at=connected),  # the switch says
            CallEnd(disconnect_at=connected + 700),  # its end less its duration
        )
    ):
        ref = SessionRef(chain.root_id, f"stop-only-{i}")
        charged = await balance.store.charge(ref, chain, factories.meta(ref.session_key), 700, end)
        expected = reference_cost(CUSTOMER_RATE, connected, 700, Rounding(4, "half_up"))
        assert charged.costs_micros[0] == expected == 200 * 1_000 + 500 * 2_000
    # A call settled after its Start is priced from the Start's answer time.
    ref = SessionRef(chain.root_id, "late-start")
    grant = await balance.store.reserve(ref, chain, factories.meta("late-start"), BEFORE_PEAK)
    assert isinstance(grant, Grant)
    await balance.store.answered(ref, BEFORE_PEAK + 300)  # at 08:00: all peak, peak fee
    settled = await balance.store.settle(ref, 60, CallEnd(disconnect_at=BEFORE_PEAK + 360))
    assert settled.costs_micros[0] == 50_000 + 120_000


@pytest.mark.parametrize("mode", ["whole", "slice"])
async def test_a_hold_made_for_an_answered_call_is_priced_from_its_answer(
    make_balance: MakeBalance, db_pool: asyncpg.Pool, mode: str
) -> None:
    # An Interim finds no hold (say Redis lost it): the call, answered 10 minutes
    # before the peak, is reserved again at 08:01. Its grant counts from the answer:
    # 10 min off-peak (0.60), then 0.60 at 0.12 is 300 s: 900 s, no setup window.
    balance = await make_balance(
        BalanceConfig(max_call_s=7200, setup_timeout_s=SETUP_S, slice_min_s=60, slice_s=300)
    )
    chain = await _chain(db_pool, balance, 1_200_000, EXACT)
    answered = BEFORE_PEAK + 300 - 600
    ref = SessionRef(chain.root_id, f"recovered-{mode}")
    grant = await balance.store.reserve(
        ref,
        chain,
        factories.meta(ref.session_key),
        BEFORE_PEAK + 360,
        slice_mode=mode == "slice",
        answered_at=answered,
    )
    assert isinstance(grant, Grant) and grant.granted_s == 600 + 300
    await balance.store.answered(ref, answered)
    now = BEFORE_PEAK + 360
    while mode == "slice" and now < answered + grant.granted_s:
        now += 5
        await balance.store.extend(ref, False, now, now - answered)
    settled = await balance.store.settle(ref, 900, CallEnd(disconnect_at=answered + 900))
    assert settled.costs_micros[0] == reference_cost(CUSTOMER_RATE, answered, 900) == 1_200_000
    assert (await _customer(balance, chain))["bal"] == 0


async def test_sub_second_increments_bill_the_milliseconds_up_to_the_limit(
    make_balance: MakeBalance, db_pool: asyncpg.Pool
) -> None:
    balance = await make_balance(BalanceConfig(max_call_s=7200, setup_timeout_s=SETUP_S))
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=90_500, sub_balance=10**9, top_balance=10**9
        )
    tenths = Rate("44", "UK", 60_000, 0, 1, 1, next_increment_ms=100)  # 1 micro per ms
    chain = Chain(
        tree.top,
        (
            Level(tree.customer, True, tenths),
            Level(tree.sub, True, factories.rate(40_000, 1, 1)),
            Level(tree.top, True, factories.rate(30_000, 1, 1)),
        ),
    )
    await balance.mirror.load(chain.account_ids)
    now = BEFORE_PEAK
    # Times that disagree with the seconds reported by a second or more are ignored.
    ref = SessionRef(chain.root_id, "ms-3")
    assert isinstance(await balance.store.reserve(ref, chain, factories.meta("ms-3"), now), Grant)
    settled = await balance.store.settle(ref, 0, CallEnd(disconnect_at=now, duration_ms=5_000))
    assert settled.costs_micros[0] == 0
    # 61.234 s: billed 61.3 s at the customer, whole seconds above it.
    ref = SessionRef(chain.root_id, "ms-1")
    assert isinstance(await balance.store.reserve(ref, chain, factories.meta("ms-1"), now), Grant)
    await balance.store.answered(ref, now)
    end = CallEnd(disconnect_at=now + 61.234, connect_at=now, duration_ms=61_234)
    settled = await balance.store.settle(ref, 61, end)
    assert settled.costs_micros == (61_300, 61 * 40_000 // 60 + 1, 61 * 30_000 // 60)
    # Granted 29 s (29.2 left), the switch ends it at 29.95 s: billed up to the grant.
    ref = SessionRef(chain.root_id, "ms-2")
    grant = await balance.store.reserve(ref, chain, factories.meta("ms-2"), now)
    assert isinstance(grant, Grant) and grant.granted_s == 29
    await balance.store.answered(ref, now)
    end = CallEnd(disconnect_at=now + 29.95, connect_at=now, duration_ms=29_950)
    settled = await balance.store.settle(ref, 29, end)
    assert settled.costs_micros[0] == 29_000
    customer = await _customer(balance, chain)
    assert customer["bal"] == 90_500 - 61_300 - 29_000 >= 0
