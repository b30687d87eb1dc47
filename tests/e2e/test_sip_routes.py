"""Routes end to end: the table's constraints, NOTIFY per rate group, and a change
reaching the SIP front's answers within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.db.carriers import CHANNEL, delete_route, load_tables, set_route
from gateway.rating.carriers import Gateway
from tests import factories
from tests.e2e.conftest import Customer, gateway_config, running
from tests.e2e.conftest import Gateway as RunningGateway
from tests.sip.harness import header, message, rate_group_of, status, udp_exchange, with_sip

DEFAULT = "198.51.100.7:5090;transport=tcp"
NUMBER = "004930123456"


@pytest.fixture
async def gw(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[RunningGateway]:
    base = gateway_config(database_url, redis_url, keys, str(tmp_path / "state"))
    async with running(with_sip(base, default_route=(DEFAULT,)), db_pool) as gateway:
        yield gateway


async def _group(conn: asyncpg.Connection) -> int:
    return await factories.rate_group(conn, [factories.rate(60_000, prefix="49")])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("host", "bad host"),
        ("host", "-gw.example"),
        ("host", ""),
        ("port", 0),
        ("port", 70000),
        ("transport", "sctp"),
        ("priority", -1),
        ("weight", -1),
    ],
)
async def test_gateway_constraints(db_pool: asyncpg.Pool, column: str, value: object) -> None:
    async with db_pool.acquire() as conn:
        group = await _group(conn)
        route_id = await set_route(conn, group, "49", [])
        row = {"host": "gw.example", "port": 5060, "transport": "udp", "priority": 0, "weight": 1}
        row[column] = value
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO route_gateways (route_id, host, port, transport, priority, weight) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                route_id,
                *row.values(),
            )


async def test_route_constraints_and_ipv6_hosts(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        group = await _group(conn)
        for prefix in ("4a", "1" * 33, " 49"):
            with pytest.raises(asyncpg.CheckViolationError):
                await set_route(conn, group, prefix, [])
        await set_route(conn, group, "", [Gateway("2001:db8::7", 5070)])  # catch-all, IPv6
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO routes (rate_group_id, prefix) VALUES ($1, '')", group)
        with pytest.raises(asyncpg.UniqueViolationError):
            await set_route(conn, group, "44", [Gateway("a.example"), Gateway("a.example")])
        tables = await load_tables(conn, [group])
        assert tables[group].lookup("33") == (Gateway("2001:db8::7", 5070),)
        assert await delete_route(conn, group, "") and not await delete_route(conn, group, "")


async def test_changes_notify_the_rate_groups_they_touch(
    db_pool: asyncpg.Pool, database_url: str
) -> None:
    payloads: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(CHANNEL, lambda *args: payloads.put_nowait(str(args[3])))
    try:
        async with db_pool.acquire() as conn:
            group = await _group(conn)
            route_id = await set_route(conn, group, "49", [Gateway("a.example")])
            got = {await asyncio.wait_for(payloads.get(), 2)}
            while not payloads.empty():
                got.add(payloads.get_nowait())
            assert got == {str(group)}
            await conn.execute("UPDATE route_gateways SET weight = 5 WHERE route_id = $1", route_id)
            assert await asyncio.wait_for(payloads.get(), 2) == str(group)
            await conn.execute("DELETE FROM rate_groups WHERE id = $1", group)
            assert await asyncio.wait_for(payloads.get(), 2) == str(group)
    finally:
        await listener.close()


async def _answer(gw: RunningGateway, c: Customer, call_id: str) -> bytes:
    assert gw.path.sip is not None
    invite = message(
        "INVITE", caller=c.extension, number=NUMBER, call_id=call_id, branch=f"z9hG4bK-{call_id}"
    )
    (answer,) = await udp_exchange(gw.path.sip.port(), [invite], wanted=1)
    return answer


async def _until(gw: RunningGateway, c: Customer, contact: str | None, code: int) -> float:
    """Seconds until a new call is answered ``code`` with ``contact``."""
    started = time.monotonic()
    for attempt in range(60):
        answer = await _answer(gw, c, f"until-{c.account_id}-{time.monotonic_ns()}-{attempt}")
        if status(answer) == code and header(answer, "Contact") == contact:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    pytest.fail(f"no {code} with Contact {contact} within a few seconds: {answer.decode()}")


async def test_a_route_change_reaches_the_answers_within_a_second(gw: RunningGateway) -> None:
    c = await gw.customer(balance=10**12, agent_balance=10**12)  # every try holds money
    group = await rate_group_of(gw.pool, c.account_id)
    # No route yet: the configured default route.
    await _until(gw, c, "<sip:4930123456@198.51.100.7:5090;transport=tcp>;q=1.0", 302)
    async with gw.pool.acquire() as conn:
        await set_route(conn, group, "49", [Gateway("192.0.2.20", 5060)])
    elapsed = await _until(gw, c, "<sip:4930123456@192.0.2.20:5060>;q=1.0", 302)
    assert elapsed < 1.0
    async with gw.pool.acquire() as conn:
        await set_route(conn, group, "4930", [])  # block the more specific prefix
    elapsed = await _until(gw, c, None, 404)
    assert elapsed < 1.0
    async with gw.pool.acquire() as conn:
        await delete_route(conn, group, "4930")
        await set_route(
            conn,
            group,
            "49",
            [Gateway("192.0.2.21", 5062, priority=1), Gateway("192.0.2.20", 5060, "tcp")],
        )
    elapsed = await _until(
        gw,
        c,
        "<sip:4930123456@192.0.2.20:5060;transport=tcp>;q=1.0, "
        "<sip:4930123456@192.0.2.21:5062>;q=0.9",
        302,
    )
    assert elapsed < 1.0
