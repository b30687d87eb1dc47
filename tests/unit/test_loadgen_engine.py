"""The load generator's loop against a scripted RADIUS server on loopback: whole
calls, retransmission of the identical datagram, give-ups, refusals, and a call
moved to another identifier when its predicted one is busy."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from gateway.loadgen.engine import (
    ACKED,
    AUTH_FAILED,
    AUTH_HOLD,
    AUTH_RELEASE,
    GRANTED,
    REFUSED,
    UNACKED,
    Call,
    Engine,
    EngineOptions,
    RunResult,
    Target,
    prepare,
)
from gateway.loadgen.packets import RequestBuilder
from gateway.loadgen.plan import Caller, Population, plan_calls
from gateway.loadgen.stats import AUTH, INTERIM, START, STOP
from gateway.radius.auth import verify_accounting_request, verify_message_authenticator
from gateway.radius.codec import Packet, PacketCode, decode_request, encode_reply

SECRET = b"engine-secret"
# What the server does with a request: answer it, drop it, or refuse it (auth only).
Policy = Callable[[Packet, bool], str]


def answer_all(packet: Packet, first_copy: bool) -> str:
    return "answer"


@dataclass
class Server:
    policy: Policy
    socks: list[socket.socket] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    forged: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def ports(self) -> tuple[int, int]:
        return self.socks[0].getsockname()[1], self.socks[1].getsockname()[1]

    def serve(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select(self.socks, [], [], 0.02)
            for sock in ready:
                data, addr = sock.recvfrom(4096)
                reply = self.reply(data)
                if reply is not None:
                    sock.sendto(reply, addr)

    def reply(self, data: bytes) -> bytes | None:
        packet = decode_request(data)
        if packet.code == PacketCode.ACCESS_REQUEST:
            authentic = verify_message_authenticator(packet, SECRET) is True
        else:
            authentic = verify_accounting_request(packet, SECRET)
        if not authentic:
            self.forged += 1
            return None
        first_copy = data not in self.seen
        self.seen.add(data)
        action = self.policy(packet, first_copy)
        if action == "drop":
            return None
        if action == "refuse":
            message = [("Reply-Message", "Destination not allowed")]
            return encode_reply(packet, PacketCode.ACCESS_REJECT, message, SECRET)
        if packet.code == PacketCode.ACCESS_REQUEST:
            return encode_reply(packet, PacketCode.ACCESS_ACCEPT, [], SECRET)
        return encode_reply(packet, PacketCode.ACCOUNTING_RESPONSE, [], SECRET)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(answer_all)
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        srv.socks.append(sock)
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    thread.join(5)
    for sock in srv.socks:
        sock.close()


POPULATION = Population(
    tuple(Caller(i, f"ext{i}", f"pw{i}", (f"4479{i:04d}",), ("4930",)) for i in range(1, 6)),
    ("99912",),
    4,
    {},
    {},
)


def _calls(count: int, *, interims: int = 0, sockets: int = 2, refuse: float = 0.0) -> list[Call]:
    specs = plan_calls(
        POPULATION, count, run_id="t", durations=(0, 60), refuse_share=refuse, seed=5
    )
    return prepare(specs, RequestBuilder(SECRET), sockets, interims)


def _engine(server: Server, calls: list[Call], sockets: int = 2, **options: float) -> Engine:
    auth_port, acct_port = server.ports()
    defaults: dict[str, float] = {"rate": 500, "timeout_s": 0.05, "retries": 2, "hold_s": 0.005}
    defaults.update(options)
    settings = EngineOptions(
        rate=defaults["rate"],
        timeout_s=defaults["timeout_s"],
        retries=int(defaults["retries"]),
        hold_s=defaults["hold_s"],
        interims=max(0, len(calls[0].packets) - 3),
        sockets=sockets,
    )
    return Engine(calls, Target("127.0.0.1", auth_port, acct_port), settings, SECRET)


def _run(engine: Engine) -> RunResult:
    try:
        return engine.run()
    finally:
        engine.close()


def test_whole_calls_with_interims(server: Server) -> None:
    result = _run(_engine(server, _calls(30, interims=2)))
    c = result.counters
    assert (c.started, c.finished, c.accepted, c.stops_acked) == (30, 30, 30, 30)
    assert c.sent == [30, 30, 60, 30] and c.replies == 150
    assert [len(result.latencies[k]) for k in (AUTH, START, INTERIM, STOP)] == [30, 30, 60, 30]
    assert sum(c.retransmits) == 0 and sum(c.timeouts) == 0 and c.stale_replies == 0
    assert {call.outcome for call in result.calls} == {ACKED}
    assert server.forged == 0
    assert result.cpu_s > 0 and result.wall_s >= 29 / 500


def test_a_lost_request_is_retransmitted_identically(server: Server) -> None:
    # The server ignores the first copy of every datagram; only an identical
    # retransmission (same identifier, same authenticator) is answered.
    server.policy = lambda packet, first: "drop" if first else "answer"
    result = _run(_engine(server, _calls(10, interims=1)))
    c = result.counters
    assert c.retransmits == c.sent == [10, 10, 10, 10]
    assert sum(c.timeouts) == 0 and c.stops_acked == 10
    # Latency counts from the first copy, as the switch sees it.
    assert result.latencies[AUTH].summary().p50_ms >= 50


def test_unanswered_requests_are_given_up_after_the_retries(server: Server) -> None:
    def policy(packet: Packet, first: bool) -> str:
        if packet.get("User-Name") == "ext1":
            return "drop"  # its authorizations go unanswered: those calls never start
        if packet.value_name("Acct-Status-Type") in ("Start", "Stop"):
            return "drop"  # the others carry on without their Start, lose their Stop
        return "answer"

    server.policy = policy
    result = _run(_engine(server, _calls(10), retries=1))
    c = result.counters
    assert c.auth_failed == 2 and c.timeouts == [2, 8, 0, 8]
    assert c.retransmits == [2, 8, 0, 8] and c.stops_unacked == 8
    outcomes = [call.outcome for call in result.calls]
    assert outcomes.count(AUTH_FAILED) == 2 and outcomes.count(UNACKED) == 8


def test_refusals_are_counted_by_reason(server: Server) -> None:
    def policy(packet: Packet, first: bool) -> str:
        called = packet.get("Called-Station-Id")
        return "refuse" if isinstance(called, str) and called.startswith("999") else "answer"

    server.policy = policy
    result = _run(_engine(server, _calls(20, refuse=0.25)))
    c = result.counters
    # Half the refused calls dial an unrated number, half come from unknown callers.
    assert c.refused == 3 and c.refused_unexpected == 0
    assert c.accepted_unexpected == 2  # this server knows no caller it would refuse
    assert c.refusals == {"Destination not allowed": 3}
    assert sum(call.outcome == REFUSED for call in result.calls) == 3
    assert c.stops_acked == 17


def test_a_busy_identifier_moves_the_request_to_a_free_one(server: Server) -> None:
    calls = _calls(3, sockets=1)
    engine = _engine(server, calls, sockets=1)
    blocker = _calls(1, sockets=1)[0]
    for pool in (0, 1):  # the identifiers every datagram of call 1 was built for
        engine.pending[pool][0][calls[1].slot_id] = blocker
    result = _run(engine)
    assert result.counters.stops_acked == 3 and server.forged == 0
    assert calls[1].ident != calls[1].slot_id  # re-signed for another identifier
    assert calls[1].packet[1] == calls[1].ident


@pytest.mark.parametrize("mode", [AUTH_HOLD, AUTH_RELEASE])
def test_authorization_only_sends_the_access_requests_alone(server: Server, mode: str) -> None:
    specs = plan_calls(POPULATION, 40, run_id="t", durations=(0, 60), refuse_share=0, seed=5)
    calls = prepare(specs, RequestBuilder(SECRET), 2, 0, mode)
    assert all(len(call.packets) == 1 for call in calls)
    seen: list[Packet] = []

    def policy(packet: Packet, first: bool) -> str:
        seen.append(packet)
        return "answer"

    server.policy = policy
    result = _run(_engine(server, calls))
    c = result.counters
    assert (c.started, c.finished, c.accepted) == (40, 40, 40)
    assert c.sent == [40, 0, 0, 0] and c.replies == 40 and c.stops_acked == 0
    assert {call.outcome for call in result.calls} == {GRANTED}
    assert len(seen) == 40 and server.forged == 0
    sessions = {"Acct-Session-Id" in packet for packet in seen}
    assert sessions == {mode == AUTH_HOLD}


def test_max_in_flight_bounds_the_requests_waiting(server: Server) -> None:
    peak = [0]
    specs = plan_calls(POPULATION, 60, run_id="t", durations=(0, 60), refuse_share=0, seed=5)
    calls = prepare(specs, RequestBuilder(SECRET), 2, 0, AUTH_HOLD)
    engine = _engine(server, calls)
    engine.options = EngineOptions(rate=100_000, timeout_s=0.5, sockets=2, max_in_flight=3)
    send = engine._send

    def counting(call: Call, now: float) -> bool:
        sent = send(call, now)
        peak[0] = max(peak[0], engine.in_flight)
        return sent

    engine._send = counting  # type: ignore[method-assign]
    result = _run(engine)
    assert result.counters.finished == result.counters.accepted == 60
    assert peak[0] == 3
