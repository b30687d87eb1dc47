"""What the call lifecycle takes and gives at its edge: a call's identity, who calls
whom, a switch's policy, and the outcomes of authorizing, running and ending a call.
Typed and free of I/O; both fronts build and read these (``gateway.calls``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.authz.identify import METHODS, Credentials
from gateway.balance.types import Settled
from gateway.config import RadiusClientConfig, effective_grant
from gateway.rating.carriers import Gateway
from gateway.rating.numbers import InvalidNumber, NumberPlan, normalize

# Tells the switch to end a call: given what the front stored to reach it (see
# ``Calls.answered``), sends a Disconnect-Request or the like; never raises.
Hangup = Callable[[str], Awaitable[None]]
# Tells the switch to end a call by itself ``session_timeout_s`` after its answer
# (a CoA-Request with Session-Timeout); True only when the switch acknowledged it.
# False at once for a switch that takes no CoA; never raises.
Limit = Callable[[str, int], Awaitable[bool]]


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class CallKey:
    """A call's identity: the switch (client name), its session id, and the leg.

    ``links``: other ids the switch gives the same call on every request (an
    ``h323-conf-id``, a ``call-id``), as ``kind:value``; they link an authorization
    without a session id (or of another leg) to the call's accounting.
    """

    nas: str
    session_id: str
    leg: str = ""
    links: tuple[str, ...] = ()
    # Reads ``links`` from the request when first needed (most calls never need them).
    find_links: Callable[[], tuple[str, ...]] | None = None

    def all_links(self) -> tuple[str, ...]:
        if not self.links and self.find_links is not None:
            self.links = self.find_links()
            self.find_links = None
        return self.links

    @property
    def session_key(self) -> str:
        return f"{self.nas}|{self.session_id}|{self.leg}"


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Party:
    """Who calls whom, as the front received it (raw numbers, before normalization)."""

    username: str | None = None
    calling: str | None = None
    called: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    remote_addr: str = ""


MAX_REMEMBERED_NUMBERS = 100_000


@dataclass(frozen=True, slots=True)
class Policy:
    """Per switch: how numbers are normalized and how callers are identified."""

    plan: NumberPlan = field(default_factory=NumberPlan)
    order: tuple[str, ...] = METHODS
    check_secret: bool = True  # False: the switch already authenticated its users
    bill_leg: str = "any"  # the leg whose accounting is billed: any, answer, originate
    hangup: bool = False  # the switch can be told to end a call (it has a CoA port)
    slices: bool = False  # hold a slice at a time (needs hangup), else the whole grant
    overrun_cap: bool = True  # bill a Stop past its limit only up to the limit
    # Numbers seen from this switch, normalized: a caller's number comes back on every
    # request of every call, and each request reads it more than once.
    numbers: dict[str, str | None] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for method in self.order:
            if method not in METHODS:
                raise ValueError(f"unknown identification method {method!r}")

    @classmethod
    def for_switch(cls, c: RadiusClientConfig, grant: str = "slice") -> Policy:
        """A configured switch's policy; ``grant``: ``balance.grant`` (slices need a
        switch that can be told to hang up)."""
        plan = NumberPlan(
            country_code=c.country_code,
            international_prefixes=c.international_prefixes,
            national_prefix=c.national_prefix,
            strip_prefixes=c.strip_prefixes,
        )
        return cls(
            plan=plan,
            order=tuple(m for m in c.identify if m in METHODS),
            check_secret=c.verify_password,
            bill_leg=c.bill_leg,
            hangup=c.coa_port != 0,
            slices=effective_grant(grant, c) == "slice",
            overrun_cap=c.overrun == "cap",
        )

    def bills(self, leg: str) -> bool:
        """Whether accounting of ``leg`` is billed (a request naming no leg always is)."""
        return self.bill_leg == "any" or not leg or leg == self.bill_leg

    def number(self, raw: str | None) -> str | None:
        """``raw`` normalized by the plan; None when empty or not a number."""
        if not raw:
            return None
        numbers = self.numbers
        try:
            return numbers[raw]
        except KeyError:
            pass
        value = _normalized(raw, self.plan)
        if len(numbers) >= MAX_REMEMBERED_NUMBERS:
            numbers.clear()
        numbers[raw] = value
        return value


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: its normalized number and the carrier gateways to try, in
    order (none: the destination has no route, or its prefix is blocked)."""

    number: str
    gateways: tuple[Gateway, ...]


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Authorized:
    account_id: int
    granted_s: int
    hold_micros: int  # what the customer's level holds (for the held time)
    currency: str
    available_micros: int = 0  # the customer's credit left after the hold
    held_s: int = 0  # the time held: the grant, or a first slice of it
    route: Route | None = None  # when asked for (SIP): never without gateways
    low_balance: bool = False  # available_micros is below the account's threshold


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Credit:
    """A running call's credit after an accounting request: the time granted and held,
    and whether the switch must now be told to end it (``hangup`` was called)."""

    granted_s: int
    held_s: int
    hung_up: bool = False


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class LoginAccepted:
    """An authorization with no destination: the caller is known, nothing held."""

    account_id: int


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Ended:
    """A call's end as recorded: its settlement (None when nothing could be billed)."""

    settled: Settled | None
    reason: str = ""


def _normalized(raw: str | None, plan: NumberPlan) -> str | None:
    if not raw:
        return None
    try:
        return normalize(raw, plan)
    except InvalidNumber:
        return None
