from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import Rate, RateTable, RatingIndex, UnknownRateGroup

from .strategies import rates

Y2023 = datetime(2023, 1, 1, tzinfo=UTC)
Y2024 = datetime(2024, 1, 1, tzinfo=UTC)
JUN_2024 = datetime(2024, 6, 1, tzinfo=UTC)
NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)

UK = Rate("44", "United Kingdom", 10_000)
UK_MOBILE = Rate("447", "United Kingdom mobile", 50_000)
UK_VODAFONE = Rate("4477", "United Kingdom mobile Vodafone", 60_000)
US = Rate("1", "USA/Canada", 5_000)
NYC = Rate("1212", "USA New York", 4_000)


@pytest.fixture
def table() -> RateTable:
    return RateTable([UK, UK_MOBILE, UK_VODAFONE, US, NYC])


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("447700900123", UK_VODAFONE),
        ("447912345678", UK_MOBILE),
        ("442071234567", UK),
        ("44", UK),
        ("447", UK_MOBILE),
        ("12125550100", NYC),
        ("13105550100", US),
        ("4", None),
        ("33123456789", None),
        ("", None),
        ("+442071234567", None),  # lookups expect normalised digits
    ],
)
def test_longest_prefix_wins(table: RateTable, number: str, expected: Rate | None) -> None:
    assert table.lookup(number, NOW) is expected


def test_falls_back_to_shorter_prefix_when_longest_is_not_in_force() -> None:
    future_mobile = Rate("447", "UK mobile", 50_000, effective_from=JUN_2024)
    expired_vodafone = Rate("4477", "UK Vodafone", 60_000, effective_to=Y2024)
    table = RateTable([UK, future_mobile, expired_vodafone])
    assert table.lookup("447700900123", NOW) is UK
    assert table.lookup("447700900123", JUN_2024) is future_mobile
    assert table.lookup("447700900123", Y2023) is expired_vodafone


def test_picks_the_period_in_force_for_a_shared_prefix() -> None:
    old = Rate("44", "UK", 10_000, effective_from=Y2023, effective_to=Y2024)
    new = Rate("44", "UK", 12_000, effective_from=Y2024)
    table = RateTable([new, old])
    assert table.lookup("442071234567", Y2023) is old
    assert table.lookup("442071234567", Y2024 - timedelta(microseconds=1)) is old
    assert table.lookup("442071234567", Y2024) is new
    assert table.lookup("442071234567", Y2023 - timedelta(days=1)) is None


def test_newest_rate_supersedes_open_ended_older_one() -> None:
    base = Rate("44", "UK", 10_000)
    raise_2024 = Rate("44", "UK", 12_000, effective_from=Y2024)
    cut_june = Rate("44", "UK", 9_000, effective_from=JUN_2024)
    table = RateTable([cut_june, base, raise_2024])
    assert table.lookup("44", Y2023) is base
    assert table.lookup("44", NOW) is raise_2024
    assert table.lookup("44", JUN_2024) is cut_june


def test_duplicate_prefix_and_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate rate for prefix 44"):
        RateTable([Rate("44", "UK", 1), Rate("44", "UK again", 2)])
    with pytest.raises(ValueError, match="duplicate rate for prefix 44 with effective_from 2024"):
        RateTable(
            [Rate("44", "UK", 1, effective_from=Y2024), Rate("44", "UK", 2, effective_from=Y2024)]
        )


def test_naive_lookup_instant_is_rejected(table: RateTable) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        table.lookup("44", datetime(2024, 1, 1))


def test_len_iteration_and_max_length() -> None:
    shared = [Rate("44", "UK", 1, effective_to=Y2024), Rate("44", "UK", 2, effective_from=Y2024)]
    table = RateTable([*shared, UK_MOBILE, NYC])
    assert len(table) == 4
    assert sorted(table, key=repr) == sorted([*shared, UK_MOBILE, NYC], key=repr)
    assert table.max_prefix_length == 4
    assert "4 rates" in repr(table)


