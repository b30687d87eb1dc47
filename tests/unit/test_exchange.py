"""Exact conversion of micro-units and the direction of a quote."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from gateway.agents.errors import Invalid
from gateway.agents.exchange import Quote, check_rate, convert, plain

QUOTE = Quote(7, "EUR", "USD", Decimal("1.085000000000"), datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("amount", "factor", "up", "expected"),
    [
        (10_000_000, Fraction("1.085"), True, 10_850_000),  # exact: no rounding at all
        (1_000_001, Fraction(1, 2), True, 500_001),  # 500000.5: the payer rounds up
        (1_000_001, Fraction(1, 2), False, 500_000),  # the payee rounds down
        (-1_000_001, Fraction(1, 2), True, -500_001),  # away from zero, sign kept
        (-1_000_001, Fraction(1, 2), False, -500_000),
        (1, Fraction(1, 3), False, 0),
        (1, Fraction(1, 3), True, 1),
        (10**15, Fraction("0.000000000001"), True, 1_000),
    ],
)
def test_convert_rounds_once_as_asked(
    amount: int, factor: Fraction, up: bool, expected: int
) -> None:
    assert convert(amount, factor, up=up) == expected


def test_a_quote_serves_both_directions_exactly() -> None:
    assert QUOTE.factor("EUR", "USD") == Fraction(1085, 1000)
    assert QUOTE.factor("USD", "EUR") == Fraction(1000, 1085)
    # Round trip of the inverse is exact: no float ever stands in between.
    assert convert(10_850_000, QUOTE.factor("USD", "EUR"), up=False) == 10_000_000
    with pytest.raises(ValueError, match="does not convert"):
        QUOTE.factor("EUR", "GBP")
    assert QUOTE.pair == "EUR/USD" and plain(QUOTE.rate) == Decimal("1.085")
    assert str(plain(Decimal("10.000000000000"))) == "10"


@pytest.mark.parametrize("rate", ["0", "-1", "1.0000000000001", "1000000000000", "NaN"])
def test_check_rate_refuses(rate: str) -> None:
    with pytest.raises(Invalid):
        check_rate(Decimal(rate))
