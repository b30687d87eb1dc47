"""The SIP front end to end: SIPp scenarios (tests/sip/*.xml) against an in-process gateway,
and a SIP authorization settled by the RADIUS accounting of the same call."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from gateway.balance.keys import Keys
from gateway.calls.routecache import RouteCache
from gateway.radius.codec import PacketCode, decode_reply, encode_request
from gateway.sip.server import SipFront
from tests.e2e.conftest import SECRET, Customer, Gateway, gateway_config, running
from tests.sip.harness import (
    NAS,
    header,
    message,
    rate_group_of,
    route,
    sipp,
    status,
    udp_exchange,
    with_sip,
)

NUMBER = "004930123456"


@pytest.fixture
async def gw(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    config = with_sip(gateway_config(database_url, redis_url, keys, str(tmp_path / "state")))
    async with running(config, db_pool) as gateway:
        yield gateway


def front(gw: Gateway) -> SipFront:
    assert gw.path.sip is not None
    return gw.path.sip


def routes(gw: Gateway) -> RouteCache:
    assert gw.path.routes is not None
    return gw.path.routes


async def routed_customer(gw: Gateway, balance: int = 10_000_000) -> Customer:
    """A customer rated for 49 (see conftest) with 49 routed to the two test carriers."""
    c = await gw.customer(balance=balance)
    await route(routes(gw), gw.pool, await rate_group_of(gw.pool, c.account_id), "49")
    return c


async def held(redis: aioredis.Redis, gw: Gateway, c: Customer) -> tuple[int, int]:
    """What the customer's level holds now, and its calls up."""
    values = await redis.hmget(gw.config_keys.account(c.agent_id, c.account_id), ["held", "calls"])
    return int(values[0] or 0), int(values[1] or 0)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_invite_gets_302_with_route_and_credit(
    gw: Gateway, tmp_path: Path, transport: str, redis_client: aioredis.Redis
) -> None:
    c = await routed_customer(gw)
    run = await sipp(
        "uac_302.xml",
        front(gw).port("udp" if transport == "u1" else "tcp"),
        tmp_path / "sipp",
        caller=c.extension,
        number=NUMBER,
        transport=transport,
    )
    assert run.returncode == 0 and run.successful == 1, run.output
    # Money for the granted 7200 s is held on the customer's level, one call up.
    assert await held(redis_client, gw, c) == (7_200_000, 1)
    if transport == "u1":
        await asyncio.sleep(0.05)
        entries = list(front(gw).transactions)
        assert entries and all(t.acked for t in entries)  # SIPp's ACK matched the INVITE


async def test_caller_who_cannot_pay_gets_402(gw: Gateway, tmp_path: Path) -> None:
    c = await routed_customer(gw, balance=0)
    run = await sipp("uac_402.xml", front(gw).port(), tmp_path, caller=c.extension, number=NUMBER)
    assert run.returncode == 0 and run.successful == 1, run.output


async def test_unknown_caller_gets_403(gw: Gateway, tmp_path: Path) -> None:
    await routed_customer(gw)
    run = await sipp("uac_403.xml", front(gw).port(), tmp_path, caller="nobody", number=NUMBER)
    assert run.returncode == 0 and run.successful == 1, run.output


async def test_wrong_digest_credentials_get_403(gw: Gateway, tmp_path: Path) -> None:
    c = await routed_customer(gw)  # its extension has the secret "pw-e2e"
    run = await sipp(
        "uac_403_digest.xml", front(gw).port(), tmp_path, caller=c.extension, number=NUMBER
    )
    assert run.returncode == 0 and run.successful == 1, run.output


@pytest.mark.parametrize("number", ["0033123456", "004989123456"])
async def test_destination_not_rated_or_not_routed_gets_404_and_holds_nothing(
    gw: Gateway, tmp_path: Path, number: str, redis_client: aioredis.Redis
) -> None:
    c = await gw.customer()  # rated for 49 (not 33)
    group = await rate_group_of(gw.pool, c.account_id)
    await route(routes(gw), gw.pool, group, "4930")  # 4989 is rated but has no route
    run = await sipp("uac_404.xml", front(gw).port(), tmp_path, caller=c.extension, number=number)
    assert run.returncode == 0 and run.successful == 1, run.output
    assert await held(redis_client, gw, c) == (0, 0)


