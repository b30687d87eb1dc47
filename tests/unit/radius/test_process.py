"""The RADIUS process without sockets or backends: request bytes in, the neutral call
event it becomes, reply bytes out (or none)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.authz.identify import Credentials
from gateway.balance.types import CallEnd, Settled
from gateway.calls.types import Authorized, CallKey, Credit, Ended, LoginAccepted, Party, Policy
from gateway.config import RadiusClientConfig
from gateway.core.errors import BackendUnavailable
from gateway.core.reasons import Reason, Refusal
from gateway.radius.clients import Client
from gateway.radius.codec import Packet, PacketCode, decode_reply, encode_request
from gateway.radius.process import RadiusProcess

SECRET = "unit-secret"
ADDR = ("192.0.2.10", 40000)


class FakeCalls:
    """Records each call event and answers with ``outcome`` (or raises it)."""

    def __init__(self, outcome: Any = None) -> None:
        self.outcome = outcome
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.hangup = None

    def _answer(self, verb: str, *args: Any) -> Any:
        self.events.append((verb, args))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def authorize(self, key: CallKey, party: Party, policy: Policy) -> Any:
        return self._answer("authorize", key, party, policy)

    async def answered(
        self, key: CallKey, party: Party, policy: Policy, at: float, reach: str
    ) -> Any:
        return self._answer("answered", key, at, reach)

    async def interim(self, key: CallKey, party: Party, policy: Policy, *args: Any) -> Any:
        return self._answer("interim", key, *args)

    async def ended(
        self, key: CallKey, party: Party, policy: Policy, duration: int | None, end: CallEnd
    ) -> Any:
        return self._answer("ended", key, duration, end)

    async def nas_restarted(self, nas: str, at: float) -> int:
        self._answer("nas_restarted", nas)
        return 0


def client(**overrides: Any) -> Client:
    values: dict[str, Any] = {"name": "gw", "address": "192.0.2.10", "secret": SECRET}
    values.update(overrides)
    return Client.from_config(RadiusClientConfig(**values))


async def ask(
    calls: FakeCalls, sw: Client, code: PacketCode, attrs: list[tuple[str, Any]], **kw: Any
) -> Packet | None:
    data = encode_request(code, 9, attrs, SECRET.encode(), **kw)
    reply = await RadiusProcess(calls).handle(data, sw, ADDR)  # type: ignore[arg-type]
    return None if reply is None else decode_reply(reply)


CALL = [
    ("User-Name", "1001"),
    ("Calling-Station-Id", "442071230001"),
    ("Called-Station-Id", "004930123456"),
]


async def test_an_access_request_is_authorized_and_the_grant_worded_for_cisco() -> None:
    calls = FakeCalls(Authorized(7, 600, 60_000, "EUR", available_micros=1_940_000, held_s=60))
    attrs = [
        *CALL,
        ("User-Password", "pw"),
        ("Acct-Session-Id", "S1"),
        ("h323-conf-id", "h323-conf-id=C1"),
        ("h323-call-origin", "h323-call-origin=answer"),
    ]
    reply = await ask(calls, client(), PacketCode.ACCESS_REQUEST, attrs)
    assert reply is not None and reply.code == PacketCode.ACCESS_ACCEPT
    assert reply.get("Session-Timeout") == 600
    assert reply.get("h323-credit-time") == "h323-credit-time=600"
    assert reply.get("h323-credit-amount") == "h323-credit-amount=1.94"  # the credit left
    assert reply.get("h323-currency") == "h323-currency=EUR"
    ((verb, (key, party, _policy)),) = calls.events
    assert verb == "authorize"
    assert (key.nas, key.session_id, key.leg) == ("gw", "S1", "answer")
    assert key.all_links() == ("conf:C1",)  # read from the request when asked for
    assert (party.username, party.calling, party.called) == ("1001", "442071230001", "004930123456")
    assert party.credentials == Credentials(password="pw")


@pytest.mark.parametrize("profile", ["cisco", "standard"])
@pytest.mark.parametrize("low", [False, True])
async def test_the_low_balance_hint_is_a_cisco_prompt_id_only_when_below(
    profile: str, low: bool
) -> None:
    decision = Authorized(7, 600, 60_000, "USD", available_micros=900_000, low_balance=low)
    reply = await ask(FakeCalls(decision), client(profile=profile), PacketCode.ACCESS_REQUEST, CALL)
    assert reply is not None and reply.code == PacketCode.ACCESS_ACCEPT
    prompts = reply.get_all("h323-prompt-id") if profile == "cisco" else []
    assert prompts == (["h323-prompt-id=low_balance"] if low and profile == "cisco" else [])
    assert ("h323-prompt-id" in reply) is (low and profile == "cisco")


async def test_without_acct_session_id_the_key_names_no_session() -> None:
    calls = FakeCalls(Authorized(7, 60, 60_000, "USD"))
    await ask(calls, client(profile="standard"), PacketCode.ACCESS_REQUEST, CALL)
    ((_verb, (key, _party, _policy)),) = calls.events
    assert (key.nas, key.session_id, key.all_links()) == ("gw", "", ())


@pytest.mark.parametrize(
    ("reason", "code", "message"),
    [
        (Reason.ZERO_BALANCE, 4, "Zero balance"),
        (Reason.TOO_MANY_CALLS, 3, "Too many concurrent calls"),
        (Reason.DESTINATION_NOT_RATED, 9, "Destination not allowed"),
    ],
)
async def test_a_refusal_is_an_access_reject_with_its_code(
    reason: Reason, code: int, message: str
) -> None:
    reply = await ask(FakeCalls(Refusal(reason)), client(), PacketCode.ACCESS_REQUEST, CALL)
    assert reply is not None and reply.code == PacketCode.ACCESS_REJECT
    assert reply.get("h323-return-code") == f"h323-return-code={code}"
    assert reply.get("Reply-Message") == message


@pytest.mark.parametrize(
    "outcome",
    [Refusal(Reason.BACKEND_UNAVAILABLE), BackendUnavailable("redis", "connection refused")],
)
async def test_no_reply_when_a_backend_is_down(outcome: Any) -> None:
    assert await ask(FakeCalls(outcome), client(), PacketCode.ACCESS_REQUEST, CALL) is None


async def test_message_authenticator_is_required_unless_the_switch_cannot() -> None:
    calls = FakeCalls(LoginAccepted(7))
    unsigned = await ask(
        calls, client(), PacketCode.ACCESS_REQUEST, CALL, add_message_authenticator=False
    )
    assert unsigned is None and calls.events == []
    lenient = client(require_message_authenticator=False)
    reply = await ask(
        calls, lenient, PacketCode.ACCESS_REQUEST, CALL, add_message_authenticator=False
    )
    assert reply is not None and reply.code == PacketCode.ACCESS_ACCEPT


def acct(status: int, *more: tuple[str, Any]) -> list[tuple[str, Any]]:
    return [*CALL, ("Acct-Session-Id", "S1"), ("Acct-Status-Type", status), *more]


async def test_start_interim_and_stop_become_call_events() -> None:
    calls = FakeCalls(Credit(600, 60))
    sw = client(coa_port=3799)
    for attrs in (
        acct(1, ("Event-Timestamp", 1_800_000_000)),
        acct(3, ("Acct-Session-Time", 55)),
    ):
        reply = await ask(calls, sw, PacketCode.ACCOUNTING_REQUEST, attrs)
        assert reply is not None and reply.code == PacketCode.ACCOUNTING_RESPONSE
    calls.outcome = Ended(Settled((120_000,), "stream", "1-0"))
    await ask(calls, sw, PacketCode.ACCOUNTING_REQUEST, acct(2, ("Acct-Session-Time", 61)))
    (start, (key, at, reach)), (interim, interim_args), (stop, (_k, duration, end)) = calls.events
    assert (start, key.session_id, at) == ("answered", "S1", 1_800_000_000)
    assert reach.startswith('["gw","192.0.2.10"')  # how the keeper reaches the switch later
    assert interim == "interim" and interim_args[2] == 55  # the reported elapsed seconds
    assert (stop, duration) == ("ended", 61)
    assert end.connect_at is not None and end.disconnect_at - end.connect_at == 61


async def test_a_failed_call_ends_at_zero_and_a_stop_without_time_asks_the_answer() -> None:
    calls = FakeCalls(Ended(None, reason="unknown caller"))
    await ask(calls, client(), PacketCode.ACCOUNTING_REQUEST, acct(15))
    await ask(calls, client(), PacketCode.ACCOUNTING_REQUEST, acct(2))
    (_v1, (_k1, failed, _e1)), (_v2, (_k2, timeless, _e2)) = calls.events
    assert (failed, timeless) == (0, None)


async def test_accounting_on_restarts_the_switch_and_bad_signatures_are_dropped() -> None:
    calls = FakeCalls()
    on = [("Acct-Status-Type", 7), ("NAS-IP-Address", "192.0.2.10")]
    reply = await ask(calls, client(), PacketCode.ACCOUNTING_REQUEST, on)
    assert reply is not None and calls.events == [("nas_restarted", ("gw",))]
    data = bytearray(encode_request(PacketCode.ACCOUNTING_REQUEST, 1, on, b"wrong-secret"))
    assert await RadiusProcess(calls).handle(bytes(data), client(), ADDR) is None  # type: ignore[arg-type]
    assert len(calls.events) == 1


@pytest.mark.parametrize(
    ("port", "answer"),
    [("auth", PacketCode.ACCESS_ACCEPT), ("acct", PacketCode.ACCOUNTING_RESPONSE)],
)
async def test_status_server_is_answered_per_port_and_touches_no_call(
    port: str, answer: PacketCode
) -> None:
    calls = FakeCalls()
    data = encode_request(
        PacketCode.STATUS_SERVER, 3, [], SECRET.encode(), add_message_authenticator=True
    )
    reply = await RadiusProcess(calls).handle(data, client(), ADDR, port)  # type: ignore[arg-type]
    assert reply is not None
    assert decode_reply(reply).code == answer
    assert calls.events == []
