"""Switch dialects: which attributes carry a call's facts, and how answers are worded.

``standard``: RFC attributes only (Kamailio misc_radius/acc_radius, most softswitches).
``cisco``: the same plus Cisco's h323-* VSAs and Cisco-AVPair (Cisco gateways, Sippy,
VOS3000 in Cisco mode). Cisco writes its h323 values as ``name=value``; both forms
are read, and answers are written with the name, as Cisco IOS expects.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from gateway.core import q850
from gateway.radius.codec import Packet
from gateway.radius.dictionary import UnknownAttribute
from gateway.rating.money import format_money

# The h323-prompt-id of an Accept whose caller is below its low-balance threshold.
LOW_BALANCE_PROMPT = "low_balance"
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
# Cisco time: "HH:MM:SS.mmm TZ Www Mmm DD YYYY", optionally led by '*' or '.'.
_CISCO_TIME = re.compile(
    r"^[*.]?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?\s+(\S+)\s+\w{3}\s+(\w{3})\s+(\d{1,2})\s+(\d{4})$"
)


def _cisco_value(raw: str | None, name: str) -> str | None:
    """``h323-conf-id=ABC`` or ``ABC`` -> ``ABC``."""
    if raw is None:
        return None
    prefix = f"{name}="
    return raw[len(prefix) :] if raw.startswith(prefix) else raw


def cisco_time(text: str | None) -> float | None:
    """A Cisco h323 time (UTC or GMT only) as unix seconds; None when unreadable."""
    if not text:
        return None
    match = _CISCO_TIME.match(text.strip())
    if match is None:
        return None
    hh, mm, ss, ms, zone, month, day, year = match.groups()
    if zone.upper() not in ("UTC", "GMT") or month.lower() not in _MONTHS:
        return None
    try:
        moment = calendar.timegm(
            (int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss), 0, 0, 0)
        )
    except (ValueError, OverflowError):
        return None
    return moment + (int(ms.ljust(3, "0")) / 1000 if ms else 0.0)


def _str(packet: Packet, name: str) -> str | None:
    # Hot path (a dozen reads per request): absent attributes, the usual case for
    # most of them, cost two dict lookups.
    d = packet.dictionary.by_name.get(name)
    if d is None:
        return None
    raws = packet.index.get(d.key)
    if not raws:
        return None
    try:
        value = packet.get(name)
    except UnknownAttribute:
        return None
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _int(packet: Packet, name: str) -> int | None:
    d = packet.dictionary.by_name.get(name)
    if d is None or d.key not in packet.index:
        return None
    value = packet.get(name)
    return value if isinstance(value, int) else None


def avpair(packet: Packet, key: str) -> str | None:
    """The value of ``key=value`` in a Cisco-AVPair, first match."""
    prefix = f"{key}="
    try:
        values = packet.get_all("Cisco-AVPair")
    except UnknownAttribute:
        return None
    for value in values:
        if isinstance(value, str) and value.startswith(prefix):
            return value[len(prefix) :]
    return None


def _event_time(packet: Packet) -> float | None:
    event = _int(packet, "Event-Timestamp")
    return float(event) if event is not None else None


def _terminate_cause(packet: Packet) -> str:
    if "Acct-Terminate-Cause" not in packet:
        return ""
    return packet.value_name("Acct-Terminate-Cause") or ""


def _when(packet: Packet, name: str) -> float | None:
    raw = _str(packet, name)
    return None if raw is None else cisco_time(_cisco_value(raw, name))


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class CallFacts:
    """What a request says about its call, in neutral terms."""

    session_id: str | None
    leg: str
    username: str | None
    calling: str | None
    called: str | None
    setup_at: float | None = None
    connect_at: float | None = None
    disconnect_at: float | None = None
    cause: str = ""  # as the switch wrote it
    cause_q850: int | None = None  # the same read as a Q.850 value, when it is one
    accounting_id: str | None = None  # Acct-Session-Id itself (session_id may fall back)
    duration_ms: int | None = None  # from the switch's own connect and disconnect times


class Profile:
    """The standard dialect; subclasses add vendor attributes."""

    name = "standard"

    def facts(self, packet: Packet) -> CallFacts:
        session = _str(packet, "Acct-Session-Id")
        return CallFacts(
            session_id=session,
            accounting_id=session,
            leg="",
            username=_str(packet, "User-Name"),
            calling=_str(packet, "Calling-Station-Id"),
            called=_str(packet, "Called-Station-Id"),
            disconnect_at=_event_time(packet),
            cause=(terminate := _terminate_cause(packet)),
            cause_q850=q850.TERMINATE_CAUSES.get(terminate),
        )

    def accept(
        self, granted_s: int, available_micros: int, currency: str, *, low_balance: bool = False
    ) -> list[tuple[str, str | int]]:
        """Attributes of an Access-Accept for a call granted ``granted_s``; the caller
        has ``available_micros`` left after the call's hold, below the account's
        low-balance threshold when ``low_balance``."""
        del available_micros, currency, low_balance
        return [("Session-Timeout", granted_s)]

    def links(self, packet: Packet) -> tuple[str, ...]:
        """The call's other ids in ``packet`` (``kind:value``), which link a hold to
        the call's accounting; read only when a hold must be found by them."""
        del packet
        return ()

    def login_accept(self) -> list[tuple[str, str | int]]:
        return []

    def reject(self, return_code: int, message: str) -> list[tuple[str, str | int]]:
        del return_code
        return [("Reply-Message", message)]


