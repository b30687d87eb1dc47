"""Invoice tax and numbering rules: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.agents.invoices import invoice_number, previous_month
from gateway.agents.statement import Tax, kind_label, tax_of


def test_the_readme_examples() -> None:
    # 20 % on 12.00 of charges: on top, 2.40 more; included, 2.00 of the 12.00.
    assert tax_of(12_000_000, 2000, inclusive=False) == Tax(
        2000, False, 12_000_000, 2_400_000, 14_400_000
    )
    inclusive = tax_of(12_000_000, 2000, inclusive=True)
    assert (inclusive.net_micros, inclusive.tax_micros, inclusive.gross_micros) == (
        10_000_000,
        2_000_000,
        12_000_000,
    )


@pytest.mark.parametrize(
    ("charges", "rate_bp", "inclusive", "tax"),
    [
        (5, 1000, False, 1),  # 0.5 rounds half away from zero
        (4, 1000, False, 0),  # 0.4 rounds down
        (-5, 1000, False, -1),  # a refund's tax mirrors a charge's
        (11, 1000, True, 1),  # 11 * 0.1 / 1.1 = 1 exactly
        (0, 2500, True, 0),
        (1_000_000, 0, False, 0),
    ],
)
def test_rounding(charges: int, rate_bp: int, inclusive: bool, tax: int) -> None:
    assert tax_of(charges, rate_bp, inclusive).tax_micros == tax


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=0, max_value=10_000),
    st.booleans(),
)
def test_net_plus_tax_is_gross_and_within_half_a_micro(
    charges: int, rate_bp: int, inclusive: bool
) -> None:
    tax = tax_of(charges, rate_bp, inclusive)
    assert tax.net_micros + tax.tax_micros == tax.gross_micros
    assert (tax.gross_micros if inclusive else tax.net_micros) == charges
    rate = Fraction(rate_bp, 10_000)
    exact = charges * rate / (1 + rate) if inclusive else charges * rate
    assert abs(tax.tax_micros - exact) <= Fraction(1, 2)


def test_numbers_and_periods() -> None:
    assert invoice_number("OP", None, 2026, 7) == "OP-2026-000007"
    assert invoice_number("OP", 42, 2026, 123_456) == "A42-2026-123456"
    assert previous_month(datetime(2026, 1, 15, 8, tzinfo=UTC)) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert previous_month(datetime(2026, 3, 1, tzinfo=UTC))[0] == datetime(2026, 2, 1, tzinfo=UTC)


def test_every_kind_has_a_label() -> None:
    assert kind_label("recurring") == "Recurring charge"
    assert kind_label("call_debit") == "Calls"
    assert kind_label("did_setup_fee") == "Did setup fee"  # a kind added later still reads
