"""Which calls the generator places: who calls, where, for how long, and which are
meant to be refused. Pure data, decided before the clock starts, reproducible from
a seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.rating.rates import Rate

# A refused call is one of these, alternately: a known caller dialling a prefix no
# rate group prices, or a caller the gateway does not know at all.
REFUSE_UNRATED = "unrated"
REFUSE_UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """A customer the generator calls as: its extension, password and caller-IDs."""

    account_id: int
    extension: str
    password: str
    caller_ids: tuple[str, ...]
    destinations: tuple[str, ...]  # dial prefixes rated for this customer


@dataclass(frozen=True, slots=True)
class Population:
    """The callers of a run and what their calls must cost.

    ``pricing`` maps (customer, dial prefix) to the paying levels of the call's
    chain, customer first: (account id, rate). ``opening`` is every checked
    account's balance (micro-units) before the run.
    """

    callers: tuple[Caller, ...]
    unrated: tuple[str, ...]
    suffix_digits: int
    pricing: Mapping[tuple[int, str], tuple[tuple[int, Rate], ...]]
    opening: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One call to place. ``customer_id`` is None for an unknown caller."""

    index: int
    session_id: str
    username: str
    password: str
    calling: str
    called: str
    dial_prefix: str
    customer_id: int | None
    duration_s: int
    refuse: str = ""  # "" (meant to go through), REFUSE_UNRATED or REFUSE_UNKNOWN


def parse_duration(text: str) -> tuple[int, int]:
    """``"0:5"`` -> (0, 5) (uniform whole seconds, both ends included); ``"90"`` -> (90, 90).

    Raises ``ValueError`` naming what is wrong.
    """
    low_text, _, high_text = text.partition(":")
    try:
        low = int(low_text)
        high = int(high_text) if high_text else low
    except ValueError:
        raise ValueError(f"call length {text!r}: expected SECONDS or MIN:MAX") from None
    if low < 0 or high < low:
        raise ValueError(f"call length {text!r}: need 0 <= MIN <= MAX")
    return low, high


def session_prefix(run_id: str) -> str:
    """What every Acct-Session-Id of run ``run_id`` starts with."""
    return f"lg-{run_id}-"


def _refusal_kinds(count: int, share: float) -> list[str]:
    # Spread evenly: call n is refused when floor((n+1)*share) > floor(n*share).
    kinds = []
    refused = 0
    for n in range(count):
        due = int((n + 1) * share)
        if due > refused:
            kinds.append(REFUSE_UNRATED if refused % 2 == 0 else REFUSE_UNKNOWN)
            refused = due
        else:
            kinds.append("")
    return kinds


def plan_calls(
    population: Population,
    count: int,
    *,
    run_id: str,
    durations: tuple[int, int],
    refuse_share: float,
    seed: int,
) -> list[CallSpec]:
    """``count`` calls over the population's callers, round robin.

    Destinations and caller-IDs are drawn from the caller's own; lengths are uniform
    in ``durations``; a share ``refuse_share`` of the calls (spread evenly) is meant
    to be refused, alternately to an unrated destination and from an unknown caller.
    """
    if not population.callers:
        raise ValueError("the population has no callers")
    if not 0.0 <= refuse_share <= 1.0:
        raise ValueError(f"refuse share {refuse_share}: must be between 0 and 1")
    if refuse_share > 0 and not population.unrated:
        raise ValueError("refused calls need an unrated destination prefix")
    rng = random.Random(seed)
    prefix = session_prefix(run_id)
    callers = population.callers
    digits = population.suffix_digits
    low, high = durations
    out = []
    for n, refuse in enumerate(_refusal_kinds(count, refuse_share)):
        caller = callers[n % len(callers)]
        if refuse == REFUSE_UNRATED:
            dial = rng.choice(population.unrated)
        else:
            dial = rng.choice(caller.destinations)
        suffix = str(rng.randrange(10**digits)).zfill(digits) if digits else ""
        username, password = caller.extension, caller.password
        calling = rng.choice(caller.caller_ids)
        customer: int | None = caller.account_id
        if refuse == REFUSE_UNKNOWN:
            username, customer = f"lg{run_id}-nobody{n}", None
            calling = f"999{n:09d}"
        out.append(
            CallSpec(
                index=n,
                session_id=f"{prefix}{n}",
                username=username,
                password=password,
                calling=calling,
                called=dial + suffix,
                dial_prefix=dial,
                customer_id=customer,
                duration_s=rng.randint(low, high),
                refuse=refuse,
            )
        )
    return out
