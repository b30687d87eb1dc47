"""The Lua pricing (lib.lua) equals the Python rating engine on every input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rating.billing import billed_ms, cost, cost_ms, max_seconds
from gateway.rating.rates import Rate
from gateway.rating.rounding import Rounding
from gateway.rating.schedule import from_start, worst_case

_PROBE = """
local cases = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(cases) do
    local r = c[1]
    out[i] = {call_cost(r, c[2]), max_seconds(r, c[3], c[4])}
end
return cjson.encode(out)
"""


@pytest.fixture(scope="module")
def probe(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    lib = (resources.files("gateway.balance") / "lua" / "lib.lua").read_text()
    yield client, lib + _PROBE
    client.close()


def _lua_rate(r: Rate) -> list[int]:
    return [
        1,
        r.price_per_min_micros,
        r.connect_fee_micros,
        r.first_increment_s,
        r.next_increment_s,
        r.min_duration_s,
        r.grace_s,
    ]


rates = st.builds(
    Rate,
    prefix=st.just("1"),
    destination=st.just("x"),
    price_per_min_micros=st.one_of(st.just(0), st.integers(1, 2_000_000), st.integers(1, 10**9)),
    connect_fee_micros=st.one_of(st.just(0), st.integers(0, 500_000)),
    first_increment_s=st.sampled_from([1, 6, 30, 60, 90]),
    next_increment_s=st.sampled_from([1, 6, 30, 60]),
    min_duration_s=st.one_of(st.just(0), st.integers(0, 300)),
    grace_s=st.one_of(st.just(0), st.integers(0, 120)),
)
case = st.tuples(
    rates,
    st.integers(-5, 20_000),  # seconds
    st.one_of(st.integers(-1000, 10_000), st.integers(0, 10**12)),  # available
    st.integers(0, 14_400),  # cap
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(case, min_size=1, max_size=60))
def test_lua_equals_python(
    probe: tuple[redis.Redis, str], cases: list[tuple[Rate, int, int, int]]
) -> None:
    client, script = probe
    payload = json.dumps([[_lua_rate(r), s, a, c] for r, s, a, c in cases])
    got = json.loads(client.eval(script, 0, payload))  # type: ignore[no-untyped-call]
    for (r, seconds, available, cap), (lua_cost, lua_max) in zip(cases, got, strict=True):
        assert lua_cost == cost(r, seconds), (r, seconds)
        assert lua_max == max_seconds(r, available, cap), (r, available, cap)


# -- periods and rounding ------------------------------------------------------------

_TIMED_PROBE = """
local cases = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(cases) do
    local r = c[1]
    local at = c[5]
    if at < 0 then
        at = nil
    end
    local S = level_sched(r, at)
    out[i] = {call_cost(r, c[2], S), max_seconds(r, c[3], c[4], S)}
end
return cjson.encode(out)
"""

segment_lists = st.lists(
    st.tuples(st.integers(1, 900), st.integers(0, 2_000_000), st.integers(0, 90_000)),
    min_size=1,
    max_size=6,
)
roundings = st.sampled_from([Rounding(), Rounding(4, "up"), Rounding(4, "half_up"), Rounding(0)])
timed_case = st.tuples(
    rates,
    segment_lists,
    roundings,
    st.integers(-5, 5000),  # seconds
    st.one_of(st.integers(-1000, 10_000), st.integers(0, 10**9)),  # available
    st.integers(0, 7200),  # cap
    st.one_of(st.just(-1), st.integers(1_699_000_000, 1_700_004_000)),  # answer; -1 none
)


def _segments(parts: list[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
    out, t = [], 1_700_000_000
    for gap, price, fee in parts:
        out.append((t, price, fee))
        t += gap
    return tuple(out)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(timed_case, min_size=1, max_size=40))
def test_lua_equals_python_with_periods_and_rounding(
    probe: tuple[redis.Redis, str],
    cases: list[tuple[Rate, list[tuple[int, int, int]], Rounding, int, int, int, int]],
) -> None:
    client, script = probe
    lib = script[: -len(_PROBE)]
    payload, expected = [], []
    for r, parts, rnd, seconds, available, cap, answer in cases:
        segs = _segments(parts)
        # The worst case of an answer within the first 10 minutes of the schedule.
        worst = worst_case(segs, 1_700_000_000, 1_700_000_600)
        lua_rate = [
            *_lua_rate(r),
            rnd.quantum,
            1 if rnd.mode == "half_up" else 0,
            worst.script(),
            [x for seg in segs for x in seg],
        ]
        schedule = worst if answer < 0 else from_start(segs, answer)
        payload.append([lua_rate, seconds, available, cap, answer])
        expected.append(
            [cost(r, seconds, schedule, rnd), max_seconds(r, available, cap, schedule, rnd)]
        )
    got = json.loads(client.eval(lib + _TIMED_PROBE, 0, json.dumps(payload)))  # type: ignore[no-untyped-call]
    for case_, want, have in zip(cases, expected, got, strict=True):
        assert have == want, case_


# -- milliseconds --------------------------------------------------------------------

_MS_PROBE = """
local cases = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(cases) do
    local r = c[1]
    local at = c[3]
    if at < 0 then
        at = nil
    end
    out[i] = {call_cost_ms(r, c[2], level_sched(r, at)), billed_ms(r, c[2])}
end
return cjson.encode(out)
"""

ms_case = st.tuples(
    rates.map(lambda r: replace(r, next_increment_s=1)),
    st.sampled_from([1, 10, 100, 125, 500]),
    st.one_of(st.none(), segment_lists),
    roundings,
    st.one_of(st.integers(-5, 20_000), st.integers(0, 90_000_000)),  # ms
    st.integers(1_699_999_000, 1_700_004_000),  # answer
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(ms_case, min_size=1, max_size=40))
def test_lua_equals_python_in_milliseconds(
    probe: tuple[redis.Redis, str],
    cases: list[tuple[Rate, int, list[tuple[int, int, int]] | None, Rounding, int, int]],
) -> None:
    client, script = probe
    lib = script[: -len(_PROBE)]
    payload, expected = [], []
    for r, step_ms, parts, rnd, ms, answer in cases:
        rate = replace(r, next_increment_ms=step_ms)
        mode = 1 if rnd.mode == "half_up" else 0
        schedule = None
        if parts is None:
            lua_rate = [*_lua_rate(rate), rnd.quantum, mode, False, False, step_ms]
        else:
            segs = _segments(parts)
            worst = worst_case(segs, 1_700_000_000, 1_700_000_600)
            flat = [x for seg in segs for x in seg]
            lua_rate = [*_lua_rate(rate), rnd.quantum, mode, worst.script(), flat, step_ms]
            schedule = from_start(segs, answer)
        payload.append([lua_rate, ms, answer if parts is not None else -1])
        expected.append([cost_ms(rate, ms, schedule, rnd), billed_ms(rate, ms)])
    got = json.loads(client.eval(lib + _MS_PROBE, 0, json.dumps(payload)))  # type: ignore[no-untyped-call]
    for case_, want, have in zip(cases, expected, got, strict=True):
        assert have == want, case_
