"""Inbound calls to a DID through RADIUS (radclient): the caller is unknown, the called
number is a customer's DID, so the call is the owner's, rated at each level's inbound
rate group (none: free)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from tests import factories
from tests.e2e.conftest import SECRET, Customer, Gateway, gateway_config, running
from tests.e2e.test_radius_radclient import radclient

STRANGER = "4930555000111"  # no customer's caller-ID


@pytest.fixture
async def gw(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    clients: list[dict[str, object]] = [
        {
            "name": "carrier-in",
            "address": "127.0.0.1",
            "secret": SECRET,
            "profile": "cisco",
            "identify": ["extension", "caller_id", "did"],
            "require_message_authenticator": False,
        }
    ]
    config = gateway_config(database_url, redis_url, keys, str(tmp_path), clients=clients)
    async with running(config, db_pool) as gateway:
        yield gateway


async def _did(gw: Gateway, c: Customer) -> str:
    number = f"4420{c.account_id:08d}"
    await gw.pool.execute(
        "INSERT INTO dids (number, account_id) VALUES ($1, $2)", number, c.account_id
    )
    directory = gw.path.directory
    assert directory is not None
    for _ in range(100):
        if directory.did(number) == c.account_id:
            return number
        await asyncio.sleep(0.02)
    pytest.fail("the directory did not pick up the DID within 2 s")


def _inbound(number: str, session: str, extra: str) -> str:
    return (
        f'Calling-Station-Id = "{STRANGER}", Called-Station-Id = "{number}", '
        f'Acct-Session-Id = "{session}", h323-call-origin = "h323-call-origin=answer", {extra}'
    )


async def _call(gw: Gateway, number: str, session: str, seconds: int) -> str:
    # radclient exits 1 on a reject: the reply is what counts.
    _, out = await radclient(gw.auth_port, "auth", _inbound(number, session, 'User-Name = ""'))
    if "Access-Accept" not in out:
        return out
    for status, extra in (("Start", ""), ("Stop", f", Acct-Session-Time = {seconds}")):
        code, acct = await radclient(
            gw.acct_port, "acct", _inbound(number, session, f"Acct-Status-Type = {status}{extra}")
        )
        assert code == 0 and "Accounting-Response" in acct, acct
    return out


async def test_an_inbound_call_to_a_did_is_the_owners_and_free_without_an_inbound_group(
    gw: Gateway,
) -> None:
    c = await gw.customer(balance=1_000_000)
    number = await _did(gw, c)
    session = f"did-free-{c.account_id}"
    out = await _call(gw, number, session, 125)
    assert "Access-Accept" in out and "h323-credit-time=7200" in out, out
    await gw.drain()
    cdr = await gw.pool.fetchrow("SELECT * FROM cdrs WHERE session_id = $1", session)
    assert cdr is not None and cdr["account_id"] == c.account_id and cdr["duration_s"] == 125
    assert list(cdr["cost_per_level_micros"]) == [0, 0]
    assert (
        await gw.pool.fetchval("SELECT balance_micros FROM accounts WHERE id = $1", c.account_id)
        == 1_000_000
    )
    # A number that is nobody's DID: the stranger is refused.
    out = await _call(gw, "4420999999999", f"did-none-{c.account_id}", 10)
    assert "Access-Reject" in out, out


async def test_inbound_rate_groups_price_the_call_at_each_level(gw: Gateway) -> None:
    c = await gw.customer(balance=1_000_000)
    number = await _did(gw, c)
    async with gw.pool.acquire() as conn:
        retail = await factories.rate_group(conn, [factories.rate(12_000, 60, 60, prefix="44")])
        wholesale = await factories.rate_group(conn, [factories.rate(5_000, 60, 60, prefix="44")])
        await conn.execute(
            "UPDATE accounts SET inbound_rate_group_id = $2 WHERE id = $1", c.account_id, retail
        )
        await conn.execute(
            "UPDATE accounts SET inbound_rate_group_id = $2 WHERE id = $1", c.agent_id, wholesale
        )
    directory, rates = gw.path.directory, gw.path.rates
    assert directory is not None and rates is not None
    for _ in range(100):
        account = directory.account(c.account_id)
        in_use = account is not None and account.inbound_rate_group_id == retail
        if in_use and retail in rates.index and wholesale in rates.index:
            break
        await asyncio.sleep(0.02)
    session = f"did-rated-{c.account_id}"
    out = await _call(gw, number, session, 125)  # 3 minutes of 60 s increments
    assert "Access-Accept" in out, out
    await gw.drain()
    cdr = await gw.pool.fetchrow("SELECT * FROM cdrs WHERE session_id = $1", session)
    assert cdr is not None and list(cdr["cost_per_level_micros"]) == [36_000, 15_000]
    # The same customer's outbound calls still use its outbound group (0.06/min to 49).
    assert directory.chain_accounts(c.account_id) is not directory.chain_accounts(
        c.account_id, inbound=True
    )
