"""The overdraft proof through the whole RADIUS front: 1,000 Access-Requests at once
against `gateway run --workers 2`, for a customer whose balance covers exactly K
holds, are answered with exactly K Access-Accepts, in either grant mode."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.radius.codec import PacketCode, decode_reply, encode_request
from tests import factories
from tests.e2e.test_loadgen import SECRET, GatewayProcess, free_port, write_config

K = 7
REQUESTS = 1000


def _blast(port: int, extension: str, password: str) -> dict[int, int]:
    """Send REQUESTS Access-Requests (distinct sessions) from 10 sockets as fast as
    they go, then collect replies; return {reply code: count}."""
    socks = []
    for _ in range(10):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    try:
        for n in range(REQUESTS):
            datagram = encode_request(
                PacketCode.ACCESS_REQUEST,
                n % 256,
                [
                    ("User-Name", extension),
                    ("User-Password", password),
                    ("Called-Station-Id", "4930123456"),
                    ("Acct-Session-Id", f"burst-{n}"),
                ],
                SECRET.encode(),
            )
            socks[n % len(socks)].sendto(datagram, ("127.0.0.1", port))
        codes: dict[int, int] = {}
        got, deadline = 0, time.monotonic() + 20
        while got < REQUESTS and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], 0.5)
            for sock in ready:
                while True:
                    try:
                        data = sock.recv(4096)
                    except BlockingIOError:
                        break
                    code = decode_reply(data).code
                    codes[code] = codes.get(code, 0) + 1
                    got += 1
        return codes
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("grant", ["slice", "whole"])
async def test_a_thousand_at_once_admit_exactly_k_across_two_workers(
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    db_pool: asyncpg.Pool,
    grant: str,
) -> None:
    # Slice mode: first slices of 60 s (0.06 each). Whole mode: calls of at most 60 s.
    balance_section = (
        '[balance]\ngrant = "slice"\nslice_min_s = 60'
        if grant == "slice"
        else '[balance]\ngrant = "whole"\nmax_call_s = 60'
    )
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
        client_extra=f"coa_port = {free_port()}",
        sections=balance_section,
    )
    async with db_pool.acquire() as conn:
        retail = await factories.rate_group(conn, [factories.rate(60_000, prefix="49")])
        wholesale = await factories.rate_group(conn, [factories.rate(30_000, prefix="49")])
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=10**9, rate_group_id=wholesale
        )
        customer = await factories.account(
            conn, parent=agent, balance=K * 60_000, rate_group_id=retail
        )
        extension = f"burst{customer}"
        await conn.execute(
            "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, 'pw-b')",
            customer,
            extension,
        )
    port = int(config.read_text().split("auth_port = ")[1].split()[0])
    gw = GatewayProcess(config, workers=2)
    try:
        gw.start()
        codes = _blast(port, extension, "pw-b")
    finally:
        gw.stop()
    assert codes.get(PacketCode.ACCESS_ACCEPT) == K, codes
    assert codes.get(PacketCode.ACCESS_REJECT) == REQUESTS - K, codes
