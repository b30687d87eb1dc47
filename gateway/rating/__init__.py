"""Pure rating: tariffs, call pricing, prepaid authorisation, prefix lookup, rate decks.

No I/O and no third-party dependencies. Money is always an integer count of
micro-units (1e-6 of the currency), durations whole seconds, instants aware UTC.
"""

from gateway.rating.billing import billed_seconds, cost, max_seconds
from gateway.rating.csvio import COLUMNS, RowError, iter_rows, read_rates, write_rates
from gateway.rating.money import MICROS_PER_UNIT, format_money, parse_money
from gateway.rating.numbers import InvalidNumber, NumberPlan, normalize
from gateway.rating.prefix_index import RateTable, RatingIndex, UnknownRateGroup
from gateway.rating.rates import Rate

__all__ = [
    "COLUMNS",
    "MICROS_PER_UNIT",
    "InvalidNumber",
    "NumberPlan",
    "Rate",
    "RateTable",
    "RatingIndex",
    "RowError",
    "UnknownRateGroup",
    "billed_seconds",
    "cost",
    "format_money",
    "iter_rows",
    "max_seconds",
    "normalize",
    "parse_money",
    "read_rates",
    "write_rates",
]
