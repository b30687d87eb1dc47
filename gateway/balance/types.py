"""What goes in and out of the balance scripts: typed, at the module edge."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.rating.rates import Rate


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON of plain data, as ``json.dumps(separators=(",", ":"))`` writes it.

    ``JSONEncoder.encode`` builds its C encoder anew on every call, which costs more
    than encoding the few fields of a call; the C encoder is built once here.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure Python encoder
        return json.JSONEncoder(separators=(",", ":")).encode
    encode = make(
        None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    join = "".join
    return lambda value: join(encode(value, 0))


_dumps = _compact_encoder()


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

    def __post_init__(self) -> None:
        if self.charged and self.rate is None:
            raise ValueError(f"charged level {self.account_id} needs a rate")

    def script_rate(self) -> list[int]:
        """The rate array the Lua scripts read (see lib.lua)."""
        r = self.rate
        if not self.charged or r is None:
            return [0, 0, 0, 1, 1, 0, 0]
        return [
            1,
            r.price_per_min_micros,
            r.connect_fee_micros,
            r.first_increment_s,
            r.next_increment_s,
            r.min_duration_s,
            r.grace_s,
        ]


@dataclass(frozen=True, slots=True)
class Chain:
    """A call's accounts, customer first, each agent up to the top (``root_id``)."""

    root_id: int
    levels: tuple[Level, ...]
    # The levels as reserve.lua reads them, encoded once per chain, not per call.
    script_levels: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a chain has at least the customer")
        if not self.levels[0].charged:
            raise ValueError("the customer level is always charged")
        encoded = _dumps([level.script_rate() for level in self.levels])
        object.__setattr__(self, "script_levels", encoded)

    @property
    def account_ids(self) -> tuple[int, ...]:
        return tuple(level.account_id for level in self.levels)


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class CallMeta:
    """What the CDR needs that is known when the call is authorized.

    ``setup_at`` is part of the CDR's unique key (PostgreSQL needs the partition key
    in it): it is fixed here, once, so a replayed settlement hits the same row.
    """

    nas: str
    session_id: str
    setup_at: float  # unix seconds, UTC
    leg: str = ""
    caller: str = ""
    called: str = ""  # normalized
    called_dialled: str = ""
    remote_addr: str = ""
    prefixes: tuple[str, ...] = ()  # matched rate prefix per level ('' when uncharged)
    rate_groups: tuple[int, ...] = ()  # rate group per level (0 when uncharged)

    def to_json(self) -> str:
        # Timestamps to the millisecond: the Lua side keeps 14 significant digits.
        return _dumps(
            {
                "nas": self.nas,
                "session_id": self.session_id,
                "setup_at": round(self.setup_at, 3),
                "leg": self.leg,
                "caller": self.caller,
                "called": self.called,
                "called_dialled": self.called_dialled,
                "remote_addr": self.remote_addr,
                "prefixes": self.prefixes,
                "rate_groups": self.rate_groups,
            }
        )


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class CallEnd:
    """What the switch says when the call ends."""

    disconnect_at: float  # unix seconds
    cause: str = ""
    connect_at: float | None = None  # when the switch reports it (Stop without Start)

    def to_json(self) -> str:
        connect = None if self.connect_at is None else round(self.connect_at, 3)
        return _dumps(
            {
                "disconnect_at": round(self.disconnect_at, 3),
                "cause": self.cause,
                "connect_at": connect,
            }
        )


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Grant:
    """A reservation that went through: the time granted and each level's hold."""

    granted_s: int
    holds_micros: tuple[int, ...]
    repeated: bool = False  # the session already held; the first answer is repeated
    held_s: int = 0  # the time the holds cover (the grant in whole mode, a slice else)
    available_micros: int = 0  # what the customer has left after the hold


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Settled:
    """A settled call: each level's cost and where the settlement sits in the stream."""

    costs_micros: tuple[int, ...]
    stream: str
    stream_id: str
    duplicate: bool = False
    overrun_s: int = 0  # seconds past the call's limit (billed or not, per overrun policy)


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Extended:
    """A running call's hold after an extension: what it covers, and whether it is cut
    (no more could be held: the switch must hang up at ``cut_at``)."""

    granted_s: int
    held_s: int
    grew: bool
    cut: bool = False
    cut_at: float = 0.0


@dataclass(slots=True)  # not frozen: built per settled call by the committer; read-only
class SettlementEntry:
    """One settled call as read back from the stream (what the committer writes)."""

    session: str
    accounts: tuple[str, ...]  # account hash keys, customer first
    account_ids: tuple[int, ...]
    rates: tuple[tuple[int, ...], ...]  # script rate arrays per level
    billed_s: tuple[int, ...]
    costs_micros: tuple[int, ...]
    duration_s: int
    granted_s: int
    reserved_at: float
    answered_at: float | None
    meta: CallMeta
    end: CallEnd
    extra: dict[str, Any] = field(default_factory=dict)
    overrun_s: int = 0

    @classmethod
    def from_json(cls, raw: bytes | str) -> SettlementEntry:
        """Parse the 's' field that settle.lua wrote."""
        data = json.loads(raw)
        meta = data["meta"]
        meta["prefixes"] = tuple(meta.get("prefixes", ()))
        meta["rate_groups"] = tuple(meta.get("rate_groups", ()))
        linked = data.get("linked")
        if linked is not None:
            # A provisional hold taken over by the call's accounting (adopt.lua): the
            # CDR carries the session id and leg the switch accounts the call under.
            meta["session_id"], meta["leg"] = linked[0], linked[1]
        accounts = tuple(data["accounts"])
        # map() rather than generators: the committer parses every settled call.
        return cls(
            session=data["session"],
            accounts=accounts,
            account_ids=tuple([int(key.rsplit(":", 1)[1]) for key in accounts]),
            rates=tuple([tuple(map(int, rate)) for rate in data["levels"]]),
            billed_s=tuple(map(int, data["billed"])),
            costs_micros=tuple(map(int, data["costs"])),
            duration_s=int(data["duration"]),
            granted_s=int(data["granted"]),
            reserved_at=float(data["reserved_at"]),
            answered_at=None if data.get("answered_at") is None else float(data["answered_at"]),
            meta=CallMeta(**meta),
            end=CallEnd(**data["end"]),
            overrun_s=int(data.get("overrun", 0)),
        )
