"""Hypothesis strategies shared by the rating tests."""

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from gateway.rating import Rate

DIGITS = "0123456789"

instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)

# Realistic money: mostly tariff-sized, sometimes zero, sometimes absurdly large.
prices = st.one_of(
    st.just(0),
    st.integers(min_value=1, max_value=10_000_000),
    st.integers(min_value=0, max_value=10**24),
)
fees = st.one_of(st.just(0), st.integers(min_value=0, max_value=2_000_000))
increments = st.integers(min_value=1, max_value=120)

# Printable destination names without control characters or edge whitespace,
# since the CSV reader strips fields.
destinations = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=30,
).map(str.strip)


@st.composite
def periods(
    draw: st.DrawFn, moments: st.SearchStrategy[datetime] = instants
) -> tuple[datetime | None, datetime | None]:
    """An optional effective_from and an optional effective_to after it."""
    start = draw(st.none() | moments)
    if not draw(st.booleans()):
        return start, None
    base = start if start is not None else draw(moments)
    length = draw(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650)))
    return start, base + length


@st.composite
def rates(
    draw: st.DrawFn,
    *,
    prefixes: st.SearchStrategy[str] | None = None,
    with_periods: bool = True,
    moments: st.SearchStrategy[datetime] = instants,
    max_grace: int = 120,
    max_min_duration: int = 300,
) -> Rate:
    """Any valid Rate; callers narrow prefixes to force collisions."""
    prefix = draw(prefixes if prefixes is not None else st.text(DIGITS, min_size=1, max_size=8))
    start, end = draw(periods(moments)) if with_periods else (None, None)
    return Rate(
        prefix=prefix,
        destination=draw(destinations),
        price_per_min_micros=draw(prices),
        connect_fee_micros=draw(fees),
        first_increment_s=draw(increments),
        next_increment_s=draw(increments),
        min_duration_s=draw(st.integers(min_value=0, max_value=max_min_duration)),
        grace_s=draw(st.integers(min_value=0, max_value=max_grace)),
        effective_from=start,
        effective_to=end,
    )
