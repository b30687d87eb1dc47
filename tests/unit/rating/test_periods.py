"""Time-of-day periods: their text, the price changes they make in a zone, and
billing a call split across them, checked against a second-by-second reference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import Rate
from gateway.rating.billing import billed_seconds, cost, max_seconds
from gateway.rating.periods import Period, Periods, parse_periods, segments
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.schedule import from_start, worst_case

PEAK = "mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08"


def _unix(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_text_round_trips_and_reads_days() -> None:
    items = parse_periods("  Mon-Wed,fri 08:00-18:00 0.10 ; sat,sun 00:00-24:00 0.02 0 ")
    assert items[0].days == frozenset({0, 1, 2, 4})
    assert items[1] == Period(frozenset({5, 6}), 0, 1440, 20_000, 0)
    text = Periods(items).text()
    assert text == "mon-wed,fri 08:00-18:00 0.1; sat-sun 00:00-24:00 0.02 0"
    assert parse_periods(text) == items
    assert parse_periods("") == ()


@pytest.mark.parametrize(
    ("text", "zone", "message"),
    [
        ("mon 18:00-08:00 0.1", "UTC", "split a night period"),
        ("xyz 08:00-09:00 0.1", "UTC", "bad days"),
        ("fri-mon 08:00-09:00 0.1", "UTC", "wrap"),
        ("mon 08:00-25:00 0.1", "UTC", "bad time"),
        ("mon 08:00-09:00 0.1234567", "UTC", "6 decimals"),
        ("mon-fri 08:00-18:00 0.1; fri 17:00-19:00 0.2", "UTC", "overlap"),
        ("mon 08:00-09:00 0.1", "Mars/Olympus", "unknown time zone"),
        ("mon 08:00-09:00 0.1", "America", "unknown time zone"),
        ("peak 0.1", "UTC", "bad period"),
    ],
)
def test_bad_periods_are_named(text: str, zone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Periods(parse_periods(text), zone)


def test_segments_follow_local_time_across_daylight_saving() -> None:
    periods = Periods(parse_periods("mon-fri 08:00-18:00 0.1 0.05"), "Europe/Paris")
    # Fri 27 March 2026 (UTC+1) to Mon 30 March (UTC+2, after the change on the 29th).
    segs = segments(periods, 50_000, 0, _unix(2026, 3, 27, 0), _unix(2026, 3, 31, 0))
    assert segs == (
        (_unix(2026, 3, 27, 0), 50_000, 0),
        (_unix(2026, 3, 27, 7), 100_000, 50_000),  # 08:00 CET
        (_unix(2026, 3, 27, 17), 50_000, 0),
        (_unix(2026, 3, 30, 6), 100_000, 50_000),  # 08:00 CEST
        (_unix(2026, 3, 30, 16), 50_000, 0),
    )


def test_a_call_across_the_peak_start_is_split_there() -> None:
    periods = Periods(parse_periods(PEAK), "Europe/Paris")
    rate = Rate("33", "France", 50_000, 20_000, 30, 6, periods=periods)
    start = _unix(2026, 12, 3, 6, 55)  # Thursday 07:55 in Paris: 5 minutes to peak
    segs = segments(periods, 50_000, 20_000, start, start + 7200)
    schedule = from_start(segs, start)
    # 10 min 1 s billed as 606 s (30/6): 300 s off-peak, 306 s peak; off-peak fee.
    assert billed_seconds(rate, 601) == 606
    assert cost(rate, 601, schedule) == 20_000 + (300 * 50_000 + 306 * 100_000 + 59) // 60
    # Started at 08:00 sharp, the same call pays the peak fee and price throughout.
    at_peak = from_start(segs, start + 300)
    assert cost(rate, 601, at_peak) == 50_000 + 606 * 100_000 // 60
    # 1.00 of credit: 19.6 min off-peak would be the grant without periods; the split
    # leaves (1.00 - 0.02 - 0.25 for the off-peak 5 min) / 0.10 = 7.3 min of peak.
    assert max_seconds(rate, 1_000_000, 7200) == 1176
    assert max_seconds(rate, 1_000_000, 7200, schedule) == 300 + 438
    worst = worst_case(segs, start - 60, start + 120)
    assert max_seconds(rate, 1_000_000, 7200, worst) < 300 + 438


# -- against a reference -------------------------------------------------------------

segment_lists = st.lists(
    st.tuples(st.integers(1, 900), st.integers(0, 300_000), st.integers(0, 90_000)),
    min_size=1,
    max_size=6,
).map(lambda parts: _as_segments(1_000_000, parts))


def _as_segments(t0: int, parts: list[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
    out, t = [], t0
    for gap, price, fee in parts:
        out.append((t, price, fee))
        t += gap
    return tuple(out)


def _reference_cost(
    rate: Rate, segs: tuple[tuple[int, int, int], ...], start: int, seconds: int, rnd: Rounding
) -> int:
    """Second by second: each billed second at the price in force then."""

    def at(t: int) -> tuple[int, int]:
        found = segs[0]
        for seg in segs:
            if seg[0] <= t:
                found = seg
        return found[1], found[2]

    billed = billed_seconds(rate, seconds)
    if billed == 0:
        return 0
    weight = sum(at(start + x)[0] for x in range(billed))
    return rnd.apply(at(start)[1] + -(-weight // 60))


rates = st.builds(
    Rate,
    prefix=st.just("1"),
    destination=st.just("x"),
    price_per_min_micros=st.integers(0, 300_000),
    connect_fee_micros=st.integers(0, 90_000),
    first_increment_s=st.sampled_from([1, 6, 30, 60]),
    next_increment_s=st.sampled_from([1, 6, 30, 60]),
    min_duration_s=st.sampled_from([0, 0, 30, 90]),
    grace_s=st.sampled_from([0, 0, 5]),
)
roundings = st.sampled_from([EXACT, Rounding(4, "up"), Rounding(4, "half_up"), Rounding(2)])


@given(rates, segment_lists, st.integers(999_000, 1_004_000), st.integers(0, 3000), roundings)
def test_cost_equals_the_reference(
    rate: Rate, segs: tuple[tuple[int, int, int], ...], start: int, seconds: int, rnd: Rounding
) -> None:
    schedule = from_start(segs, start)
    assert cost(rate, seconds, schedule, rnd) == _reference_cost(rate, segs, start, seconds, rnd)


@given(rates, segment_lists, st.integers(0, 400_000), st.integers(0, 2000), roundings)
def test_grant_is_affordable_and_maximal(
    rate: Rate, segs: tuple[tuple[int, int, int], ...], available: int, cap: int, rnd: Rounding
) -> None:
    schedule = from_start(segs, 1_000_000)
    granted = max_seconds(rate, available, cap, schedule, rnd)
    assert 0 <= granted <= cap
    if granted:
        assert cost(rate, granted, schedule, rnd) <= available
    # No longer increment boundary up to the cap is affordable.
    first, step = rate.first_increment_s, rate.next_increment_s
    longer = [b for b in range(first, cap + 1, step) if b > granted]
    if not schedule.free:
        assert all(cost(rate, b, schedule, rnd) > available for b in longer[:50])


@given(
    rates,
    segment_lists,
    st.integers(999_000, 1_003_000),
    st.integers(0, 300),
    st.integers(0, 3000),
    st.data(),
)
def test_worst_case_is_never_cheaper_than_any_answer_time(
    rate: Rate,
    segs: tuple[tuple[int, int, int], ...],
    earliest: int,
    window: int,
    seconds: int,
    data: st.DataObject,
) -> None:
    worst = worst_case(segs, earliest, earliest + window)
    answer = data.draw(st.integers(earliest, earliest + window))
    assert cost(rate, seconds, from_start(segs, answer)) <= cost(rate, seconds, worst)


@given(st.integers(0, 10**9), roundings)
def test_rounding_budget_is_the_largest_cost_that_fits(available: int, rnd: Rounding) -> None:
    budget = rnd.budget(available)
    assert rnd.apply(budget) <= available < rnd.apply(budget + 1) or rnd.exact
    assert rnd.apply(budget) % rnd.quantum == 0


def test_rounding_modes() -> None:
    assert Rounding(4, "up").apply(1_001) == 1_100
    assert Rounding(4, "half_up").apply(1_049) == 1_000
    assert Rounding(4, "half_up").apply(1_050) == 1_100
    assert Rounding(0).apply(1) == 1_000_000
    with pytest.raises(ValueError, match="decimals"):
        Rounding(7)
    with pytest.raises(ValueError, match="rounding"):
        Rounding(2, "down")
