"""Q.850 causes: names, Cisco's hex, RFC 2866 terminate causes, what a CDR shows."""

from __future__ import annotations

import pytest

from gateway.core import q850
from gateway.radius.codec import PacketCode, decode_request, encode_request
from gateway.radius.profiles import PROFILES


def test_names_of_common_causes() -> None:
    assert q850.name(16) == "normal call clearing"
    assert q850.name(17) == "user busy"
    assert q850.name(34) == "no circuit/channel available"
    assert q850.name(127) == "interworking, unspecified"
    assert q850.name(None) == ""
    assert q850.name(13) == "cause 13"  # unassigned by Q.850, still shown


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("10", 16),
        ("0x10", 16),
        ("11", 17),
        ("1F", 31),
        ("7f", 127),
        ("0", None),
        ("80", None),
        ("", None),
        ("zz", None),
        ("100", None),
        ("normal", None),
    ],
)
def test_cisco_hex(raw: str, code: int | None) -> None:
    assert q850.from_hex(raw) == code


def test_display() -> None:
    assert q850.display(16, "10") == "16 normal call clearing"
    assert q850.display(None, "nas-restart") == "nas-restart"


def _stop(*attrs: tuple[str, str | int]) -> object:
    datagram = encode_request(
        PacketCode.ACCOUNTING_REQUEST,
        1,
        [("Acct-Session-Id", "s"), ("Acct-Status-Type", 2), *attrs],
        b"secret",
    )
    return decode_request(datagram)


def test_the_cisco_profile_reads_its_hex_cause_as_q850() -> None:
    facts = PROFILES["cisco"].facts(
        _stop(("h323-disconnect-cause", "h323-disconnect-cause=10"))  # type: ignore[arg-type]
    )
    assert (facts.cause, facts.cause_q850) == ("10", 16)


def test_the_standard_profile_maps_terminate_causes() -> None:
    facts = PROFILES["standard"].facts(_stop(("Acct-Terminate-Cause", 1)))  # type: ignore[arg-type]
    assert (facts.cause, facts.cause_q850) == ("User-Request", 16)
    facts = PROFILES["standard"].facts(_stop(("Acct-Terminate-Cause", 6)))  # type: ignore[arg-type]
    assert (facts.cause, facts.cause_q850) == ("Admin-Reset", None)  # no plain Q.850 twin
    facts = PROFILES["cisco"].facts(_stop(("Acct-Terminate-Cause", 1)))  # type: ignore[arg-type]
    assert (facts.cause, facts.cause_q850) == ("User-Request", 16)  # no h323 cause: RFC's
