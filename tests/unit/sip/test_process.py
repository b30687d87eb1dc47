"""The INVITE process without backends: who the caller is, and decisions to answers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from gateway.calls.types import Authorized, CallKey, LoginAccepted, Party, Policy, Route
from gateway.core.errors import BackendUnavailable
from gateway.core.reasons import Reason, Refusal
from gateway.rating.carriers import Gateway
from gateway.sip.message import parse
from gateway.sip.process import SipProcess, SipSettings, caller_id


def invite(extra: str = "", ruri: str = "sip:004930123456@gw") -> bytes:
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n"
        "From: <sip:1001@pbx>;tag=f1\r\n"
        "To: <sip:004930123456@gw>\r\n"
        "Call-ID: call-1@pbx\r\n"
        "CSeq: 1 INVITE\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class FakeCalls:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.seen: list[tuple[CallKey, Party]] = []
        self.routed: list[bool] = []

    async def authorize(
        self, key: CallKey, party: Party, policy: Policy, *, route: bool = False
    ) -> Any:
        self.seen.append((key, party))
        self.routed.append(route)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


GW = (Gateway("gw1.example"), Gateway("gw2.example", 5080, "tcp"))
ROUTED = Route("4930123456", GW)


def make(outcome: Any, **kw: Any) -> SipProcess:
    settings = SipSettings(nas="kamailio", policy=Policy(), retry_after_s=3, **kw)
    return SipProcess(FakeCalls(outcome), settings)  # type: ignore[arg-type]


async def test_granted_call_is_a_302_with_route_and_credit_held_under_nas_and_call_id() -> None:
    process = make(Authorized(7, 1800, 1_800_000, "USD", route=ROUTED))
    answer = await process.invite(parse(invite()), "127.0.0.1")
    assert answer.code == 302
    headers = dict(answer.headers)
    assert headers["Contact"] == (
        "<sip:4930123456@gw1.example:5060>;q=1.0, "
        "<sip:4930123456@gw2.example:5080;transport=tcp>;q=0.9"
    )
    assert headers["X-Credit-Time"] == "1800"
    ((key, party),) = process.calls.seen  # type: ignore[attr-defined]
    assert key == CallKey("kamailio", "call-1@pbx", "")
    assert (party.username, party.calling, party.called) == ("1001", "1001", "004930123456")
    assert party.remote_addr == "127.0.0.1"
    assert process.calls.routed == [True]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (Reason.INSUFFICIENT_FUNDS, 402),
        (Reason.UNKNOWN_CALLER, 403),
        (Reason.BAD_PASSWORD, 403),
        (Reason.DESTINATION_NOT_RATED, 404),
        (Reason.TOO_MANY_CALLS, 486),
    ],
)
async def test_refusals(reason: Reason, code: int) -> None:
    answer = await make(Refusal(reason)).invite(parse(invite()), "127.0.0.1")
    assert answer.code == code and dict(answer.headers)["X-Reason"] == reason.value


async def test_backend_down_is_503_with_retry_after() -> None:
    answer = await make(BackendUnavailable("redis", "down")).invite(parse(invite()), "127.0.0.1")
    assert answer.code == 503 and dict(answer.headers)["Retry-After"] == "3"


async def test_an_authorization_without_a_route_is_404() -> None:
    # Calls refuses an unroutable call before holding anything (tests/integration);
    # an answer with no route never becomes a 302.
    process = make(Authorized(7, 60, 1, "USD", route=None))
    answer = await process.invite(parse(invite()), "127.0.0.1")
    assert answer.code == 404 and dict(answer.headers)["X-Reason"] == "DESTINATION_NOT_RATED"


async def test_no_number_dialled_is_404() -> None:
    process = make(LoginAccepted(7))
    answer = await process.invite(parse(invite(ruri="sip:gw.example")), "127.0.0.1")
    assert answer.code == 404


def test_caller_id_prefers_pai_then_rpid_then_from() -> None:
    pai = parse(invite("P-Asserted-Identity: <sip:+4420@pbx>, <tel:+4421>\r\n"))
    assert caller_id(pai) == "+4420"
    rpid = parse(
        invite(
            'Remote-Party-ID: "x" <sip:555@pbx>;party=called\r\n'
            "Remote-Party-ID: <sip:+4422@pbx>;party=calling;screen=yes\r\n"
        )
    )
    assert caller_id(rpid) == "+4422"
    assert caller_id(parse(invite())) == "1001"


def test_credentials() -> None:
    trusting = make(None)
    party = trusting.party(parse(invite()), "127.0.0.1")
    assert party.credentials.matches("any secret")  # the proxy authenticated the caller
    strict = make(None, trust_proxy_auth=False)
    assert not strict.party(parse(invite()), "127.0.0.1").credentials.present
    ha1 = hashlib.md5(b"ext9:r:pw").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:x@gw").hexdigest()
    response = hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    auth = (
        f'Proxy-Authorization: Digest username="ext9", realm="r", nonce="n", '
        f'uri="sip:x@gw", response="{response}"\r\n'
    )
    with_digest = trusting.party(parse(invite(auth)), "127.0.0.1")
    assert with_digest.username == "ext9"  # the authenticated user is the extension
    assert with_digest.credentials.matches("pw") and not with_digest.credentials.matches("no")
    garbage = trusting.party(parse(invite("Authorization: Basic Zm9v\r\n")), "127.0.0.1")
    assert not garbage.credentials.matches("pw")
