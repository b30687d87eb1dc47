"""What goes in and out of the balance scripts: typed, at the module edge."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.compact_json import dumps as _dumps


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
    cause: str = ""  # as the switch wrote it (its profile's encoding)
    connect_at: float | None = None  # when the switch reports it (Stop without Start)
    cause_q850: int | None = None  # ``cause`` as a Q.850 value, when the front could read it
    # The call's length to the millisecond, when the switch's times tell it (h323
    # connect and disconnect times); rates with sub-second increments bill on it.
    duration_ms: int | None = None

    def to_json(self) -> str:
        connect = None if self.connect_at is None else round(self.connect_at, 3)
        return _dumps(
            {
                "disconnect_at": round(self.disconnect_at, 3),
                "cause": self.cause,
                "connect_at": connect,
                "cause_q850": self.cause_q850,
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
