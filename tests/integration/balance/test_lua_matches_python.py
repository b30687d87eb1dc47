"""The Lua pricing (lib.lua) equals the Python rating engine on every input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rating.billing import cost, max_seconds
from gateway.rating.rates import Rate

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
