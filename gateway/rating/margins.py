"""Where a reseller sells below its cost: its customers' rate group against its own.

Both tables are compared prefix by prefix over every prefix either holds, each side
priced by its longest matching prefix, because that is how calls are priced: a sell
rate for 44 against a cost rate for 447 means that calls to 447 sell at the 44 price
and cost the 447 one. Pure: the prices come in as {prefix: (price per minute,
destination)}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Table = Mapping[str, tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Margin:
    prefix: str
    destination: str
    sell_micros: int  # per minute, what the level below pays
    cost_micros: int  # per minute, what the reseller pays
    sell_prefix: str
    cost_prefix: str

    @property
    def margin_micros(self) -> int:
        return self.sell_micros - self.cost_micros


def _longest(table: Table, lengths: tuple[int, ...], number: str) -> str | None:
    for n in lengths:
        if n <= len(number) and number[:n] in table:
            return number[:n]
    return None


def compare(sell: Table, cost: Table) -> list[Margin]:
    """Every prefix priced on both sides, in prefix order."""
    sell_lengths = tuple(sorted({len(p) for p in sell}, reverse=True))
    cost_lengths = tuple(sorted({len(p) for p in cost}, reverse=True))
    found = []
    for prefix in sorted(set(sell) | set(cost)):
        s = _longest(sell, sell_lengths, prefix)
        c = _longest(cost, cost_lengths, prefix)
        if s is None or c is None:
            continue
        destination = sell[s][1] if len(s) >= len(c) else cost[c][1]
        found.append(Margin(prefix, destination, sell[s][0], cost[c][0], s, c))
    return found
