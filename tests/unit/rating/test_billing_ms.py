"""Sub-second increments: a call known to the millisecond, billed on a rate's
``next_increment_ms``, checked against a millisecond-by-millisecond reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import Rate, cost
from gateway.rating.billing import billed_ms, cost_ms
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.schedule import Schedule

ms_rates = st.builds(
    Rate,
    prefix=st.just("1"),
    destination=st.just("x"),
    price_per_min_micros=st.one_of(st.integers(0, 300_000), st.integers(0, 10**9)),
    connect_fee_micros=st.integers(0, 90_000),
    first_increment_s=st.sampled_from([1, 6, 30, 60]),
    next_increment_s=st.just(1),
    min_duration_s=st.sampled_from([0, 0, 30]),
    grace_s=st.sampled_from([0, 0, 3]),
    next_increment_ms=st.sampled_from([1, 10, 100, 125, 250, 500]),
)
schedules = st.one_of(
    st.none(),
    st.builds(
        lambda fee, first, later, at: Schedule(fee, (0, at), (first, later)),
        st.integers(0, 50_000),
        st.integers(0, 200_000),
        st.integers(0, 200_000),
        st.integers(1, 400),
    ),
)
roundings = st.sampled_from([EXACT, Rounding(4, "up"), Rounding(3, "half_up")])


def _reference(rate: Rate, ms: int, schedule: Schedule | None, rounding: Rounding) -> int:
    if ms <= 0 or ms <= rate.grace_s * 1000:
        return 0
    length = max(ms, rate.min_duration_s * 1000)
    first, step = rate.first_increment_s * 1000, rate.next_increment_ms or 1000
    billed = first
    while billed < length:
        billed += step
    if schedule is None:
        return rounding.apply(
            rate.connect_fee_micros + -(-billed * rate.price_per_min_micros // 60_000)
        )
    switch = schedule.offsets[1] * 1000
    weight = min(billed, switch) * schedule.prices[0] + max(0, billed - switch) * schedule.prices[1]
    return rounding.apply(schedule.fee + -(-weight // 60_000))


@given(ms_rates, st.integers(-5, 2_000_000), schedules, roundings)
def test_cost_ms_equals_the_reference(
    rate: Rate, ms: int, schedule: Schedule | None, rounding: Rounding
) -> None:
    assert cost_ms(rate, ms, schedule, rounding) == _reference(rate, ms, schedule, rounding)


@given(ms_rates, st.integers(0, 100_000), schedules, roundings)
def test_whole_seconds_cost_what_they_always_did_and_cover_their_milliseconds(
    rate: Rate, ms: int, schedule: Schedule | None, rounding: Rounding
) -> None:
    seconds = -(-ms // 1000)
    assert cost_ms(rate, seconds * 1000, schedule, rounding) == cost(
        rate, seconds, schedule, rounding
    )
    assert cost_ms(rate, ms, schedule, rounding) <= cost(rate, seconds, schedule, rounding)
    assert billed_ms(rate, ms) <= billed_ms(rate, ms + 1)


def test_a_tenth_of_a_second_increment() -> None:
    rate = Rate("44", "UK", 60_000, 0, 1, 1, next_increment_ms=100)
    assert billed_ms(rate, 12_345) == 12_400  # the first second, then tenths
    assert cost_ms(rate, 12_345) == 12_400  # 0.06/min is 1 micro per ms
    assert cost(rate, 13) == 13_000  # the same call in whole seconds


@pytest.mark.parametrize(
    ("step_ms", "step_s", "message"),
    [(300, 1, "divide 1000"), (1000, 1, "divide 1000"), (0, 1, "divide"), (100, 6, "= 1")],
)
def test_bad_sub_second_increments(step_ms: int, step_s: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rate("44", "UK", 1, next_increment_s=step_s, next_increment_ms=step_ms)
