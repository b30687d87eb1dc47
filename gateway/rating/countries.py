"""The E.164 country code of an international number (ITU-T E.164 assignments).

Codes are one, two or three digits and none is a prefix of another, so the code of a
number is read from its first digits: 1 and 7 alone, then the two-digit codes, and
three digits for everything else (including the shared ones: 800 freephone, 870
Inmarsat, 881 satellite, 882/883 international networks). Used by the fraud checks
to tell one destination country from another, not to rate.
"""

from __future__ import annotations

_ONE = frozenset({"1", "7"})
# fmt: off
_TWO = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
    "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
    "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
    "95", "98",
})
# fmt: on


def country_code(number: str) -> str:
    """The country code of a normalized international number ('' for an empty one)."""
    if number[:1] in _ONE:
        return number[:1]
    if number[:2] in _TWO:
        return number[:2]
    return number[:3]