def test_empty_table() -> None:
    table = RateTable([])
    assert len(table) == 0
    assert list(table) == []
    assert table.max_prefix_length == 0
    assert table.lookup("442071234567", NOW) is None


def test_accepts_a_generator() -> None:
    table = RateTable(Rate(str(n), f"dest {n}", n) for n in range(100, 200))
    assert len(table) == 100
    assert table.lookup("1500000", NOW) == Rate("150", "dest 150", 150)


def brute_force(candidates: list[Rate], number: str, at: datetime) -> Rate | None:
    in_force = [r for r in candidates if number.startswith(r.prefix) and r.in_force(at)]
    if not in_force:
        return None
    longest = max(len(r.prefix) for r in in_force)
    same_prefix = [r for r in in_force if len(r.prefix) == longest]
    return max(same_prefix, key=lambda r: (r.effective_from is not None, r.effective_from or at))


# A tiny alphabet and a handful of instants make prefix and period collisions likely.
small_prefixes = st.text("123", min_size=1, max_size=4)
instants = st.sampled_from(
    [datetime(year, 1, 1, tzinfo=UTC) for year in (2000, 2020, 2024, 2030, 2050)]
)


@st.composite
def unique_rates(draw: st.DrawFn) -> list[Rate]:
    drawn = draw(st.lists(rates(prefixes=small_prefixes, moments=instants), max_size=30))
    seen: set[tuple[str, datetime | None]] = set()
    unique = []
    for rate in drawn:
        key = (rate.prefix, rate.effective_from)
        if key not in seen:
            seen.add(key)
            unique.append(rate)
    return unique


@given(unique_rates(), st.text("123", max_size=7), instants)
def test_lookup_matches_brute_force(candidates: list[Rate], number: str, at: datetime) -> None:
    assert RateTable(candidates).lookup(number, at) == brute_force(candidates, number, at)


class TestRatingIndex:
    def test_lookup_by_group(self) -> None:
        cheap = RateTable([Rate("44", "UK", 5_000)])
        dear = RateTable([Rate("44", "UK", 9_000)])
        index = RatingIndex({1: cheap, 2: dear})
        found_cheap = index.lookup(1, "442071234567", NOW)
        found_dear = index.lookup(2, "442071234567", NOW)
        assert found_cheap is not None and found_cheap.price_per_min_micros == 5_000
        assert found_dear is not None and found_dear.price_per_min_micros == 9_000
        assert index.lookup(1, "33123", NOW) is None

    def test_unknown_group_is_an_error_not_a_missing_route(self) -> None:
        index = RatingIndex({1: RateTable([UK])})
        with pytest.raises(UnknownRateGroup):
            index.lookup(7, "44", NOW)
        with pytest.raises(KeyError):
            index[7]

    def test_is_a_read_only_mapping(self) -> None:
        table = RateTable([UK])
        source = {1: table}
        index = RatingIndex(source)
        source[2] = table
        assert len(index) == 1
        assert list(index) == [1]
        assert index[1] is table
        assert 1 in index and 2 not in index
        assert index.get(2) is None
        assert "1 rate groups" in repr(index)

    def test_with_table_returns_a_new_index(self) -> None:
        index = RatingIndex({1: RateTable([UK])})
        replacement = RateTable([UK_MOBILE])
        updated = index.with_table(1, replacement).with_table(2, RateTable([US]))
        assert index.lookup(1, "447912345678", NOW) is UK
        assert updated.lookup(1, "447912345678", NOW) is UK_MOBILE
        assert set(updated) == {1, 2} and set(index) == {1}

    def test_from_rows_groups_rates(self) -> None:
        index = RatingIndex.from_rows([(1, UK), (2, US), (1, UK_MOBILE)])
        assert len(index[1]) == 2 and len(index[2]) == 1
        assert index.lookup(1, "447912345678", NOW) is UK_MOBILE
        assert index.lookup(2, "447912345678", NOW) is None

    def test_empty(self) -> None:
        assert len(RatingIndex()) == 0
