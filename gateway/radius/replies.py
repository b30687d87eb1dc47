"""Refusal reasons to RADIUS answers: the one table per protocol (STYLE.md 3).

A refusal becomes an Access-Reject with ``h323-return-code`` (cisco profile) and a
Reply-Message. Vendors disagree on the codes, so a client may override any of
them (``return_codes`` in its configuration). Backend outage and overload get no
reply at all: the switch then retries or fails over to another server.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from gateway.core.reasons import Reason

# h323-return-code per reason (Cisco's prepaid codes as switches expect them).
DEFAULT_RETURN_CODES = MappingProxyType(
    {
        Reason.UNKNOWN_CALLER: 1,
        Reason.BAD_PASSWORD: 2,
        Reason.TOO_MANY_CALLS: 3,
        Reason.ZERO_BALANCE: 4,
        Reason.AGENT_CAP: 6,
        Reason.ACCOUNT_DISABLED: 7,
        Reason.DESTINATION_NOT_RATED: 9,
        Reason.DESTINATION_BLOCKED: 9,
        Reason.PRICE_LIMIT: 9,
        Reason.NEGATIVE_MARGIN: 8,
        Reason.SPEND_CAP_HOUR: 6,
        Reason.SPEND_CAP_DAY: 6,
        Reason.SPEND_CAP_CALL: 6,
        Reason.CPS_LIMIT: 3,
        Reason.INSUFFICIENT_FUNDS: 12,
        Reason.SESSION_ENDED: 13,
    }
)

REPLY_MESSAGES = MappingProxyType(
    {
        Reason.UNKNOWN_CALLER: "Unknown account",
        Reason.BAD_PASSWORD: "Invalid password",
        Reason.TOO_MANY_CALLS: "Too many concurrent calls",
        Reason.ZERO_BALANCE: "Zero balance",
        Reason.AGENT_CAP: "Credit limit reached",
        Reason.ACCOUNT_DISABLED: "Account disabled",
        Reason.DESTINATION_NOT_RATED: "Destination not allowed",
        Reason.DESTINATION_BLOCKED: "Destination blocked",
        Reason.PRICE_LIMIT: "Destination over the price limit",
        Reason.NEGATIVE_MARGIN: "Destination not available",
        Reason.SPEND_CAP_HOUR: "Hourly spend limit reached",
        Reason.SPEND_CAP_DAY: "Daily spend limit reached",
        Reason.SPEND_CAP_CALL: "Call spend limit",
        Reason.CPS_LIMIT: "Too many call attempts",
        Reason.INSUFFICIENT_FUNDS: "Insufficient balance",
        Reason.SESSION_ENDED: "Call already ended",
    }
)

# Reasons that get no reply: the switch must retry or ask another server.
SILENT = frozenset({Reason.BACKEND_UNAVAILABLE, Reason.OVERLOAD})


class ReturnCodes:
    """One client's map from reason to h323-return-code, defaults plus overrides."""

    def __init__(self, overrides: Iterable[tuple[str, int]] = ()) -> None:
        codes = dict(DEFAULT_RETURN_CODES)
        for name, code in overrides:
            try:
                reason = Reason[name]
            except KeyError:
                known = ", ".join(r.name for r in Reason)
                raise ValueError(f"unknown refusal reason {name!r} (known: {known})") from None
            codes[reason] = code
        self._codes = codes

    def code(self, reason: Reason) -> int:
        return self._codes.get(reason, 1)


def reply_message(reason: Reason) -> str:
    return REPLY_MESSAGES.get(reason, "Call refused")
