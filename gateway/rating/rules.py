"""An account's call rules as the directory holds them (checked in ``limits.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MARGIN_POLICIES = ("allow", "refuse")


@dataclass(frozen=True, slots=True)
class PrefixSet:
    """Number prefixes, matched by the number's leading digits."""

    prefixes: frozenset[str]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, prefixes: Iterable[str]) -> PrefixSet:
        unique = frozenset(p for p in prefixes if p)
        return cls(unique, tuple(sorted({len(p) for p in unique})))

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def matches(self, number: str) -> bool:
        prefixes = self.prefixes
        return any(number[:n] in prefixes for n in self.lengths if n <= len(number))


NO_PREFIXES = PrefixSet(frozenset(), ())


@dataclass(frozen=True, slots=True)
class CallRules:
    """One account's rules (``call_rules`` row). ``allow`` empty: any destination;
    ``max_price_per_min_micros`` None: no limit; ``negative_margin`` applies where
    the account is a wholesale agent: ``refuse`` a call sold to the level below it
    for less than its own price plus ``min_margin_micros`` per minute."""

    allow: PrefixSet = NO_PREFIXES
    block: PrefixSet = NO_PREFIXES
    max_price_per_min_micros: int | None = None
    negative_margin: str = "allow"
    min_margin_micros: int = 0
    # Enforced in Redis with the balance (lib.lua), kept here so that a change is seen
    # and mirrored: spend caps (micros) and call attempts per second / minute.
    max_spend_hour_micros: int | None = None
    max_spend_day_micros: int | None = None
    max_spend_call_micros: int | None = None
    max_attempts_per_s: int | None = None
    max_attempts_per_min: int | None = None

    def __post_init__(self) -> None:
        if self.negative_margin not in MARGIN_POLICIES:
            raise ValueError(f"negative_margin must be one of {MARGIN_POLICIES}")
