"""ITU-T Q.850 cause values: the number a CDR keeps for why a call ended, its name,
and how each switch dialect's own encoding reads as one.

Names are the ones Q.850 (05/1998) Table 1 gives, lower case. Switches send causes
their own way: Cisco's h323-disconnect-cause is the Q.850 value in hex ("10" = 16);
RADIUS Acct-Terminate-Cause (RFC 2866) is a NAS's reason, mapped below only where a
Q.850 value plainly says the same thing.
"""

from __future__ import annotations

NAMES: dict[int, str] = {
    1: "unallocated (unassigned) number",
    2: "no route to specified transit network",
    3: "no route to destination",
    4: "send special information tone",
    5: "misdialled trunk prefix",
    6: "channel unacceptable",
    7: "call awarded and being delivered in an established channel",
    8: "preemption",
    9: "preemption - circuit reserved for reuse",
    14: "QoR: ported number",
    16: "normal call clearing",
    17: "user busy",
    18: "no user responding",
    19: "no answer from user (user alerted)",
    20: "subscriber absent",
    21: "call rejected",
    22: "number changed",
    23: "redirection to new destination",
    25: "exchange routing error",
    26: "non-selected user clearing",
    27: "destination out of order",
    28: "invalid number format (address incomplete)",
    29: "facility rejected",
    30: "response to STATUS ENQUIRY",
    31: "normal, unspecified",
    34: "no circuit/channel available",
    38: "network out of order",
    39: "permanent frame mode connection out of service",
    40: "permanent frame mode connection operational",
    41: "temporary failure",
    42: "switching equipment congestion",
    43: "access information discarded",
    44: "requested circuit/channel not available",
    46: "precedence call blocked",
    47: "resource unavailable, unspecified",
    49: "quality of service not available",
    50: "requested facility not subscribed",
    53: "outgoing calls barred within CUG",
    55: "incoming calls barred within CUG",
    57: "bearer capability not authorized",
    58: "bearer capability not presently available",
    62: "inconsistency in designated outgoing access information and subscriber class",
    63: "service or option not available, unspecified",
    65: "bearer capability not implemented",
    66: "channel type not implemented",
    69: "requested facility not implemented",
    70: "only restricted digital information bearer capability is available",
    79: "service or option not implemented, unspecified",
    81: "invalid call reference value",
    82: "identified channel does not exist",
    83: "a suspended call exists, but this call identity does not",
    84: "call identity in use",
    85: "no call suspended",
    86: "call having the requested call identity has been cleared",
    87: "user not member of CUG",
    88: "incompatible destination",
    90: "non-existent CUG",
    91: "invalid transit network selection",
    95: "invalid message, unspecified",
    96: "mandatory information element is missing",
    97: "message type non-existent or not implemented",
    98: "message not compatible with call state or message type non-existent or not implemented",
    99: "information element/parameter non-existent or not implemented",
    100: "invalid information element contents",
    101: "message not compatible with call state",
    102: "recovery on timer expiry",
    103: "parameter non-existent or not implemented, passed on",
    110: "message with unrecognized parameter, discarded",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
}

# RFC 2866 Acct-Terminate-Cause names with a Q.850 value that says the same: the
# user hung up, the NAS ended the call at its time limit (a normal release, as a
# switch does when the credit time is over), the line or the NAS failed.
TERMINATE_CAUSES: dict[str, int] = {
    "User-Request": 16,
    "Session-Timeout": 16,
    "Idle-Timeout": 102,
    "Lost-Carrier": 41,
    "Lost-Service": 41,
    "NAS-Error": 41,
    "Port-Error": 41,
    "Service-Unavailable": 63,
}


def name(code: int | None) -> str:
    """The Q.850 name of ``code``; '' for None, ``cause N`` for a value Q.850 leaves
    unassigned (a switch may still send one)."""
    if code is None:
        return ""
    return NAMES.get(code, f"cause {code}")


def from_hex(raw: str) -> int | None:
    """Cisco's hex cause ("10", "0x10") as its Q.850 value; None when it is not one."""
    text = raw.strip().lower().removeprefix("0x")
    if not text or len(text) > 2 or any(ch not in "0123456789abcdef" for ch in text):
        return None
    code = int(text, 16)
    return code if 0 < code <= 127 else None


def display(code: int | None, raw: str) -> str:
    """How a CDR shows its cause: ``16 normal call clearing``, else the raw value."""
    return f"{code} {name(code)}" if code is not None else raw
