from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.rating import Rate

JAN = datetime(2024, 1, 1, tzinfo=UTC)
FEB = datetime(2024, 2, 1, tzinfo=UTC)


def test_defaults() -> None:
    rate = Rate("44", "United Kingdom", 12345)
    assert rate.connect_fee_micros == 0
    assert (rate.first_increment_s, rate.next_increment_s) == (60, 60)
    assert (rate.min_duration_s, rate.grace_s) == (0, 0)
    assert rate.effective_from is None and rate.effective_to is None


def test_is_frozen_and_slotted() -> None:
    rate = Rate("44", "UK", 1)
    with pytest.raises(AttributeError):
        rate.price_per_min_micros = 2  # type: ignore[misc]
    assert not hasattr(rate, "__dict__")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prefix": ""}, "prefix"),
        ({"prefix": "44a"}, "prefix"),
        ({"prefix": "+44"}, "prefix"),
        ({"prefix": " 44"}, "prefix"),
        ({"prefix": "٤٤"}, "prefix"),  # Arabic-Indic digits pass str.isdigit()
        ({"prefix": "4²"}, "prefix"),
        ({"price_per_min_micros": -1}, "price_per_min_micros"),
        ({"connect_fee_micros": -1}, "connect_fee_micros"),
        ({"first_increment_s": 0}, "first_increment_s"),
        ({"next_increment_s": 0}, "next_increment_s"),
        ({"first_increment_s": -60}, "first_increment_s"),
        ({"min_duration_s": -1}, "min_duration_s"),
        ({"grace_s": -1}, "grace_s"),
        ({"effective_from": FEB, "effective_to": JAN}, "effective_to"),
        ({"effective_from": JAN, "effective_to": JAN}, "effective_to"),
        ({"effective_from": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"effective_to": datetime(2024, 1, 1)}, "timezone-aware"),
    ],
)
def test_invalid_values_raise_value_error(overrides: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"prefix": "44", "destination": "UK", "price_per_min_micros": 100}
    fields.update(overrides)
    with pytest.raises(ValueError, match=message):
        Rate(**fields)


@pytest.mark.parametrize(
    "overrides",
    [
        {"price_per_min_micros": 0.5},
        {"price_per_min_micros": True},
        {"connect_fee_micros": "10"},
        {"first_increment_s": 1.0},
        {"prefix": 44},
        {"effective_from": "2024-01-01"},
    ],
)
def test_wrong_types_raise_type_error(overrides: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"prefix": "44", "destination": "UK", "price_per_min_micros": 100}
    fields.update(overrides)
    with pytest.raises(TypeError):
        Rate(**fields)


def test_period_is_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    rate = Rate("49", "DE", 1, effective_from=datetime(2024, 1, 1, 2, 0, tzinfo=plus_two))
    assert rate.effective_from == JAN
    assert rate.effective_from is not None and rate.effective_from.tzinfo is UTC


def test_in_force_is_half_open() -> None:
    rate = Rate("44", "UK", 1, effective_from=JAN, effective_to=FEB)
    assert not rate.in_force(JAN - timedelta(microseconds=1))
    assert rate.in_force(JAN)
    assert rate.in_force(FEB - timedelta(microseconds=1))
    assert not rate.in_force(FEB)


def test_in_force_open_ends() -> None:
    assert Rate("44", "UK", 1).in_force(datetime(1970, 1, 1, tzinfo=UTC))
    assert Rate("44", "UK", 1, effective_from=JAN).in_force(datetime(2999, 1, 1, tzinfo=UTC))
    assert not Rate("44", "UK", 1, effective_to=JAN).in_force(JAN)


def test_in_force_compares_instants_across_time_zones() -> None:
    rate = Rate("44", "UK", 1, effective_from=JAN)
    new_york = timezone(timedelta(hours=-5))
    assert rate.in_force(datetime(2023, 12, 31, 19, 0, tzinfo=new_york))
    assert not rate.in_force(datetime(2023, 12, 31, 18, 59, tzinfo=new_york))


def test_in_force_rejects_naive_instant() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Rate("44", "UK", 1).in_force(datetime(2024, 1, 1))
