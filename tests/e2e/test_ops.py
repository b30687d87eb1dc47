"""Operations: /metrics moves with a scripted call flow; /readyz follows the backends
(Redis away: not ready; PostgreSQL away: ready, degraded)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.balance.keys import Keys
from gateway.radius.codec import PacketCode, decode_reply, encode_request
from tests.e2e.conftest import SECRET, Gateway, gateway_config, running
from tests.integration.tcp_proxy import TcpProxy


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _ask(port: int, code: PacketCode, attrs: list[tuple[str, object]]) -> PacketCode:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not done.done():
                done.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(encode_request(code, 9, attrs, SECRET.encode()))  # type: ignore[arg-type]
        return decode_reply(await asyncio.wait_for(done, 5)).code
    finally:
        transport.close()


async def test_metrics_count_a_call_flow(gateway: Gateway) -> None:
    c = await gateway.customer(balance=1_000_000)
    ops = gateway.path.ops
    assert ops is not None
    status, before = await http_get(ops.port, "/metrics")
    assert status == 200
    base = [
        ("User-Name", c.extension),
        ("Calling-Station-Id", c.caller_id),
        ("Called-Station-Id", "4930123456"),
        ("Acct-Session-Id", f"m-{c.account_id}"),
    ]
    assert (
        await _ask(
            gateway.auth_port, PacketCode.ACCESS_REQUEST, [*base, ("User-Password", c.password)]
        )
        == PacketCode.ACCESS_ACCEPT
    )
    assert (
        await _ask(gateway.auth_port, PacketCode.ACCESS_REQUEST, [*base, ("User-Password", "nope")])
        == PacketCode.ACCESS_REJECT
    )
    for status_type, seconds in ((1, 0), (2, 61)):
        assert (
            await _ask(
                gateway.acct_port,
                PacketCode.ACCOUNTING_REQUEST,
                [*base, ("Acct-Status-Type", status_type), ("Acct-Session-Time", seconds)],
            )
            == PacketCode.ACCOUNTING_RESPONSE
        )
    await gateway.drain()
    await asyncio.sleep(0.5)  # a gauge sampling round
    _, after = await http_get(ops.port, "/metrics")

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert (
        moved("gateway_radius_requests_total", type="access", result="accept", client="cisco-gw")
        == 1
    )
    assert (
        moved("gateway_radius_requests_total", type="access", result="reject", client="cisco-gw")
        == 1
    )
    assert (
        moved("gateway_radius_requests_total", type="accounting", result="start", client="cisco-gw")
        == 1
    )
    assert (
        moved("gateway_radius_requests_total", type="accounting", result="stop", client="cisco-gw")
        == 1
    )
    assert moved("gateway_authz_decisions_total", result="accept") == 1
    assert moved("gateway_authz_decisions_total", result="BAD_PASSWORD") == 1
    assert moved("gateway_radius_request_seconds_count", type="auth") == 2
    assert moved("gateway_radius_request_seconds_count", type="acct") == 2
    # 61 s at 0.06/min in whole minutes: the customer billed 0.12 in the agent's tree.
    assert moved("gateway_spend_micros_total", agent=str(c.agent_id)) == 120_000
    assert sample(after, "gateway_settlement_backlog") == 0
    assert sample(after, "gateway_calls_active", agent=str(c.agent_id)) == 0
    assert "process_cpu_seconds_total" in after
    assert (await http_get(ops.port, "/healthz"))[0] == 200
    assert (await http_get(ops.port, "/nope"))[0] == 404


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(
        (
            parts.scheme,
            f"{netloc[0]}@{host}" if len(netloc) == 2 else host,
            parts.path,
            parts.query,
            parts.fragment,
        )
    )


async def _wait_ready(port: int, want: int) -> str:
    body = ""
    for _ in range(100):
        status, body = await http_get(port, "/readyz")
        if status == want:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {want}: {body}")


async def _wait_ready_with(port: int, text: str) -> str:
    body = ""
    for _ in range(100):
        status, body = await http_get(port, "/readyz")
        if status == 200 and text in body:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered 200 with {text!r}: {body}")


async def test_readyz_follows_redis_and_postgresql(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> None:
    pg, rd = urlsplit(database_url), urlsplit(redis_url)
    pg_proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    redis_proxy = TcpProxy(rd.hostname or "127.0.0.1", rd.port or 6379)
    await pg_proxy.start()
    await redis_proxy.start()
    config = gateway_config(
        _via(database_url, pg_proxy.port), _via(redis_url, redis_proxy.port), keys, str(tmp_path)
    )
    try:
        async with running(config, db_pool) as gw:
            assert gw.path.ops is not None
            port = gw.path.ops.port
            assert await _wait_ready(port, 200) == "ready\n"
            await redis_proxy.cut()
            assert "redis:" in await _wait_ready(port, 503)
            await redis_proxy.restore()
            await _wait_ready(port, 200)
            # PostgreSQL away: degraded, still ready (settlements spool in Redis).
            await pg_proxy.cut()
            body = await _wait_ready_with(port, "degraded")
            assert body.startswith("ready (degraded)\npostgresql: unreachable"), body
            assert "0 settlements spooled in Redis" in body
            await pg_proxy.restore()
            assert await _wait_ready_with(port, "ready\n") == "ready\n"
    finally:
        await pg_proxy.close()
        await redis_proxy.close()
