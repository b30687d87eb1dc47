"""A call's price over its own time: what each second of it costs from its start.

A ``Schedule`` is the price per minute from each offset (seconds after the call's
start) until the next, and the connect fee the call pays. It comes from a rate's
segment list (``gateway.rating.periods.segments``) in one of two ways:

* ``from_start``: the call started at a known instant (answered): exact;
* ``worst_case``: the call will start somewhere in a window (an authorization,
  answered later, up to the setup timeout): each second is priced at the highest
  price it could meet over the window, and the fee at the highest one. So whatever
  the answer time, the call's real cost of ``d`` seconds is no more than this
  schedule's, and a grant or hold computed on it never falls short.

Billing with a schedule: the billed time (increments, minimum, grace) is worked out
once for the whole call, then each billed second is priced by the schedule, and
the sum rounded up to the micro once (``weight``: micros x seconds / 60).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.rating.periods import Segment, at


@dataclass(frozen=True, slots=True)
class Schedule:
    """``prices[i]`` applies from ``offsets[i]`` (s after the start; offsets[0] = 0)
    until ``offsets[i + 1]``, the last one for ever; ``fee`` is the connect fee."""

    fee: int
    offsets: tuple[int, ...]
    prices: tuple[int, ...]

    @property
    def free(self) -> bool:
        return self.fee == 0 and not any(self.prices)

    def weight(self, billed: int) -> int:
        """The sum over seconds [0, billed) of their price per minute."""
        total = 0
        offsets, prices = self.offsets, self.prices
        last = len(offsets) - 1
        for i, start in enumerate(offsets):
            if start >= billed:
                break
            end = billed if i == last else min(billed, offsets[i + 1])
            total += (end - start) * prices[i]
        return total

    def weight_ms(self, billed_ms: int) -> int:
        """``weight`` per millisecond: the sum over ms [0, billed_ms) of their price."""
        total = 0
        offsets, prices = self.offsets, self.prices
        last = len(offsets) - 1
        for i, start in enumerate(offsets):
            start_ms = start * 1000
            if start_ms >= billed_ms:
                break
            end = billed_ms if i == last else min(billed_ms, offsets[i + 1] * 1000)
            total += (end - start_ms) * prices[i]
        return total

    def reach(self, budget: int) -> int | None:
        """The largest ``s >= 0`` with ``weight(s) <= budget`` (>= 0); None: no end."""
        spent = 0
        offsets, prices = self.offsets, self.prices
        last = len(offsets) - 1
        for i, start in enumerate(offsets):
            price = prices[i]
            if i == last:
                return None if price == 0 else start + (budget - spent) // price
            part = (offsets[i + 1] - start) * price
            if spent + part > budget:
                return start + (budget - spent) // price
            spent += part
        raise AssertionError("a schedule has at least one price")

    def script(self) -> list[int]:
        """The flat array lib.lua reads: fee, then offset, price pairs."""
        out = [self.fee]
        for offset, price in zip(self.offsets, self.prices, strict=True):
            out += (offset, price)
        return out


def from_start(segs: tuple[Segment, ...], start: int) -> Schedule:
    """The schedule of a call that started at ``start`` (unix seconds)."""
    first = at(segs, start)
    offsets = [0]
    prices = [segs[first][1]]
    for t, price, _fee in segs[first + 1 :]:
        offsets.append(t - start)
        prices.append(price)
    return Schedule(segs[first][2], tuple(offsets), tuple(prices))


def worst_case(segs: tuple[Segment, ...], earliest: int, latest: int) -> Schedule:
    """The dearest schedule of a call starting at any second of [earliest, latest].

    Second ``x`` of such a call lies at ``start + x``; segment i (from t_i until
    t_i+1) prices it for some start in the window when
    ``t_i - latest <= x < t_i+1 - earliest``. The fee is the highest of the
    segments the start itself may fall in.
    """
    spans: list[tuple[int, int | None, int]] = []
    fee = 0
    for i, (t, price, seg_fee) in enumerate(segs):
        following = segs[i + 1][0] if i + 1 < len(segs) else None
        if i == 0:
            t = min(t, earliest)
        if t <= latest and (following is None or following > earliest):
            fee = max(fee, seg_fee)
        lo = max(0, t - latest)
        hi = None if following is None else following - earliest
        if hi is not None and hi <= lo:
            continue
        spans.append((lo, hi, price))
    cuts = sorted({0, *(s[0] for s in spans), *(s[1] for s in spans if s[1] is not None)})
    offsets: list[int] = []
    prices: list[int] = []
    for x in cuts:
        price = max((p for lo, hi, p in spans if lo <= x and (hi is None or x < hi)), default=0)
        if not prices or prices[-1] != price:
            offsets.append(x)
            prices.append(price)
    return Schedule(fee, tuple(offsets), tuple(prices))
