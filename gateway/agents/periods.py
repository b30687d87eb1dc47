"""Billing periods of a subscription: which days a recurring product is charged on.

A monthly product (fee or DID rental) is charged in advance, in full, on the day the
subscription starts and then every month on its ``bill_day`` (1..28, so every month
has it); the period runs to the day before the next charge. There is no proration:
a subscription that starts on the 15th with bill day 1 pays a whole fee on the 15th
and the next one on the 1st. A setup fee is charged once, on the start day.
Days are UTC dates. ``ends_on`` is the first day without the service: no period
starts on or after it.
"""

from __future__ import annotations

from datetime import date

ONE_TIME_KINDS = ("setup",)


def _next_bill_day(after: date, bill_day: int) -> date:
    """The first ``bill_day`` of a month strictly after ``after``."""
    if after.day < bill_day:
        return after.replace(day=bill_day)
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    return date(year, month, bill_day)


def period_starts(
    kind: str, starts_on: date, bill_day: int, ends_on: date | None, through: date
) -> list[date]:
    """Every period start from ``starts_on`` up to and including ``through``."""
    if not 1 <= bill_day <= 28:
        raise ValueError(f"bill_day must be 1..28, got {bill_day}")
    last = through if ends_on is None else min(through, date.fromordinal(ends_on.toordinal() - 1))
    if starts_on > last:
        return []
    starts = [starts_on]
    if kind in ONE_TIME_KINDS:
        return starts
    day = _next_bill_day(starts_on, bill_day)
    while day <= last:
        starts.append(day)
        day = _next_bill_day(day, bill_day)
    return starts


def period_end(kind: str, start: date, bill_day: int) -> date | None:
    """The first day after the period that starts on ``start`` (None: one-time)."""
    if kind in ONE_TIME_KINDS:
        return None
    return _next_bill_day(start, bill_day)
