"""A call's account chain: who pays, at which rate, and who only caps.

The customer always pays at its rate group's rate. Above it, an agent in
``wholesale`` mode pays too, at its own rate group (the VOS3000 "agent uses the
lower rate"); an agent in ``transfer`` mode is never charged for calls (it sold its
credit by transfer) but its status and call limit still apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.core.compact_json import dumps as _dumps
from gateway.core.reasons import Reason, Refusal
from gateway.rating.periods import segments
from gateway.rating.prefix_index import RatingIndex, UnknownRateGroup
from gateway.rating.rates import Rate
from gateway.rating.rounding import EXACT, Rounding
from gateway.rating.rules import CallRules
from gateway.rating.schedule import worst_case

# What a level with no inbound rate group pays for a call to a DID: nothing.
FREE_INBOUND = Rate("0", "inbound (free)", 0, 0, 1, 1)


@dataclass(frozen=True, slots=True)
class ChainAccount:
    """What building a chain needs to know of one account."""

    id: int
    root_id: int
    kind: str
    billing_mode: str | None
    rate_group_id: int | None
    rules: CallRules | None = None  # None: the account sets no call rules
    # Rated for an inbound call to a DID: ``rate_group_id`` is the inbound group, and
    # none means the level gets the call free.
    inbound: bool = False
    # Its prices are in this currency ("": not known, taken as the chain's one).
    currency: str = ""

    @property
    def charged(self) -> bool:
        return self.kind == "customer" or self.billing_mode == "wholesale"


@dataclass(frozen=True, slots=True)
class Level:
    """One account of a call's chain and how the call touches it.

    ``charged``: the account pays for the call at ``rate`` (the customer, and every
    agent in wholesale mode). An uncharged level (an agent in transfer mode) still
    has its status and concurrent-call limit checked and a call slot held.
    """

    account_id: int
    charged: bool
    rate: Rate | None = None
    rate_group_id: int | None = None
    rounding: Rounding = EXACT  # the rate group's rounding of a call's cost

    def __post_init__(self) -> None:
        if self.charged and self.rate is None:
            raise ValueError(f"charged level {self.account_id} needs a rate")

    def script_rate(self) -> list[int]:
        """The rate array the Lua scripts read (see lib.lua)."""
        r = self.rate
        if not self.charged or r is None:
            return [0, 0, 0, 1, 1, 0, 0]
        out = [
            1,
            r.price_per_min_micros,
            r.connect_fee_micros,
            r.first_increment_s,
            r.next_increment_s,
            r.min_duration_s,
            r.grace_s,
        ]
        if not self.rounding.exact or r.periods is not None or r.next_increment_ms:
            out += (self.rounding.quantum, 1 if self.rounding.mode == "half_up" else 0)
        if r.next_increment_ms:  # schedules (10, 11) come with the call's time
            out += (False, False, r.next_increment_ms)
        return out

    def timed_rate(self, earliest: int, latest: int, horizon_s: int) -> list[Any]:
        """``script_rate`` with the price schedules of a rate with periods, for a call
        answered in [earliest, latest] (unix s) and lasting up to ``horizon_s``."""
        out: list[Any] = self.script_rate()
        r = self.rate
        if r is None or r.periods is None or not self.charged:
            return out
        segs = segments(
            r.periods,
            r.price_per_min_micros,
            r.connect_fee_micros,
            earliest,
            latest + horizon_s,
        )
        flat = [x for seg in segs for x in seg]
        schedules = [worst_case(segs, earliest, latest).script(), flat]
        return [*out[:9], *schedules, *out[11:]]


@dataclass(frozen=True, slots=True)
class Chain:
    """A call's accounts, customer first, each agent up to the top (``root_id``)."""

    root_id: int
    levels: tuple[Level, ...]
    # The levels as reserve.lua reads them, encoded once per chain, not per call.
    script_levels: str = field(init=False, repr=False, compare=False)
    # Some level's rate has periods: its script levels depend on the call's time.
    timed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a chain has at least the customer")
        if not self.levels[0].charged:
            raise ValueError("the customer level is always charged")
        encoded = _dumps([level.script_rate() for level in self.levels])
        object.__setattr__(self, "script_levels", encoded)
        timed = any(lv.rate is not None and lv.rate.periods is not None for lv in self.levels)
        object.__setattr__(self, "timed", timed)

    def levels_from(self, earliest: int, latest: int, horizon_s: int) -> str:
        """The script levels of a call answered in [earliest, latest] (unix s) that
        lasts up to ``horizon_s``: ``script_levels`` plus, for rates with periods,
        their price schedules (see lib.lua)."""
        if not self.timed:
            return self.script_levels
        return _dumps([lv.timed_rate(earliest, latest, horizon_s) for lv in self.levels])

    @property
    def account_ids(self) -> tuple[int, ...]:
        return tuple(level.account_id for level in self.levels)


