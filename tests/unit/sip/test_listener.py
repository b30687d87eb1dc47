"""The listener without sockets: transactions, retransmissions, CANCEL, ACK, overload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from gateway.calls.types import Policy
from gateway.sip import transactions
from gateway.sip.listener import Allowlist, SipListener
from gateway.sip.message import Answer
from gateway.sip.process import SipSettings
from gateway.sip.transactions import Transactions

PROXY = ("127.0.0.1", 5060)


def request(
    method: str = "INVITE",
    branch: str = "z9hG4bK-1",
    call_id: str = "call-1",
    cseq: int = 1,
    extra: str = "",
) -> bytes:
    return (
        f"{method} sip:4930123@gw SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n"
        "From: <sip:1001@pbx>;tag=f1\r\n"
        "To: <sip:4930123@gw>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class FakeProcess:
    def __init__(self, answer: Answer | None = None) -> None:
        self.settings = SipSettings(nas="nas", policy=Policy(), retry_after_s=9)
        self.answer = answer or Answer(302, "Moved Temporarily", (("Contact", "<sip:1@gw>"),))
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def invite(self, _request: object, _source_ip: str) -> Answer:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def codes(self) -> list[str]:
        return [d.split(b" ", 2)[1].decode() for d, _ in self.sent]


def setup(max_in_flight: int = 10) -> tuple[SipListener, FakeProcess, Wire]:
    process = FakeProcess()
    listener = SipListener(
        process,  # type: ignore[arg-type]
        Transactions(32.0),
        Allowlist(("127.0.0.0/8",)),
        max_in_flight,
    )
    return listener, process, Wire()


async def settle(listener: SipListener) -> None:
    while listener.tasks:
        await asyncio.gather(*listener.tasks)


def counted(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_sip_requests_total", {"method": method, "code": code}
    )
    return value or 0.0


async def test_retransmitted_invite_gets_the_same_answer_without_a_second_authorization() -> None:
    listener, process, wire = setup()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await settle(listener)
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await settle(listener)
    assert process.calls == 1
    assert wire.codes() == ["302", "302", "302"]
    assert len({d for d, _ in wire.sent}) == 1
    # A new transaction (new branch and CSeq) is authorized again.
    listener.received(request(branch="z9hG4bK-2", cseq=2), PROXY, wire.send_to, reliable=True)
    await settle(listener)
    assert process.calls == 2


async def test_retransmission_while_pending_gets_100_trying() -> None:
    listener, process, wire = setup()
    process.gate = asyncio.Event()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await asyncio.sleep(0)
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["100"]
    assert b"To: <sip:4930123@gw>\r\n" in wire.sent[0][0]  # no tag on 100
    process.gate.set()
    await settle(listener)
    assert wire.codes() == ["100", "302"] and process.calls == 1


async def test_cancel_of_a_pending_invite_turns_its_answer_into_487() -> None:
    listener, process, wire = setup()
    process.gate = asyncio.Event()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await asyncio.sleep(0)
    listener.received(request("CANCEL"), PROXY, wire.send_to, reliable=True)
    process.gate.set()
    await settle(listener)
    assert wire.codes() == ["200", "487"]
    cancel_ok, terminated = (d.decode() for d, _ in wire.sent)
    assert "CSeq: 1 CANCEL" in cancel_ok and "CSeq: 1 INVITE" in terminated
    tag = [line for line in cancel_ok.split("\r\n") if line.startswith("To:")]
    assert tag and tag[0] in terminated  # same To tag on both (RFC 3261 §9.2)


async def test_cancel_after_the_answer_changes_nothing_and_unknown_cancel_is_481() -> None:
    listener, _process, wire = setup()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await settle(listener)
    listener.received(request("CANCEL"), PROXY, wire.send_to, reliable=True)
    listener.received(request("CANCEL", branch="z9hG4bK-x"), PROXY, wire.send_to, reliable=True)
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["302", "200", "481", "302"]


async def test_udp_final_answer_is_resent_until_the_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "T1_S", 0.01)
    monkeypatch.setattr(transactions, "T2_S", 0.02)
    listener, process, wire = setup()
    listener.received(request(), PROXY, wire.send_to, reliable=False)
    await settle(listener)
    await asyncio.sleep(0.2)
    resent = len(wire.sent)
    assert resent >= 4 and set(wire.codes()) == {"302"}
    listener.received(request("ACK"), PROXY, wire.send_to, reliable=False)
    await asyncio.sleep(0.1)
    assert len(wire.sent) == resent  # the ACK stopped timer G, and got no answer
    listener.received(request(), PROXY, wire.send_to, reliable=False)
    assert len(wire.sent) == resent  # confirmed: a late copy of the INVITE is absorbed
    assert process.calls == 1
    listener.transactions.close()


async def test_over_tcp_the_answer_is_sent_once() -> None:
    listener, _process, wire = setup()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    await settle(listener)
    await asyncio.sleep(0.6)
    assert wire.codes() == ["302"]


async def test_overload_and_stopping_answer_503_with_retry_after() -> None:
    listener, process, wire = setup(max_in_flight=1)
    process.gate = asyncio.Event()
    listener.received(request(), PROXY, wire.send_to, reliable=True)
    listener.received(request(branch="z9hG4bK-2", call_id="c2"), PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["503"]
    assert b"Retry-After: 9\r\n" in wire.sent[0][0] and b"X-Reason: OVERLOAD" in wire.sent[0][0]
    process.gate.set()
    await settle(listener)
    listener.accepting = False
    listener.received(request(branch="z9hG4bK-3", call_id="c3"), PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["503", "302", "503"]


@pytest.mark.parametrize(
    ("method", "code"), [("OPTIONS", "200"), ("BYE", "405"), ("REGISTER", "405"), ("FOO", "501")]
)
async def test_other_methods(method: str, code: str) -> None:
    listener, process, wire = setup()
    listener.received(request(method), PROXY, wire.send_to, reliable=True)
    assert wire.codes() == [code] and process.calls == 0
    assert b"Allow: INVITE, ACK, CANCEL, OPTIONS\r\n" in wire.sent[0][0]


async def test_malformed_messages_are_answered_400_or_dropped_and_counted() -> None:
    listener, _process, wire = setup()
    before = counted("unknown", "dropped_start_line")
    listener.received(b"HELLO\r\n\r\n", PROXY, wire.send_to, reliable=True)
    assert wire.sent == [] and counted("unknown", "dropped_start_line") == before + 1
    bad_cseq = request().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    listener.received(bad_cseq, PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["400"]
    listener.received(b"SIP/2.0 200 OK\r\n\r\n", PROXY, wire.send_to, reliable=True)
    listener.received(b"\r\n\r\n", PROXY, wire.send_to, reliable=True)
    assert wire.codes() == ["400"]


async def test_strangers_are_dropped() -> None:
    listener, process, wire = setup()
    before = counted("unknown", "dropped_stranger")
    listener.received(request(), ("192.0.2.1", 5060), wire.send_to, reliable=True)
    assert wire.sent == [] and process.calls == 0
    assert counted("unknown", "dropped_stranger") == before + 1


async def test_udp_answers_go_to_the_via_port_or_the_source_port_with_rport() -> None:
    listener, _process, wire = setup()
    send: Callable[[bytes, tuple[str, int]], None] = wire.send_to
    listener.received(request("OPTIONS"), ("127.0.0.9", 40000), send, reliable=False)
    rport = request("OPTIONS", branch="z9hG4bK-r").replace(b";branch", b";rport;branch")
    listener.received(rport, ("127.0.0.9", 40000), send, reliable=False)
    assert [addr for _, addr in wire.sent] == [("127.0.0.9", 5060), ("127.0.0.9", 40000)]
    assert b";received=127.0.0.9;rport=40000" in wire.sent[1][0] or (
        b";rport=40000" in wire.sent[1][0] and b"received=127.0.0.9" in wire.sent[1][0]
    )
