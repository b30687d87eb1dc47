"""One settled call as the committer reads it back from the settlement stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.balance.types import CallEnd, CallMeta


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
            rates=tuple([tuple(map(int, rate[:9])) for rate in data["levels"]]),  # no schedules
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
