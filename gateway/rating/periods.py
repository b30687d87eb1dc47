"""Time-of-day and weekday periods of a rate, and the price schedule they make.

A rate may hold *periods*: a price (and optionally a connect fee) on some weekdays
between two wall-clock times of its rate group's time zone, e.g. peak
``mon-fri 08:00-18:00 0.10``. Outside every period the rate's own price and fee
apply (off-peak). Periods of one rate never overlap.

The text form (CSV column ``periods``, API field ``periods``) is periods separated
by ``;``, each ``DAYS HH:MM-HH:MM PRICE [FEE]``, DAYS a comma-separated list of
days or day ranges (``mon-fri``, ``sat,sun``), the end exclusive and ``24:00`` for
midnight, money in currency units: ``mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08``.

A *segment list* is what the balance scripts read: the instants (unix seconds, UTC)
at which the price changes over some horizon, each with the price and fee from then
on. Local times are turned into instants with the zone's rules for each day, so a
period stays at 08:00 local across daylight-saving changes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from gateway.rating.money import format_money, parse_money

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PERIODS = 20
_DAY_S = 86_400
_PERIOD = re.compile(
    r"(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})"
    r"\s+(?P<price>\S+)(?:\s+(?P<fee>\S+))?"
)


@dataclass(frozen=True, slots=True)
class Period:
    """One priced window: weekdays (0 = Monday), start and end minute of the day
    (end exclusive, 1440 = midnight), price per minute and fee (None: the rate's)."""

    days: frozenset[int]
    start_min: int
    end_min: int
    price_per_min_micros: int
    connect_fee_micros: int | None = None

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError("a period needs at least one day, mon..sun")
        if not 0 <= self.start_min < self.end_min <= 1440:
            raise ValueError(
                "a period's end must be after its start within one day (00:00-24:00); "
                "split a night period in two"
            )
        if type(self.price_per_min_micros) is not int or self.price_per_min_micros < 0:
            raise ValueError("a period's price must be a whole number of micros >= 0")
        fee = self.connect_fee_micros
        if fee is not None and (type(fee) is not int or fee < 0):
            raise ValueError("a period's connect fee must be a whole number of micros >= 0")


@dataclass(frozen=True, slots=True)
class Periods:
    """The periods of one rate and the zone their wall-clock times are read in."""

    items: tuple[Period, ...]
    zone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("Periods needs at least one period (use None for none)")
        if len(self.items) > MAX_PERIODS:
            raise ValueError(f"at most {MAX_PERIODS} periods per rate")
        zone_info(self.zone)
        for i, a in enumerate(self.items):
            for b in self.items[i + 1 :]:
                if a.days & b.days and a.start_min < b.end_min and b.start_min < a.end_min:
                    raise ValueError(f"periods overlap: {format_period(a)} and {format_period(b)}")

    def text(self) -> str:
        return format_periods(self.items)


@functools.cache
def _zone_names() -> frozenset[str]:
    # Only names of the zone database: ZoneInfo alone also opens folders and files
    # that are not zones ("America", "posixrules"), with errors of its own.
    return frozenset(available_timezones()) | {"UTC"}


def zone_info(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` naming it when it does not exist."""
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time zone {name!r} cannot be read") from None


# -- text form ---------------------------------------------------------------------


def _minute(text: str) -> int:
    hours, minutes = (int(p) for p in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"bad time of day {text!r}")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"bad days {text!r}: use mon..sun, ranges like mon-fri")
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if last else a
        if b < a:
            raise ValueError(f"bad day range {part!r}: write sat,sun rather than a wrap")
        days.update(range(a, b + 1))
    return frozenset(days)


def parse_periods(text: str) -> tuple[Period, ...]:
    """The periods in ``text`` (see the module docstring); () for a blank text.

    ``ValueError`` names the bad part. Overlaps are checked by ``Periods``.
    """
    found: list[Period] = []
    for part in text.lower().split(";"):
        part = part.strip()
        if not part:
            continue
        match = _PERIOD.fullmatch(part)
        if match is None:
            raise ValueError(f"bad period {part!r}: expected like 'mon-fri 08:00-18:00 0.10'")
        fee = match["fee"]
        found.append(
            Period(
                _days(match["days"]),
                _minute(match["start"]),
                _minute(match["end"]),
                parse_money(match["price"]),
                None if fee is None else parse_money(fee),
            )
        )
    return tuple(found)


def _format_days(days: frozenset[int]) -> str:
    runs: list[str] = []
    ordered = sorted(days)
    start = prev = ordered[0]
    for day in [*ordered[1:], 99]:
        if day == prev + 1:
            prev = day
            continue
        runs.append(DAY_NAMES[start] if start == prev else f"{DAY_NAMES[start]}-{DAY_NAMES[prev]}")
        start = prev = day
    return ",".join(runs)


def format_period(p: Period) -> str:
    def hhmm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    text = f"{_format_days(p.days)} {hhmm(p.start_min)}-{hhmm(p.end_min)} "
    text += format_money(p.price_per_min_micros)
    if p.connect_fee_micros is not None:
        text += f" {format_money(p.connect_fee_micros)}"
    return text


def format_periods(items: tuple[Period, ...]) -> str:
    """The canonical text of ``items``; ``parse_periods`` reads it back equal."""
    return "; ".join(format_period(p) for p in items)


# -- schedules ---------------------------------------------------------------------

Segment = tuple[int, int, int]  # (from unix second, price per minute, connect fee)


def segments(
    periods: Periods, base_price: int, base_fee: int, start: int, end: int
) -> tuple[Segment, ...]:
    """The price changes over ``[start, end)`` (unix seconds): the first segment
    begins at ``start``, each one lasts until the next; the last one beyond ``end``.
    Adjacent segments always differ in price or fee."""
    zone = zone_info(periods.zone)
    windows: list[tuple[int, int, Period]] = []
    first_day = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
    last_day = datetime.fromtimestamp(end, zone).date() + timedelta(days=1)
    day = first_day
    while day <= last_day:
        weekday = day.weekday()
        for p in periods.items:
            if weekday in p.days:
                windows.append(
                    (_instant(day, p.start_min, zone), _instant(day, p.end_min, zone), p)
                )
        day += timedelta(days=1)
    # Change points: every window edge; the price at a point is the window's that
    # covers it, else the rate's own (windows of one rate never overlap).
    points = sorted({start, *(t for w in windows for t in w[:2] if start < t < end)})
    out: list[Segment] = []
    for t in points:
        price, fee = base_price, base_fee
        for a, b, p in windows:
            if a <= t < b:
                price = p.price_per_min_micros
                fee = base_fee if p.connect_fee_micros is None else p.connect_fee_micros
                break
        if not out or out[-1][1:] != (price, fee):
            out.append((t, price, fee))
    return tuple(out)


def _instant(day: date, minute: int, zone: ZoneInfo) -> int:
    if minute == 1440:
        day, minute = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minute // 60, minute % 60), zone)
    return int(local.timestamp())


def at(segs: tuple[Segment, ...], instant: int) -> int:
    """Index of the segment in force at ``instant`` (the first one before them all)."""
    found = 0
    for i, seg in enumerate(segs):
        if seg[0] <= instant:
            found = i
        else:
            break
    return found