class CiscoProfile(Profile):
    """Cisco h323 VSAs: session identity, legs, times, credit answers."""

    name = "cisco"

    def facts(self, packet: Packet) -> CallFacts:
        accounting_id = _str(packet, "Acct-Session-Id")
        session = (
            accounting_id
            or _cisco_value(_str(packet, "h323-conf-id"), "h323-conf-id")
            or avpair(packet, "call-id")
        )
        leg = _cisco_value(_str(packet, "h323-call-origin"), "h323-call-origin") or ""
        cause = _cisco_value(_str(packet, "h323-disconnect-cause"), "h323-disconnect-cause")
        # Cisco writes the Q.850 value in hex ("10" is 16, normal call clearing).
        code = q850.from_hex(cause) if cause else None
        if not cause:
            cause = _terminate_cause(packet)
            code = q850.TERMINATE_CAUSES.get(cause)
        return CallFacts(
            session_id=session,
            accounting_id=accounting_id,
            leg=leg,
            username=_str(packet, "User-Name"),
            calling=_str(packet, "Calling-Station-Id"),
            called=_str(packet, "Called-Station-Id"),
            setup_at=_when(packet, "h323-setup-time"),
            connect_at=(connect := _when(packet, "h323-connect-time")),
            disconnect_at=(hung := _when(packet, "h323-disconnect-time")) or _event_time(packet),
            cause=cause,
            cause_q850=code,
            # Both h323 times carry milliseconds: the call's length to the ms.
            duration_ms=None
            if connect is None or hung is None or hung < connect
            else round((hung - connect) * 1000),
        )

    def accept(
        self, granted_s: int, available_micros: int, currency: str, *, low_balance: bool = False
    ) -> list[tuple[str, str | int]]:
        # h323-credit-amount is the credit left (an IVR reads it out), never the hold.
        attributes: list[tuple[str, str | int]] = [
            ("h323-return-code", "h323-return-code=0"),
            ("h323-credit-time", f"h323-credit-time={granted_s}"),
            ("h323-credit-amount", f"h323-credit-amount={format_money(available_micros)}"),
            ("h323-currency", f"h323-currency={currency or 'USD'}"),
            ("h323-billing-model", "h323-billing-model=1"),  # 1: debit (prepaid)
            ("Session-Timeout", granted_s),
        ]
        if low_balance:
            # The switch's IVR picks the announcement by prompt id before connecting.
            attributes.append(("h323-prompt-id", f"h323-prompt-id={LOW_BALANCE_PROMPT}"))
        return attributes

    def links(self, packet: Packet) -> tuple[str, ...]:
        conf_id = _cisco_value(_str(packet, "h323-conf-id"), "h323-conf-id")
        call_id = avpair(packet, "call-id")
        return ((f"conf:{conf_id}",) if conf_id else ()) + (
            (f"callid:{call_id}",) if call_id else ()
        )

    def login_accept(self) -> list[tuple[str, str | int]]:
        return [("h323-return-code", "h323-return-code=0")]

    def reject(self, return_code: int, message: str) -> list[tuple[str, str | int]]:
        return [
            ("h323-return-code", f"h323-return-code={return_code}"),
            ("Reply-Message", message),
        ]


PROFILES: dict[str, Profile] = {"standard": Profile(), "cisco": CiscoProfile()}


def now() -> float:
    return time.time()
