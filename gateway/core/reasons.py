"""Why a call is refused: one stable code per reason, shared by every front.

Each front maps these to its own wire answer in one table (``radius/replies.py``:
Access-Reject with h323-return-code; ``sip/replies.py``: 402/403/404/486/503).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.Enum):
    """A refusal reason; the value is its stable code (logs, metrics, CDRs)."""

    UNKNOWN_CALLER = "UNKNOWN_CALLER"
    BAD_PASSWORD = "BAD_PASSWORD"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    TOO_MANY_CALLS = "TOO_MANY_CALLS"
    ZERO_BALANCE = "ZERO_BALANCE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    AGENT_CAP = "AGENT_CAP"
    DESTINATION_NOT_RATED = "DESTINATION_NOT_RATED"
    DESTINATION_BLOCKED = "DESTINATION_BLOCKED"
    PRICE_LIMIT = "PRICE_LIMIT"  # dearer per minute than a level of the chain allows
    NEGATIVE_MARGIN = "NEGATIVE_MARGIN"  # a reseller would sell below its own cost
    SPEND_CAP_HOUR = "SPEND_CAP_HOUR"  # a level's spend in the last hour is at its cap
    SPEND_CAP_DAY = "SPEND_CAP_DAY"  # ... in the last day
    SPEND_CAP_CALL = "SPEND_CAP_CALL"  # one call may not cost a level more than this
    CPS_LIMIT = "CPS_LIMIT"  # call attempts per second or minute of a level or subtree
    SESSION_ENDED = "SESSION_ENDED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    OVERLOAD = "OVERLOAD"


# Codes returned by reserve.lua, mapped onto reasons.
_FROM_SCRIPT = {
    "DISABLED": Reason.ACCOUNT_DISABLED,
    "TOO_MANY_CALLS": Reason.TOO_MANY_CALLS,
    "ZERO_BALANCE": Reason.ZERO_BALANCE,
    "INSUFFICIENT_FUNDS": Reason.INSUFFICIENT_FUNDS,
    "AGENT_CAP": Reason.AGENT_CAP,
    "SPEND_CAP_HOUR": Reason.SPEND_CAP_HOUR,
    "SPEND_CAP_DAY": Reason.SPEND_CAP_DAY,
    "SPEND_CAP_CALL": Reason.SPEND_CAP_CALL,
    "CPS_LIMIT": Reason.CPS_LIMIT,
    "SESSION_ENDED": Reason.SESSION_ENDED,
}


def from_script(code: str) -> Reason:
    """The reason for a refusal code returned by a balance script."""
    return _FROM_SCRIPT[code]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused call: why, and which account of the chain refused (None: not one)."""

    reason: Reason
    account_id: int | None = None
    level: int = 0  # 0 customer, 1 its agent, 2 the agent above...
    detail: str = ""
