"""Table-driven examples for billed_seconds, cost and max_seconds, worked by hand."""

from typing import Any

import pytest

from gateway.rating import Rate, billed_seconds, cost, max_seconds


def rate(**overrides: Any) -> Rate:
    fields: dict[str, Any] = {"prefix": "44", "destination": "UK", "price_per_min_micros": 60_000}
    fields.update(overrides)
    return Rate(**fields)


# 0.06/min = 1000 micros per second, which makes hand arithmetic obvious.
PER_SECOND_1000 = 60_000

R_60_60 = rate(price_per_min_micros=12_345)
R_30_6 = rate(first_increment_s=30, next_increment_s=6)
R_1_1 = rate(price_per_min_micros=12_345, first_increment_s=1, next_increment_s=1)
R_FEE = rate(price_per_min_micros=100_000, connect_fee_micros=50_000)
R_MIN = rate(first_increment_s=1, next_increment_s=1, min_duration_s=30)
R_MIN_OFF_GRID = rate(first_increment_s=30, next_increment_s=6, min_duration_s=40)
R_GRACE_1_1 = rate(first_increment_s=1, next_increment_s=1, grace_s=5)
R_GRACE_60 = rate(grace_s=3)
R_FREE = rate(price_per_min_micros=0)
R_FREE_WITH_FEE = rate(price_per_min_micros=0, connect_fee_micros=1_000)
R_HUGE = rate(price_per_min_micros=10**15, first_increment_s=1, next_increment_s=1)


@pytest.mark.parametrize(
    ("the_rate", "seconds", "billed", "micros"),
    [
        # 60/60 at 0.012345/min
        (R_60_60, 0, 0, 0),
        (R_60_60, -5, 0, 0),
        (R_60_60, 1, 60, 12_345),
        (R_60_60, 60, 60, 12_345),
        (R_60_60, 61, 120, 24_690),  # ceil(120 * 12345 / 60) = 24690
        (R_60_60, 120, 120, 24_690),  # exactly on a boundary
        (R_60_60, 121, 180, 37_035),  # one second past it
        # 30/6 at 1000 micros/s
        (R_30_6, 1, 30, 30_000),
        (R_30_6, 30, 30, 30_000),
        (R_30_6, 31, 36, 36_000),
        (R_30_6, 36, 36, 36_000),
        (R_30_6, 37, 42, 42_000),
        (R_30_6, 600, 600, 600_000),
        # 1/1 at 0.012345/min: 12345/60 = 205.75 rounds up once
        (R_1_1, 1, 1, 206),
        (R_1_1, 2, 2, 412),  # 411.5 -> 412, not 2 * 206
        (R_1_1, 4, 4, 823),  # 823.0 exactly, no rounding
        (R_1_1, 61, 61, 12_551),  # 12550.75 -> 12551
        # connect fee is charged once, only for billed calls
        (R_FEE, 0, 0, 0),
        (R_FEE, 10, 60, 150_000),
        (R_FEE, 61, 120, 250_000),
        # minimum duration
        (R_MIN, 5, 30, 30_000),
        (R_MIN, 30, 30, 30_000),
        (R_MIN, 31, 31, 31_000),
        (R_MIN_OFF_GRID, 5, 42, 42_000),  # min 40 rounds up to the 42 s boundary
        (R_MIN_OFF_GRID, 42, 42, 42_000),
        (R_MIN_OFF_GRID, 43, 48, 48_000),
        # grace: calls this short are free; longer ones pay from second zero
        (R_GRACE_1_1, 5, 0, 0),
        (R_GRACE_1_1, 6, 6, 6_000),
        (R_GRACE_60, 3, 0, 0),
        (R_GRACE_60, 4, 60, 60_000),
        # zero price
        (R_FREE, 3600, 3600, 0),
        (R_FREE_WITH_FEE, 3600, 3600, 1_000),
        (R_FREE_WITH_FEE, 0, 0, 0),
        # 1e9 currency/min for 1e6 s: 1e21 / 60 is not an integer; floats would lose it
        (R_HUGE, 10**6, 10**6, 16_666_666_666_666_666_667),
        (R_HUGE, 6, 6, 10**14),
    ],
)
def test_billed_seconds_and_cost(the_rate: Rate, seconds: int, billed: int, micros: int) -> None:
    assert billed_seconds(the_rate, seconds) == billed
    assert cost(the_rate, seconds) == micros