@dataclass(frozen=True, slots=True)
class Priced:
    """A call's chain priced for a destination: who pays at which rate, and what the
    CDR keeps of it per level (the matched prefix, the rate group; '' and 0 for a
    level that is not charged)."""

    chain: Chain
    prefixes: tuple[str, ...]
    rate_groups: tuple[int, ...]


# Chains built before, by the identity of what they were built from: the accounts
# tuple (``Directory.chain_accounts`` hands out one per customer) and each level's
# rate object (the rating index hands out the same ones until rates are reloaded).
# Each entry keeps those objects alive, so an id in a key cannot be reused by
# another object while the entry exists.
_CACHE: dict[tuple[int, ...], tuple[Sequence[ChainAccount], tuple[Rate | None, ...], Priced]] = {}
MAX_CACHED = 100_000


def build_chain(
    accounts: Sequence[ChainAccount], index: RatingIndex, number: str, at: datetime
) -> Priced | Refusal:
    """Price every paying level for ``number`` at ``at``.

    Returns the chain with each level's matched prefix and rate group (for the CDR),
    or a refusal naming the first level with no rate for the destination. Calls
    priced at the same rates for the same accounts share one (immutable) result.
    """
    rates: list[Rate | None] = []
    for depth, account in enumerate(accounts):
        if not account.charged:
            rates.append(None)
            continue
        rate = None
        if account.inbound and account.rate_group_id is None:
            rate = FREE_INBOUND
        elif account.rate_group_id is not None:
            try:
                rate = index.lookup(account.rate_group_id, number, at)
            except UnknownRateGroup:
                rate = None
        if rate is None:
            return Refusal(Reason.DESTINATION_NOT_RATED, account_id=account.id, level=depth)
        rates.append(rate)
        # A group's rounding changes only with a reload, which makes new rates: the
        # rate objects in the cache key below stand for it too.
    key = (id(accounts), *map(id, rates))
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is accounts:
        return cached[2]
    built = _build(accounts, rates, index)
    if len(_CACHE) >= MAX_CACHED:
        _CACHE.clear()
    _CACHE[key] = (accounts, tuple(rates), built)
    return built


def _build(
    accounts: Sequence[ChainAccount], rates: Sequence[Rate | None], index: RatingIndex
) -> Priced:
    levels: list[Level] = []
    prefixes: list[str] = []
    groups: list[int] = []
    for account, rate in zip(accounts, rates, strict=True):
        if rate is None:
            levels.append(Level(account.id, charged=False))
            prefixes.append("")
            groups.append(0)
            continue
        group = account.rate_group_id
        rounding = index.rounding(group) if group is not None else EXACT
        levels.append(Level(account.id, True, rate, group, rounding))
        prefixes.append(rate.prefix)
        groups.append(account.rate_group_id or 0)
    return Priced(Chain(accounts[0].root_id, tuple(levels)), tuple(prefixes), tuple(groups))
