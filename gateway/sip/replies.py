"""Refusal reasons and outcomes to SIP answers: the one table per protocol (STYLE.md 3).

A refusal is a final response whose code a proxy can act on (402 money, 403 who,
404 where, 486 busy, 503 try later or elsewhere), with the stable reason code in
``X-Reason`` for logs and scripts. Backend outage and overload are 503 with
``Retry-After``: unlike RADIUS, SIP must answer, and 503 makes the proxy fail over.

A granted call is ``302 Moved Temporarily`` with one Contact per carrier gateway,
in order, with strictly decreasing q-values (equal q-values would invite parallel
forking), and the credit time in ``X-Credit-Time`` and ``X-Max-Duration``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from gateway.core.reasons import Reason
from gateway.rating.carriers import Gateway
from gateway.sip.message import Answer

# The methods this server implements, in Allow headers.
ALLOW = ("INVITE", "ACK", "CANCEL", "OPTIONS")
# Methods a SIP element may know but a redirect server does not take: 405, not 501.
KNOWN_METHODS = frozenset(
    {"BYE", "REGISTER", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE"}
    | {"PUBLISH"}
)

REFUSALS = MappingProxyType(
    {
        Reason.INSUFFICIENT_FUNDS: (402, "Payment Required"),
        Reason.ZERO_BALANCE: (402, "Payment Required"),
        Reason.AGENT_CAP: (402, "Payment Required"),
        Reason.UNKNOWN_CALLER: (403, "Forbidden"),
        Reason.ACCOUNT_DISABLED: (403, "Forbidden"),
        Reason.BAD_PASSWORD: (403, "Forbidden"),
        Reason.SESSION_ENDED: (403, "Forbidden"),  # the Call-ID of a call already ended
        Reason.DESTINATION_NOT_RATED: (404, "Not Found"),
        Reason.DESTINATION_BLOCKED: (404, "Not Found"),
        Reason.PRICE_LIMIT: (403, "Forbidden"),
        Reason.NEGATIVE_MARGIN: (403, "Forbidden"),
        Reason.SPEND_CAP_HOUR: (402, "Payment Required"),
        Reason.SPEND_CAP_DAY: (402, "Payment Required"),
        Reason.SPEND_CAP_CALL: (402, "Payment Required"),
        Reason.CPS_LIMIT: (403, "Forbidden"),
        Reason.TOO_MANY_CALLS: (486, "Busy Here"),
        Reason.OVERLOAD: (503, "Service Unavailable"),
        Reason.BACKEND_UNAVAILABLE: (503, "Service Unavailable"),
    }
)

CREDIT_TIME = "X-Credit-Time"
MAX_DURATION = "X-Max-Duration"
REASON = "X-Reason"
MAX_CONTACTS = 10  # q-values 1.0, 0.9 ... 0.1: one decimal step each


def refusal(reason: Reason, retry_after_s: int) -> Answer:
    """The final response for a refused INVITE."""
    code, phrase = REFUSALS.get(reason, (403, "Forbidden"))
    headers: list[tuple[str, str]] = [(REASON, reason.value)]
    if code == 503:
        headers.append(("Retry-After", str(retry_after_s)))
    return Answer(code, phrase, tuple(headers))


def contact(number: str, gateway: Gateway, q: str) -> str:
    host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
    transport = "" if gateway.transport == "udp" else f";transport={gateway.transport}"
    return f"<sip:{number}@{host}:{gateway.port}{transport}>;q={q}"


def redirect(number: str, gateways: Sequence[Gateway], granted_s: int) -> Answer:
    """302 to the carrier gateways in order, with the time granted in seconds."""
    chosen = gateways[:MAX_CONTACTS]
    contacts = ", ".join(contact(number, gw, f"{(10 - i) / 10:.1f}") for i, gw in enumerate(chosen))
    return Answer(
        302,
        "Moved Temporarily",
        (
            ("Contact", contacts),
            (CREDIT_TIME, str(granted_s)),
            (MAX_DURATION, str(granted_s)),
        ),
    )


def options() -> Answer:
    return Answer(200, "OK", (("Allow", ", ".join(ALLOW)), ("Accept", "application/sdp")))


def not_allowed(method: str) -> Answer:
    """405 for methods SIP knows that this server does not take, 501 for the rest."""
    allow = ("Allow", ", ".join(ALLOW))
    if method in KNOWN_METHODS:
        return Answer(405, "Method Not Allowed", (allow,))
    return Answer(501, "Not Implemented", (allow,))


def bad_request(reason: str) -> Answer:
    return Answer(400, f"Bad Request ({reason.replace('_', ' ')})")


TRYING = Answer(100, "Trying")
CANCELLED_OK = Answer(200, "OK")
TERMINATED = Answer(487, "Request Terminated")
NO_TRANSACTION = Answer(481, "Call/Transaction Does Not Exist")