def test_cost_of_astronomical_price_is_exact() -> None:
    price = 10**40 + 7
    the_rate = rate(price_per_min_micros=price, first_increment_s=1, next_increment_s=1)
    assert cost(the_rate, 7) == -(-(7 * price) // 60)
    assert cost(the_rate, 7) == (7 * price + 59) // 60


@pytest.mark.parametrize(
    ("the_rate", "available", "cap", "expected"),
    [
        # 60/60 at 12345: 60 s costs 12345, 120 s costs 24690
        (R_60_60, 24_690, 3600, 120),
        (R_60_60, 24_689, 3600, 60),
        (R_60_60, 12_345, 3600, 60),
        (R_60_60, 12_344, 3600, 0),
        (R_60_60, 0, 3600, 0),
        (R_60_60, 10**12, 3600, 3600),
        (R_60_60, 10**12, 100, 60),  # cap is not a boundary: largest boundary below it
        (R_60_60, 10**12, 120, 120),
        (R_60_60, 12_345, 30, 30),  # cap inside the first increment, which is affordable
        (R_60_60, 12_344, 30, 0),  # ... and which is not
        # 30/6 at 1000/s: budget of 45 s -> largest boundary 42
        (R_30_6, 45_000, 3600, 42),
        (R_30_6, 42_000, 3600, 42),
        (R_30_6, 41_999, 3600, 36),
        (R_30_6, 29_999, 3600, 0),
        (R_30_6, 30_000, 20, 20),
        (R_30_6, 10**9, 40, 36),
        # 1/1 at 12345: 2 s = 412, 3 s = 618
        (R_1_1, 617, 3600, 2),
        (R_1_1, 618, 3600, 3),
        (R_1_1, 205, 3600, 0),
        # connect fee must fit together with the first increment
        (R_FEE, 149_999, 3600, 0),
        (R_FEE, 150_000, 3600, 60),
        (R_FEE, 250_000, 3600, 120),
        # minimum duration: nothing shorter than 30 s can be sold
        (R_MIN, 29_999, 3600, 0),
        (R_MIN, 30_000, 3600, 30),
        (R_MIN, 30_999, 3600, 30),
        (R_MIN, 31_000, 3600, 31),
        (R_MIN_OFF_GRID, 41_999, 3600, 0),
        (R_MIN_OFF_GRID, 42_000, 3600, 42),
        # grace longer than the first increment: the free boundaries are granted
        (R_GRACE_1_1, 0, 3600, 5),
        (R_GRACE_1_1, 5_999, 3600, 5),
        (R_GRACE_1_1, 6_000, 3600, 6),
        (R_GRACE_1_1, 0, 3, 3),
        # grace shorter than the first increment gives nothing without credit
        (R_GRACE_60, 0, 3600, 0),
        (R_GRACE_60, 59_999, 3600, 0),
        (R_GRACE_60, 60_000, 3600, 60),
        # free rates
        (R_FREE, 0, 3601, 3601),  # not rounded to a boundary: nothing to protect
        (R_FREE_WITH_FEE, 999, 3601, 0),
        (R_FREE_WITH_FEE, 1_000, 3601, 3600),
        # degenerate inputs
        (R_60_60, 10**12, 0, 0),
        (R_60_60, 10**12, -1, 0),
        (R_60_60, -1, 3600, 0),
        (R_FREE, -1, 3600, 0),
        # 1e9/min for 1e18 micros: exactly 60000 s
        (R_HUGE, 10**18, 10**9, 60_000),
        (R_HUGE, 10**18 - 1, 10**9, 59_999),
    ],
)
def test_max_seconds(the_rate: Rate, available: int, cap: int, expected: int) -> None:
    assert max_seconds(the_rate, available, cap) == expected
    if expected > 0:
        assert cost(the_rate, expected) <= available
