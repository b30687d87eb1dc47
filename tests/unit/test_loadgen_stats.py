"""Latency percentiles, the call plan and the summary of the load generator."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from gateway.loadgen.plan import (
    REFUSE_UNKNOWN,
    REFUSE_UNRATED,
    Caller,
    Population,
    parse_duration,
    plan_calls,
    session_prefix,
)
from gateway.loadgen.stats import (
    AUTH,
    STOP,
    Counters,
    LatencyStats,
    Snapshot,
    format_summary,
    percentile,
    progress_line,
    summary,
)
from gateway.loadgen.verify import expected_costs
from gateway.rating.billing import cost
from gateway.rating.rates import Rate


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # rank ceil(0.5 * 4) = 2


def test_latency_summary_in_milliseconds_and_from_an_index() -> None:
    stats = LatencyStats()
    for ms in [*range(1, 101), 1000]:
        stats.add(ms / 1000)
    whole = stats.summary()
    assert whole.count == 101
    assert (whole.p50_ms, whole.p99_ms, whole.max_ms) == pytest.approx((51, 100, 1000))
    tail = stats.summary(start=99)  # the last interval only: 100 ms and 1000 ms
    assert (tail.count, tail.p50_ms, tail.max_ms) == (2, pytest.approx(100), pytest.approx(1000))
    assert LatencyStats().summary().as_dict() == {
        "count": 0,
        "p50_ms": 0.0,
        "p95_ms": 0.0,
        "p99_ms": 0.0,
        "max_ms": 0.0,
        "mean_ms": 0.0,
    }


def test_summary_reports_rates_latency_refusals_and_cpu() -> None:
    counters = Counters(started=10, finished=10, accepted=8, refused=2, stops_acked=8)
    counters.sent = [10, 8, 0, 8]
    counters.retransmits = [1, 0, 0, 1]
    counters.refusals = Counter({"h323-return-code=9 Destination not allowed": 2})
    latencies = [LatencyStats() for _ in range(4)]
    latencies[AUTH].add(0.002)
    latencies[STOP].add(0.040)
    data = summary(
        counters,
        latencies,
        planned=10,
        target_rate=5,
        wall_s=2.0,
        cpu_s=0.1,
        precompute_s=0.01,
    )
    json.dumps(data)  # machine-readable as it is
    assert data["calls_per_s"] == 5.0
    assert data["requests_per_s"] == 14.0  # 26 sent + 2 retransmitted over 2 s
    assert data["latency"]["stop"]["p50_ms"] == 40.0
    assert data["retransmits"] == {"auth": 1, "start": 0, "interim": 0, "stop": 1}
    assert data["generator"]["cpu_percent"] == 5.0
    assert data["generator"]["cpu_us_per_request"] == pytest.approx(0.1 / 28 * 1e6, abs=0.01)
    text = format_summary(data)
    assert "5 calls/s" in text and "Destination not allowed" in text and "5% of one core" in text


def test_progress_line_shows_the_last_interval() -> None:
    counters = Counters(started=300, finished=250)
    auth = LatencyStats()
    for _ in range(100):
        auth.add(0.001)
    for _ in range(100):
        auth.add(0.009)
    line = progress_line(
        counters,
        auth,
        Snapshot(0.0, 0.0, 100, 300, 100),
        Snapshot(1.0, 0.25, 250, 750, 200),
        elapsed_s=3.0,
        in_flight=12,
        active=50,
    )
    assert "150 calls/s" in line and "450 req/s" in line
    assert "auth p99    9.0 ms" in line and "cpu  25%" in line and "in flight    12" in line


def test_parse_duration() -> None:
    assert parse_duration("0:5") == (0, 5)
    assert parse_duration("90") == (90, 90)
    for bad in ("5:1", "-1:3", "a", "1:b"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def _population() -> Population:
    callers = tuple(
        Caller(i, f"ext{i}", f"pw{i}", (f"4479{i}", f"4478{i}"), ("4930", "447"))
        for i in range(1, 4)
    )
    return Population(callers, ("99912",), 5, {}, {})


def test_plan_spreads_refusals_and_callers() -> None:
    calls = plan_calls(_population(), 1000, run_id="r1", durations=(0, 5), refuse_share=0.1, seed=3)
    kinds = Counter(c.refuse for c in calls)
    assert kinds == {"": 900, REFUSE_UNRATED: 50, REFUSE_UNKNOWN: 50}
    assert all(c.session_id == f"{session_prefix('r1')}{c.index}" for c in calls)
    assert len({c.session_id for c in calls}) == 1000
    assert {c.duration_s for c in calls} == set(range(6))
    for c in calls:
        if c.refuse == REFUSE_UNKNOWN:
            assert c.customer_id is None and c.username.startswith("lgr1-nobody")
        else:
            assert c.customer_id == c.index % 3 + 1 and c.username == f"ext{c.customer_id}"
        if c.refuse == REFUSE_UNRATED:
            assert c.called.startswith("99912")
        assert len(c.called) == len(c.dial_prefix) + 5
    # Refusals are spread, not bunched: every block of 100 calls has 10.
    assert all(sum(bool(c.refuse) for c in calls[i : i + 100]) == 10 for i in range(0, 1000, 100))
    again = plan_calls(_population(), 1000, run_id="r1", durations=(0, 5), refuse_share=0.1, seed=3)
    assert again == calls


def test_expected_costs_per_paying_level() -> None:
    retail = Rate("4930", "Berlin", 15_000, 0, 60, 60)
    wholesale = Rate("4930", "Berlin", 9_000, 0, 60, 60)
    population = Population(
        _population().callers, ("999",), 5, {(1, "4930"): ((1, retail), (10, wholesale))}, {}
    )
    call = plan_calls(population, 1, run_id="x", durations=(61, 61), refuse_share=0, seed=1)[0]
    call = dataclasses.replace(call, dial_prefix="4930")
    assert expected_costs(population, call) == {1: cost(retail, 61), 10: cost(wholesale, 61)}
    assert expected_costs(population, call)[1] == 30_000  # two minutes at 0.015
