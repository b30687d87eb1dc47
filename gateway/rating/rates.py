"""The tariff row: what one destination prefix costs and how calls to it are rounded.

Money is an integer count of micro-units (1e-6 of the currency), durations are
whole seconds and instants are timezone-aware UTC datetimes.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.rating.periods import Periods


def _require_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass; True as a price is always a bug, so reject it.
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _as_utc(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or None, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Rate:
    """One priced destination prefix, optionally limited to a period of validity.

    Construction validates every field and raises ``ValueError`` (bad value) or
    ``TypeError`` (wrong type), so a ``Rate`` that exists is always usable.
    ``effective_from`` / ``effective_to`` are normalised to UTC; ``None`` means open.
    The rate chosen at a call's start prices all of it (a call is not split at
    ``effective_to``); its ``periods`` do split it (``gateway.rating.schedule``).
    """

    prefix: str
    destination: str
    price_per_min_micros: int
    connect_fee_micros: int = 0
    first_increment_s: int = 60
    next_increment_s: int = 60
    min_duration_s: int = 0
    grace_s: int = 0
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    # Time-of-day/weekday prices (peak, off-peak...); None: one price at all times.
    periods: Periods | None = None
    # Sub-second increments after the first (a divisor of 1000 ms; next_increment_s
    # must then be 1): a call whose switch reports milliseconds is billed on them.
    next_increment_ms: int | None = None

    def __post_init__(self) -> None:
        if type(self.prefix) is not str:
            raise TypeError(f"prefix must be a str, got {type(self.prefix).__name__}")
        # isdigit() alone accepts things like '²' and Arabic-Indic digits.
        if not (self.prefix.isascii() and self.prefix.isdigit()):
            raise ValueError(
                f"prefix must be a non-empty string of digits 0-9, got {self.prefix!r}"
            )
        if type(self.destination) is not str:
            raise TypeError(f"destination must be a str, got {type(self.destination).__name__}")
        price = self.price_per_min_micros
        fee = self.connect_fee_micros
        first = self.first_increment_s
        step = self.next_increment_s
        minimum = self.min_duration_s
        grace = self.grace_s
        # Decks hold millions of rows: test the valid case in one cheap expression
        # and only walk the fields one by one to name the culprit when it fails.
        if not (
            type(price) is int
            and type(fee) is int
            and type(first) is int
            and type(step) is int
            and type(minimum) is int
            and type(grace) is int
            and price >= 0
            and fee >= 0
            and first >= 1
            and step >= 1
            and minimum >= 0
            and grace >= 0
        ):
            _require_int("price_per_min_micros", price, 0)
            _require_int("connect_fee_micros", fee, 0)
            _require_int("first_increment_s", first, 1)
            _require_int("next_increment_s", step, 1)
            _require_int("min_duration_s", minimum, 0)
            _require_int("grace_s", grace, 0)
        step_ms = self.next_increment_ms
        if step_ms is not None and (
            type(step_ms) is not int or step_ms < 1 or 1000 % step_ms or step_ms == 1000
        ):
            raise ValueError(f"next_increment_ms must divide 1000 and be below it, got {step_ms!r}")
        if step_ms is not None and step != 1:
            # Whole-second grants and holds then see a 1 s step, which covers any
            # sub-second billing of the same seconds (gateway/rating/billing.py).
            raise ValueError("next_increment_ms needs next_increment_s = 1")
        if self.periods is not None and not isinstance(self.periods, Periods):
            raise TypeError(f"periods must be Periods or None, got {type(self.periods).__name__}")
        if self.effective_from is None and self.effective_to is None:
            return
        start = _as_utc("effective_from", self.effective_from)
        end = _as_utc("effective_to", self.effective_to)
        if start is not None and end is not None and end <= start:
            raise ValueError(
                f"effective_to ({end.isoformat()}) must be after "
                f"effective_from ({start.isoformat()}) for prefix {self.prefix}"
            )
        # Frozen dataclass: storing the UTC-normalised values needs object.__setattr__.
        object.__setattr__(self, "effective_from", start)
        object.__setattr__(self, "effective_to", end)

    @property
    def dearest_price_micros(self) -> int:
        """The highest price per minute a call at this rate may meet (periods too)."""
        if self.periods is None:
            return self.price_per_min_micros
        return max(self.price_per_min_micros, *(p.price_per_min_micros for p in self.periods.items))

    def in_force(self, at: datetime) -> bool:
        """Return whether this rate applies at instant ``at``.

        The period is half-open: ``effective_from`` inclusive, ``effective_to``
        exclusive, ``None`` unbounded. Raises ``ValueError`` if ``at`` is naive.
        """
        if at.utcoffset() is None:
            raise ValueError(f"'at' must be timezone-aware, got naive {at.isoformat()}")
        start = self.effective_from
        if start is not None and at < start:
            return False
        end = self.effective_to
        return end is None or at < end
