"""Properties of billing that must hold for every rate and balance."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import Rate, billed_seconds, cost, max_seconds

from .strategies import rates

plain_rates = rates(with_periods=False)
balances = st.one_of(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**30),
)
caps = st.integers(min_value=0, max_value=100_000)
durations = st.integers(min_value=-10, max_value=100_000)


def is_boundary(rate: Rate, seconds: int) -> bool:
    first = rate.first_increment_s
    return seconds >= first and (seconds - first) % rate.next_increment_s == 0


def next_boundary_after(rate: Rate, seconds: int) -> int:
    first = rate.first_increment_s
    if seconds < first:
        return first
    return first + ((seconds - first) // rate.next_increment_s + 1) * rate.next_increment_s


@given(plain_rates, balances, caps)
def test_granted_time_is_affordable_and_maximal(rate: Rate, available: int, cap: int) -> None:
    granted = max_seconds(rate, available, cap)
    assert 0 <= granted <= cap
    assert cost(rate, granted) <= available
    following = next_boundary_after(rate, granted)
    if following <= cap:
        assert cost(rate, following) > available


@given(plain_rates, balances, caps)
def test_granted_time_is_a_boundary_or_the_cap(rate: Rate, available: int, cap: int) -> None:
    granted = max_seconds(rate, available, cap)
    assert granted == 0 or granted == cap or is_boundary(rate, granted)


@given(plain_rates, balances, st.integers(min_value=1, max_value=119))
def test_cap_inside_first_increment(rate: Rate, available: int, cap: int) -> None:
    if cap >= rate.first_increment_s:
        return
    expected = cap if cost(rate, rate.first_increment_s) <= available else 0
    assert max_seconds(rate, available, cap) == expected


@given(
    rates(with_periods=False, max_grace=40, max_min_duration=60),
    st.integers(min_value=0, max_value=5_000),
    st.integers(min_value=0, max_value=600),
)
def test_matches_brute_force(rate: Rate, available: int, cap: int) -> None:
    if rate.price_per_min_micros == 0 and rate.connect_fee_micros == 0:
        expected = cap
    elif cap < rate.first_increment_s:
        expected = cap if cap > 0 and cost(rate, rate.first_increment_s) <= available else 0
    else:
        affordable = [
            seconds
            for seconds in range(rate.first_increment_s, cap + 1, rate.next_increment_s)
            if cost(rate, seconds) <= available
        ]
        expected = max(affordable, default=0)
    assert max_seconds(rate, available, cap) == expected


@given(plain_rates, durations, durations)
def test_cost_is_monotonic(rate: Rate, a: int, b: int) -> None:
    shorter, longer = sorted((a, b))
    assert billed_seconds(rate, shorter) <= billed_seconds(rate, longer)
    assert cost(rate, shorter) <= cost(rate, longer)


@given(plain_rates, durations)
def test_billed_covers_the_call_on_a_boundary(rate: Rate, seconds: int) -> None:
    billed = billed_seconds(rate, seconds)
    if seconds <= 0 or seconds <= rate.grace_s:
        assert billed == 0
        return
    assert is_boundary(rate, billed)
    assert billed >= max(seconds, rate.min_duration_s)
    # ... and it is the smallest such boundary
    assert billed - rate.next_increment_s < max(seconds, rate.min_duration_s) or (
        billed == rate.first_increment_s
    )


@given(plain_rates, durations)
def test_cost_equals_exact_price_rounded_up_once(rate: Rate, seconds: int) -> None:
    billed = billed_seconds(rate, seconds)
    if billed == 0:
        assert cost(rate, seconds) == 0
        return
    exact = Fraction(billed * rate.price_per_min_micros, 60)
    charged = cost(rate, seconds) - rate.connect_fee_micros
    assert exact <= charged < exact + 1
