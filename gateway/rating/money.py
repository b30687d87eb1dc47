"""Exact conversion between decimal currency strings and integer micro-units.

Floats never appear: "0.1" is parsed digit by digit, because ``0.1 * 1_000_000``
in binary floating point is not exactly 100000 for every input.
"""

import re

MICROS_PER_UNIT = 1_000_000
_DECIMALS = 6

# ASCII digits only: \d would also accept other scripts' digits.
_MONEY = re.compile(r"(-?)([0-9]*)(?:\.([0-9]+))?")


def parse_money(text: str) -> int:
    """Return the exact number of micro-units in the decimal string ``text``.

    Accepts an optional leading '-', digits, and at most 6 decimals ("12",
    "0.0123", "-1.5", ".5"); surrounding whitespace is ignored. Raises
    ``ValueError`` naming the value for blanks, exponents, '+' signs, thousands
    separators or more than 6 decimals (which could only be kept by rounding).
    """
    if not isinstance(text, str):
        raise TypeError(f"money must be a str, got {type(text).__name__}")
    match = _MONEY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid money amount {text!r}: expected digits like 12.345678")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if not whole and not fraction:
        raise ValueError(f"invalid money amount {text!r}: no digits")
    if len(fraction) > _DECIMALS:
        raise ValueError(
            f"invalid money amount {text!r}: more than {_DECIMALS} decimals cannot be "
            "represented in micro-units"
        )
    try:
        micros = int(whole or "0") * MICROS_PER_UNIT + int(fraction.ljust(_DECIMALS, "0"))
    except ValueError as exc:  # Python caps int() at ~4300 digits.
        raise ValueError(f"invalid money amount {text!r}: {exc}") from None
    return -micros if sign else micros


def format_money(micros: int) -> str:
    """Return the canonical decimal string for ``micros`` micro-units.

    No trailing zeros and no decimal point for whole amounts: 12300 -> "0.0123",
    1000000 -> "1", 0 -> "0", -1500000 -> "-1.5". ``parse_money`` inverts it exactly.
    """
    if type(micros) is not int:
        raise TypeError(f"micros must be an int, got {type(micros).__name__}")
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{_DECIMALS}d}".rstrip("0")
