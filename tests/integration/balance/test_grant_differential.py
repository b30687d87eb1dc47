"""reserve.lua grants and holds what gateway/rating/billing.py says, on chains whose
levels have different increments, prices, fees and money, in both grant modes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient
from gateway.balance.store import ANSWER_SKEW_S, BalanceStore, SessionRef
from gateway.balance.types import Grant
from gateway.config import BalanceConfig
from gateway.core.reasons import Refusal
from gateway.rating.billing import cost, grant_seconds, slice_seconds
from gateway.rating.chain import Chain, Level
from gateway.rating.periods import Periods, parse_periods, segments
from gateway.rating.rates import Rate
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.schedule import worst_case
from tests import factories

_examples = itertools.count()

rates = st.builds(
    Rate,
    prefix=st.just("1"),
    destination=st.just("x"),
    # Mostly prices and money that make a level afford less than the cap: the grant
    # is then some level's own boundary, which other levels' increments must not round.
    price_per_min_micros=st.one_of(st.just(0), st.integers(1_000, 600_000)),
    connect_fee_micros=st.one_of(st.just(0), st.integers(0, 200_000)),
    first_increment_s=st.sampled_from([1, 6, 30, 60, 90]),
    next_increment_s=st.sampled_from([1, 6, 30, 60]),
    min_duration_s=st.one_of(st.just(0), st.integers(0, 120)),
    grace_s=st.one_of(st.just(0), st.integers(0, 30)),
)
level = st.tuples(
    st.one_of(rates, st.none()),  # None: an agent in transfer mode (not charged)
    st.integers(0, 3_000_000),  # balance
    st.integers(0, 200_000),  # credit limit
)
chains = st.tuples(rates, st.integers(0, 3_000_000), st.integers(0, 200_000)).flatmap(
    lambda customer: st.lists(level, min_size=0, max_size=3).map(lambda up: [customer, *up])
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    chain_levels=chains,
    cap=st.sampled_from([59, 60, 300, 3600, 7200]),
    slice_min=st.sampled_from([0, 30, 60, 90]),
)
async def test_reserve_grants_what_billing_says(
    redis_client: RedisClient,
    redis_namespace: str,
    keys: Keys,
    chain_levels: list[tuple[Rate | None, int, int]],
    cap: int,
    slice_min: int,
) -> None:
    n = next(_examples)
    keys = Keys(f"{redis_namespace}:grant-diff:{n}", keys.shards)
    config = BalanceConfig(max_call_s=cap, slice_min_s=max(slice_min, 1), slice_s=300)
    store = BalanceStore(pipeliner_for(redis_client), keys, config)
    try:
        await store.pipeliner.load()
        await _check(store, redis_client, keys, n, chain_levels, cap, slice_min)
    finally:
        await store.pipeliner.close()


async def _check(
    store: BalanceStore,
    redis_client: aioredis.Redis,
    keys: Keys,
    n: int,
    chain_levels: list[tuple[Rate | None, int, int]],
    cap: int,
    slice_min: int,
) -> None:
    root = len(chain_levels)
    for account, (_rate, balance, limit) in enumerate(chain_levels, 1):
        await redis_client.hset(
            keys.account(root, account),
            mapping={
                "bal": balance,
                "lim": limit,
                "held": 0,
                "calls": 0,
                "maxc": -1,
                "st": "active",
                "lver": 0,
            },
        )
    chain = Chain(
        root,
        tuple(
            Level(i, True, rate) if rate is not None else Level(i, False)
            for i, (rate, _b, _l) in enumerate(chain_levels, 1)
        ),
    )
    result = await store.reserve(
        SessionRef(root, f"d{n}"), chain, factories.meta(f"d{n}"), slice_mode=slice_min > 0
    )
    expected = grant_seconds([(rate, b + lim) for rate, b, lim in chain_levels], cap)
    if expected == 0:
        assert isinstance(result, Refusal), (result, chain_levels, cap)
        return
    assert isinstance(result, Grant), (result, chain_levels, cap)
    assert result.granted_s == expected, (chain_levels, cap)
    level_rates = [rate for rate, _b, _l in chain_levels]
    held = expected if slice_min == 0 else slice_seconds(level_rates, slice_min, expected)
    assert result.held_s == held
    for (rate, balance, limit), hold in zip(chain_levels, result.holds_micros, strict=True):
        assert hold == (0 if rate is None else cost(rate, held))
        assert hold <= balance + limit  # never more than the level has
    await redis_client.delete(*[keys.account(root, a) for a in range(1, root + 1)])


# -- rates with periods and rounding ------------------------------------------------

periods_texts = st.sampled_from(
    [
        "mon-fri 08:00-18:00 0.12 0.05",
        "mon-sun 00:00-07:58 0.01; mon-sun 08:03-24:00 0.3",
        "thu 07:59-08:00 2; thu 08:01-08:02 0",
    ]
)
roundings = st.sampled_from([EXACT, Rounding(4, "up"), Rounding(2, "half_up")])
timed_levels = st.lists(
    st.tuples(rates, st.one_of(st.none(), periods_texts), roundings, st.integers(0, 3_000_000)),
    min_size=1,
    max_size=3,
)
# Thursday 3 December 2026 around 08:00 UTC.
AROUND_EIGHT = st.integers(1_796_284_800 - 900, 1_796_284_800 + 900)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(levels=timed_levels, now=AROUND_EIGHT, slice_min=st.sampled_from([0, 60]))
async def test_reserve_grants_the_worst_case_of_periods(
    redis_client: RedisClient,
    redis_namespace: str,
    keys: Keys,
    levels: list[tuple[Rate, str | None, Rounding, int]],
    now: int,
    slice_min: int,
) -> None:
    n = next(_examples)
    keys = Keys(f"{redis_namespace}:grant-tod:{n}", keys.shards)
    config = BalanceConfig(max_call_s=3600, slice_min_s=max(slice_min, 1), slice_s=300)
    store = BalanceStore(pipeliner_for(redis_client), keys, config)
    root = len(levels)
    try:
        await store.pipeliner.load()
        chain_levels = []
        for account, (rate, text, rounding, money) in enumerate(levels, 1):
            await redis_client.hset(keys.account(root, account), mapping=factories.mirrored(money))
            timed = rate if text is None else replace(rate, periods=Periods(parse_periods(text)))
            chain_levels.append(Level(account, True, timed, rounding=rounding))
        chain = Chain(root, tuple(chain_levels))
        result = await store.reserve(
            SessionRef(root, f"t{n}"), chain, factories.meta(f"t{n}"), now, slice_mode=slice_min > 0
        )
        earliest, latest = now - ANSWER_SKEW_S, now + config.setup_timeout_s
        pricing = []
        for level in chain.levels:
            r = level.rate
            assert r is not None
            worst = None
            if r.periods is not None:
                segs = segments(
                    r.periods, r.price_per_min_micros, r.connect_fee_micros, earliest, latest + 7200
                )
                worst = worst_case(segs, earliest, latest)
            pricing.append((worst, level.rounding))
        money = [
            (level.rate, m) for level, (_r, _t, _rnd, m) in zip(chain.levels, levels, strict=True)
        ]
        expected = grant_seconds(money, 3600, pricing)
        if expected == 0:
            assert isinstance(result, Refusal), result
            return
        assert isinstance(result, Grant), result
        assert result.granted_s == expected
        for (worst, rounding), level, hold, (_r, _t, _rnd, m) in zip(
            pricing, chain.levels, result.holds_micros, levels, strict=True
        ):
            assert level.rate is not None
            assert hold == cost(level.rate, result.held_s, worst, rounding)
            assert hold <= m
    finally:
        await redis_client.delete(*[keys.account(root, a) for a in range(1, root + 1)])
        await store.pipeliner.close()
