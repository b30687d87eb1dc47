"""Call rounding, pricing and prepaid time authorisation for a single ``Rate``.

Everything is exact integer arithmetic on micro-units and whole seconds. Billed
durations lie on *increment boundaries*: ``first``, ``first + next``,
``first + 2*next`` ... where ``first``/``next`` are the rate's increments.
"""

from collections.abc import Sequence

from gateway.rating.rates import Rate
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.schedule import Schedule

_SECONDS_PER_MINUTE = 60


def _ceil_div(numerator: int, denominator: int) -> int:
    # Floor division of the negation rounds towards +inf without touching floats.
    return -(-numerator // denominator)


def _boundary_at_or_above(rate: Rate, seconds: int) -> int:
    first = rate.first_increment_s
    if seconds <= first:
        return first
    step = rate.next_increment_s
    return first + _ceil_div(seconds - first, step) * step


def _boundary_at_or_below(rate: Rate, seconds: int) -> int:
    """Largest boundary <= ``seconds``; caller guarantees ``seconds >= first_increment_s``."""
    first = rate.first_increment_s
    step = rate.next_increment_s
    return first + (seconds - first) // step * step


def _charge(
    rate: Rate, billed: int, schedule: Schedule | None = None, rounding: Rounding = EXACT
) -> int:
    # Rounded up once, on the total, so a call never costs less than its exact price;
    # then to the rate group's decimals.
    if schedule is None:
        raw = rate.connect_fee_micros + _ceil_div(
            billed * rate.price_per_min_micros, _SECONDS_PER_MINUTE
        )
    else:
        raw = schedule.fee + _ceil_div(schedule.weight(billed), _SECONDS_PER_MINUTE)
    return raw if rounding.exact else rounding.apply(raw)


def billed_seconds(rate: Rate, seconds: int) -> int:
    """Return the seconds charged for a call that lasted ``seconds``.

    0 when ``seconds <= 0`` or the call fits in the grace period (such calls are
    free). Otherwise the duration is raised to ``min_duration_s`` and then rounded
    up to the next increment boundary, so the result is always a boundary.
    """
    if seconds <= 0 or seconds <= rate.grace_s:
        return 0
    return _boundary_at_or_above(rate, max(seconds, rate.min_duration_s))


def cost(
    rate: Rate, seconds: int, schedule: Schedule | None = None, rounding: Rounding = EXACT
) -> int:
    """Return the price in micro-units of a call that lasted ``seconds``.

    0 when nothing is billed (see ``billed_seconds``); otherwise the connect fee
    plus ``ceil(billed * price_per_min / 60)``. With a ``schedule`` (a rate with
    periods) the fee is the schedule's and each billed second is priced by it:
    ``fee + ceil(sum of the seconds' prices / 60)``. The result is then rounded
    by ``rounding``. Never negative, and non-decreasing in ``seconds``.
    """
    billed = billed_seconds(rate, seconds)
    if billed == 0:
        return 0
    return _charge(rate, billed, schedule, rounding)


def max_seconds(
    rate: Rate,
    available_micros: int,
    cap_s: int,
    schedule: Schedule | None = None,
    rounding: Rounding = EXACT,
) -> int:
    """Return how many seconds a call may be authorised for with ``available_micros``.

    The result ``d`` is the largest increment boundary with
    ``cost(rate, d) <= available_micros`` and ``d <= cap_s``, with two exceptions:

    * ``cap_s`` below the first increment: ``cap_s`` is returned when the first
      increment is affordable (the switch may end the call before a boundary);
    * a rate with zero price and zero connect fee: ``cap_s`` (nothing to protect).

    0 when nothing is affordable, ``cap_s <= 0`` or ``available_micros < 0``.
    Boundaries inside the grace period cost nothing and are therefore granted even
    with a zero balance. No loop over increments (one over the schedule's prices).
    ``schedule`` and ``rounding`` price the call as ``cost`` does.
    """
    if cap_s <= 0 or available_micros < 0:
        return 0
    if schedule is None:
        if rate.price_per_min_micros == 0 and rate.connect_fee_micros == 0:
            return cap_s
    elif schedule.free:
        return cap_s

    first = rate.first_increment_s
    affordable = _largest_affordable_boundary(rate, available_micros, schedule, rounding)
    if affordable == 0:
        return 0
    if cap_s < first:
        return cap_s
    cap_boundary = _boundary_at_or_below(rate, cap_s)
    if affordable is None:
        return cap_boundary
    return min(affordable, cap_boundary)


def _largest_affordable_boundary(
    rate: Rate, available_micros: int, schedule: Schedule | None, rounding: Rounding
) -> int | None:
    """Largest boundary costing <= ``available_micros`` (>= 0); 0 if none, None if all."""
    price = rate.price_per_min_micros
    fee = rate.connect_fee_micros
    grace = rate.grace_s
    first = rate.first_increment_s

    # Boundaries inside the grace window are free. Every boundary past it is billed
    # at least `floor_billed` (it must clear grace and the minimum duration), and
    # past that point cost(b) == fee + ceil(b * price / 60), which we can invert.
    free_upto = _boundary_at_or_below(rate, grace) if grace >= first else 0
    floor_billed = max(
        _boundary_at_or_above(rate, grace + 1),
        _boundary_at_or_above(rate, rate.min_duration_s),
    )
    if _charge(rate, floor_billed, schedule, rounding) > available_micros:
        return free_upto
    # Rounding is monotone: a rounded cost fits iff the unrounded one fits `budget`.
    budget = rounding.budget(available_micros)
    if schedule is not None:
        # ceil(w / 60) <= budget - fee  <=>  w <= 60 * (budget - fee)
        reach = schedule.reach(_SECONDS_PER_MINUTE * (budget - schedule.fee))
        return None if reach is None else _boundary_at_or_below(rate, reach)
    if price == 0:
        return None
    # ceil(b * price / 60) <= budget  <=>  b * price <= 60 * budget  (budget is an int).
    budget_s = _SECONDS_PER_MINUTE * (budget - fee) // price
    # budget_s >= floor_billed >= first here, because floor_billed is affordable.
    return _boundary_at_or_below(rate, budget_s)


Pricing = tuple[Schedule | None, Rounding]


def grant_seconds(
    levels: Sequence[tuple[Rate | None, int]],
    cap_s: int,
    pricing: Sequence[Pricing] | None = None,
) -> int:
    """Return the time a call may be granted over a whole account chain.

    ``levels`` holds, per level of the chain, the rate it pays (None for a level that
    is not charged) and the money it has available. The grant is the least over the
    charged levels of ``max_seconds(rate, available, cap_s)``: each level's
    affordable time on its own increments, never rounded to another level's. 0 when
    some charged level cannot afford anything. ``pricing`` holds each level's
    schedule and rounding (none and exact when omitted). Mirrors reserve.lua.
    """
    granted = cap_s
    for i, (rate, available) in enumerate(levels):
        if rate is None:
            continue
        schedule, rounding = (None, EXACT) if pricing is None else pricing[i]
        level_max = max_seconds(rate, available, cap_s, schedule, rounding)
        if level_max <= 0:
            return 0
        granted = min(granted, level_max)
    return granted


def slice_seconds(rates: Sequence[Rate | None], slice_s: int, cap_s: int) -> int:
    """Return the time a slice of ``slice_s`` seconds holds over a chain.

    Each charged level's hold is rounded up to its own increments, so the time the
    holds cover is the least of those roundings (never below ``slice_s``), capped at
    ``cap_s`` (the grant). Mirrors lib.lua slice_cover.
    """
    cover = cap_s
    for rate in rates:
        if rate is not None:
            cover = min(cover, _boundary_at_or_above(rate, slice_s))
    return cover


# -- milliseconds -----------------------------------------------------------------
#
# A rate with ``next_increment_ms`` bills a call whose length is known to the
# millisecond (the switch's h323 connect and disconnect times) on those increments;
# the first increment, minimum and grace stay whole seconds. For a whole number of
# seconds ``s`` the result is ``billed_seconds(rate, s) * 1000`` (the step divides a
# second, and next_increment_s is 1), so grants and holds, reckoned in seconds, cover
# it: ``cost_ms(rate, d) <= cost(rate, ceil(d / 1000))``.

_MS_PER_MINUTE = 60_000


def billed_ms(rate: Rate, duration_ms: int) -> int:
    """The milliseconds charged for a call of ``duration_ms`` (see ``billed_seconds``)."""
    if duration_ms <= 0 or duration_ms <= rate.grace_s * 1000:
        return 0
    length = max(duration_ms, rate.min_duration_s * 1000)
    first = rate.first_increment_s * 1000
    if length <= first:
        return first
    step = rate.next_increment_ms or rate.next_increment_s * 1000
    return first + _ceil_div(length - first, step) * step


def cost_ms(
    rate: Rate, duration_ms: int, schedule: Schedule | None = None, rounding: Rounding = EXACT
) -> int:
    """``cost`` for a call of ``duration_ms``: each billed millisecond at its price,
    ``fee + ceil(sum / 60000)``, then rounded."""
    billed = billed_ms(rate, duration_ms)
    if billed == 0:
        return 0
    if schedule is None:
        raw = rate.connect_fee_micros + _ceil_div(
            billed * rate.price_per_min_micros, _MS_PER_MINUTE
        )
    else:
        raw = schedule.fee + _ceil_div(schedule.weight_ms(billed), _MS_PER_MINUTE)
    return raw if rounding.exact else rounding.apply(raw)