async def test_retransmitted_invite_is_answered_the_same_without_a_new_authorization(
    gw: Gateway, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    c = await routed_customer(gw)
    invite = {"method": "INVITE"}
    accepted = sample("gateway_authz_decisions_total", {"result": "accept"})
    resent = sample("gateway_sip_requests_total", {**invite, "code": "resent"})
    trying = sample("gateway_sip_requests_total", {**invite, "code": "100"})
    run = await sipp(
        "uac_retransmit.xml", front(gw).port(), tmp_path, caller=c.extension, number=NUMBER
    )
    assert run.returncode == 0 and run.successful == 1, run.output
    assert sample("gateway_authz_decisions_total", {"result": "accept"}) == accepted + 1
    assert sample("gateway_sip_requests_total", {**invite, "code": "resent"}) == resent + 1
    assert sample("gateway_sip_requests_total", {**invite, "code": "100"}) == trying
    assert await held(redis_client, gw, c) == (7_200_000, 1)


async def test_retransmissions_get_identical_bytes_then_cancel_and_ack(gw: Gateway) -> None:
    c = await routed_customer(gw)
    invite = message(
        "INVITE", caller=c.extension, number=NUMBER, call_id="retx-1", branch="z9hG4bK-r1"
    )
    answers = await udp_exchange(front(gw).port(), [invite], wanted=1)
    answers += await udp_exchange(front(gw).port(), [invite, invite], wanted=2)
    assert [status(a) for a in answers] == [302, 302, 302]
    assert len(set(answers)) == 1
    assert (
        header(
            answers[0],
            "Via",
        )
        is not None
        and ";received=127.0.0.1;rport=" in answers[0].decode()
    )
    cancel = message(
        "CANCEL", caller=c.extension, number=NUMBER, call_id="retx-1", branch="z9hG4bK-r1"
    )
    (cancelled,) = await udp_exchange(front(gw).port(), [cancel], wanted=1)
    assert status(cancelled) == 200  # the INVITE was answered already: CANCEL changes nothing
    to = header(answers[0], "To")
    assert to is not None and header(cancelled, "To") == to
    tag = to.rsplit("tag=", 1)[1]
    ack = message(
        "ACK",
        caller=c.extension,
        number=NUMBER,
        call_id="retx-1",
        branch="z9hG4bK-r1",
        to_tag=tag,
    )
    assert await udp_exchange(front(gw).port(), [ack], wanted=1, timeout_s=0.5) == []


async def test_options_bye_and_garbage(gw: Gateway) -> None:
    port = front(gw).port()
    options = message("OPTIONS", caller="x", number="1", call_id="o-1", branch="z9hG4bK-o1")
    bye = message("BYE", caller="x", number="1", call_id="b-1", branch="z9hG4bK-b1")
    answers = await udp_exchange(port, [options, bye], wanted=2)
    assert sorted(status(a) for a in answers) == [200, 405]
    assert all(header(a, "Allow") == "INVITE, ACK, CANCEL, OPTIONS" for a in answers)
    dropped = sample(
        "gateway_sip_requests_total", {"method": "unknown", "code": "dropped_start_line"}
    )
    bad_cseq = options.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    answers = await udp_exchange(port, [b"not sip at all\r\n\r\n", bad_cseq], wanted=2, timeout_s=1)
    assert [status(a) for a in answers] == [400]
    assert (
        sample("gateway_sip_requests_total", {"method": "unknown", "code": "dropped_start_line"})
        == dropped + 1
    )
    assert await gw.path.readiness_checks()["sip"]() is None


def _accounting(port: int, attributes: list[tuple[str, str | int]], ident: int) -> bytes:
    datagram = encode_request(PacketCode.ACCOUNTING_REQUEST, ident, attributes, SECRET.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.3", 0))  # the address of the "kamailio" RADIUS client
        sock.sendto(datagram, ("127.0.0.1", port))
        return sock.recv(4096)


async def test_sip_hold_is_settled_by_radius_accounting_of_the_same_call(
    gw: Gateway, redis_client: aioredis.Redis
) -> None:
    c = await routed_customer(gw, balance=10_000_000)
    call_id = f"sip-acct-{c.account_id}@proxy.example"
    invite = message(
        "INVITE", caller=c.extension, number=NUMBER, call_id=call_id, branch="z9hG4bK-acct"
    )
    (answer,) = await udp_exchange(front(gw).port(), [invite], wanted=1)
    assert status(answer) == 302 and header(answer, "X-Credit-Time") == "7200"
    assert await held(redis_client, gw, c) == (7_200_000, 1)

    base: list[tuple[str, str | int]] = [
        ("User-Name", c.extension),
        ("Called-Station-Id", NUMBER),
        ("Acct-Session-Id", call_id),
    ]
    for ident, extra in enumerate(
        ([("Acct-Status-Type", 1)], [("Acct-Status-Type", 2), ("Acct-Session-Time", 125)])
    ):
        reply = await asyncio.to_thread(_accounting, gw.acct_port, base + extra, ident + 1)
        assert decode_reply(reply).code == PacketCode.ACCOUNTING_RESPONSE
    await gw.drain()

    rows = await gw.pool.fetch("SELECT * FROM cdrs WHERE session_id = $1", call_id)
    assert len(rows) == 1
    cdr = rows[0]
    assert (cdr["nas"], cdr["leg"], cdr["status"], cdr["duration_s"]) == (NAS, "", "answered", 125)
    assert cdr["called"] == "4930123456" and cdr["account_id"] == c.account_id
    assert list(cdr["cost_per_level_micros"]) == [180_000, 90_000]  # 3 min at 0.06 and 0.03
    balances = dict(
        await gw.pool.fetch(
            "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])",
            [c.account_id, c.agent_id],
        )
    )
    assert balances[c.account_id] == 10_000_000 - 180_000
    assert balances[c.agent_id] == 10**9 - 90_000
    assert await held(redis_client, gw, c) == (0, 0)  # the SIP hold was settled, not doubled


async def test_tcp_stream_with_pipelined_requests_and_keepalive(gw: Gateway) -> None:
    port = front(gw).port("tcp")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        first = message("OPTIONS", caller="x", number="1", call_id="t-1", branch="z9hG4bK-t1")
        second = message("BYE", caller="x", number="1", call_id="t-2", branch="z9hG4bK-t2")
        writer.write(b"\r\n\r\n" + first + second[:20])  # a ping, a request, half of another
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"  # the pong
        writer.write(second[20:])
        await writer.drain()
        answers = []
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            answers.append(head)
        assert sorted(status(a) for a in answers) == [200, 405]
        writer.write(b"INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n")  # no Content-Length: unframable
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""  # the connection is closed
    finally:
        writer.close()
