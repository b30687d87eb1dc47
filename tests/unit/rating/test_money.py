import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import MICROS_PER_UNIT, format_money, parse_money


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0", 0),
        ("-0", 0),
        ("1", 1_000_000),
        ("0.0123", 12_300),
        ("0.012345", 12_345),
        ("0.000001", 1),
        ("0.1", 100_000),  # 0.1 has no exact binary float; must still be exact
        ("0.30", 300_000),
        ("1.000000", 1_000_000),
        (".5", 500_000),
        ("-1.5", -1_500_000),
        ("-0.000001", -1),
        ("  2.50\t", 2_500_000),
        ("007", 7_000_000),
        ("123456789012345678901234567890.123456", 123456789012345678901234567890123456),
    ],
)
def test_parse_money(text: str, micros: int) -> None:
    assert parse_money(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "0.0000005",
        "0.0000010",  # seven decimals, even if the last is zero
        "1e3",
        "1E-3",
        "+1",
        "1,000",
        "1,5",
        "1.",
        ".",
        "-",
        "--1",
        "1.2.3",
        "abc",
        "0x10",
        "1_000",
        "nan",
        "inf",
        "١",  # Arabic-Indic one
        "1 000",
        "$1",
        "9" * 5000,
    ],
)
def test_parse_money_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text)[:40])):
        parse_money(text)


def test_parse_money_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        parse_money(0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (12_300, "0.0123"),
        (12_345, "0.012345"),
        (100_000, "0.1"),
        (1_000_000, "1"),
        (1_500_000, "1.5"),
        (-1, "-0.000001"),
        (-1_500_000, "-1.5"),
        (-2_000_000, "-2"),
        (10**30, "1" + "0" * 24),
    ],
)
def test_format_money(micros: int, text: str) -> None:
    assert format_money(micros) == text


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_format_money_rejects_non_ints(value: object) -> None:
    with pytest.raises(TypeError):
        format_money(value)  # type: ignore[arg-type]


def test_micros_per_unit() -> None:
    assert MICROS_PER_UNIT == 10**6


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_format_then_parse_round_trips(micros: int) -> None:
    assert parse_money(format_money(micros)) == micros


@given(
    st.booleans(),
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789", max_size=6),
)
def test_parse_agrees_with_exact_decimal(negative: bool, whole: str, fraction: str) -> None:
    text = ("-" if negative else "") + whole + ("." + fraction if fraction else "")
    with localcontext(prec=100):  # the default 28 digits would round the oracle itself
        expected = Decimal(text) * MICROS_PER_UNIT
    assert parse_money(text) == int(expected)
    assert expected == int(expected)
    assert format_money(parse_money(text)) == format_money(int(expected))
