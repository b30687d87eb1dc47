"""Call rules end to end: destination block- and allow-lists, the price limit and
margin protection, set on an agent and on a customer, refusing through RADIUS
(radclient) and SIP (SIPp) in the step that prices the call, holding nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from tests.e2e.conftest import Customer, Gateway, gateway_config, running
from tests.e2e.test_credit_control import _radclient_many
from tests.e2e.test_radius_radclient import radclient
from tests.sip.harness import rate_group_of, route, sipp, with_sip

NUMBER = "004930123456"  # normalized 4930123456: rated 0.06/min, the agent pays 0.03


@pytest.fixture
async def gw(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    config = with_sip(gateway_config(database_url, redis_url, keys, str(tmp_path / "state")))
    async with running(config, db_pool) as gateway:
        yield gateway


async def _customer(gw: Gateway) -> Customer:
    c = await gw.customer()
    assert gw.path.routes is not None
    await route(gw.path.routes, gw.pool, await rate_group_of(gw.pool, c.account_id), "49")
    return c


async def _rules(gw: Gateway, account_id: int, **values: object) -> None:
    """Set an account's rules and wait until the directory has them (NOTIFY)."""
    assert gw.path.directory is not None
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(2, len(values) + 2))
    updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in values)
    before = gw.path.directory.reloads
    await gw.pool.execute(
        f"INSERT INTO call_rules (account_id, {columns}) VALUES ($1, {marks}) "
        f"ON CONFLICT (account_id) DO UPDATE SET {updates}",
        account_id,
        *values.values(),
    )
    for _ in range(100):
        account = gw.path.directory.account(account_id)
        if gw.path.directory.reloads > before and account is not None and account.rules:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the directory did not pick up the rules within 2 s")


async def _ask(gw: Gateway, c: Customer, session: str) -> str:
    _code, out = await radclient(
        gw.auth_port,
        "auth",
        f'User-Name = "{c.extension}", User-Password = "{c.password}", '
        f'Called-Station-Id = "{NUMBER}", Acct-Session-Id = "{session}", '
        "Message-Authenticator = 0x00",
        tries=1,
    )
    return out


async def _held(redis: aioredis.Redis, gw: Gateway, c: Customer) -> tuple[int, int]:
    values = await redis.hmget(gw.config_keys.account(c.agent_id, c.account_id), ["held", "calls"])
    return int(values[0] or 0), int(values[1] or 0)


async def test_an_agents_block_list_refuses_its_customers_over_radius_and_sip(
    gw: Gateway, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    c = await _customer(gw)
    assert "Access-Accept" in await _ask(gw, c, f"rule-ok-{c.account_id}")
    accepted = await _held(redis_client, gw, c)
    await _rules(gw, c.agent_id, block_prefixes=["4930", "881"])  # the whole reseller
    out = await _ask(gw, c, f"rule-block-{c.account_id}")
    assert "Access-Reject" in out and 'Reply-Message = "Destination blocked"' in out, out
    assert "h323-return-code=9" in out, out
    assert gw.path.sip is not None
    run = await sipp("uac_404.xml", gw.path.sip.port(), tmp_path, caller=c.extension, number=NUMBER)
    assert run.returncode == 0 and run.successful == 1, run.output
    assert await _held(redis_client, gw, c) == accepted  # the refusals held nothing


async def test_a_customers_allow_list_narrows_what_it_may_dial(gw: Gateway) -> None:
    c = await _customer(gw)
    await _rules(gw, c.account_id, allow_prefixes=["4989"])
    out = await _ask(gw, c, f"rule-allow-{c.account_id}")
    assert "Access-Reject" in out and "Destination blocked" in out, out
    await _rules(gw, c.account_id, allow_prefixes=["4930"])
    assert "Access-Accept" in await _ask(gw, c, f"rule-allow2-{c.account_id}")


async def test_the_lowest_price_limit_of_the_chain_binds(gw: Gateway, tmp_path: Path) -> None:
    c = await _customer(gw)
    await _rules(gw, c.account_id, max_price_per_min_micros=100_000)  # 0.06 is under it
    assert "Access-Accept" in await _ask(gw, c, f"rule-price-{c.account_id}")
    await _rules(gw, c.agent_id, max_price_per_min_micros=50_000)  # the agent's binds
    out = await _ask(gw, c, f"rule-price2-{c.account_id}")
    assert "Access-Reject" in out and "price limit" in out, out
    assert gw.path.sip is not None
    run = await sipp(
        "uac_403_rule.xml", gw.path.sip.port(), tmp_path, caller=c.extension, number=NUMBER
    )
    assert run.returncode == 0 and run.successful == 1, run.output


async def test_a_reseller_selling_below_cost_is_refused_when_it_says_so(
    gw: Gateway, redis_client: aioredis.Redis
) -> None:
    c = await _customer(gw)
    # The agent now pays 0.08/min for what its customer pays 0.06/min.
    cost_group = await gw.pool.fetchval(
        "SELECT rate_group_id FROM accounts WHERE id = $1", c.agent_id
    )
    await gw.pool.execute(
        "UPDATE rates SET price_per_min_micros = 80000 WHERE rate_group_id = $1", cost_group
    )
    assert gw.path.rates is not None
    for _ in range(100):
        rate = gw.path.rates.index.lookup(cost_group, "4930123456", datetime.now(UTC))
        if rate is not None and rate.price_per_min_micros == 80000:
            break
        await asyncio.sleep(0.02)
    # Allowed by default: the agent loses 0.02/min, its choice.
    assert "Access-Accept" in await _ask(gw, c, f"margin-allow-{c.account_id}")
    accepted = await _held(redis_client, gw, c)
    await _rules(gw, c.agent_id, negative_margin="refuse")
    out = await _ask(gw, c, f"margin-refuse-{c.account_id}")
    assert "Access-Reject" in out and "h323-return-code=8" in out, out
    assert await _held(redis_client, gw, c) == accepted  # the refusal held nothing


async def test_a_minimum_margin_refuses_a_call_sold_too_close_to_cost(gw: Gateway) -> None:
    c = await _customer(gw)  # sells at 0.06/min what costs the agent 0.03/min
    await _rules(gw, c.agent_id, negative_margin="refuse", min_margin_micros=30_000)
    assert "Access-Accept" in await _ask(gw, c, f"margin-min-{c.account_id}")
    await _rules(gw, c.agent_id, negative_margin="refuse", min_margin_micros=30_001)
    out = await _ask(gw, c, f"margin-min2-{c.account_id}")
    assert "Access-Reject" in out and "Destination not available" in out, out


async def test_a_stolen_extension_burst_is_cut_off_within_its_first_attempts(
    gw: Gateway, tmp_path: Path
) -> None:
    """Twenty attempts at once (radclient -p 20) against 2 attempts/s on the reseller:
    two get through, the rest are refused CPS_LIMIT; SIP is held to the same count."""
    c = await _customer(gw)
    await _rules(gw, c.agent_id, max_attempts_per_s=2, max_attempts_per_min=2)
    requests = [
        f'User-Name = "{c.extension}", User-Password = "{c.password}", '
        f'Called-Station-Id = "{NUMBER}", Acct-Session-Id = "burst-{c.account_id}-{i}", '
        "Message-Authenticator = 0x00"
        for i in range(20)
    ]
    out = await _radclient_many(gw.auth_port, "auth", requests)
    assert out.count("Received Access-Accept") == 2, out
    assert out.count("Received Access-Reject") == 18, out
    assert out.count('Reply-Message = "Too many call attempts"') == 18, out
    assert gw.path.sip is not None
    run = await sipp("uac_403.xml", gw.path.sip.port(), tmp_path, caller=c.extension, number=NUMBER)
    assert run.failed == 1  # 403 CPS_LIMIT, not one of the reasons uac_403 expects
    assert "CPS_LIMIT" in run.output or run.returncode != 0


async def test_an_hourly_spend_cap_limits_the_grant_over_radius_and_sip(
    gw: Gateway, tmp_path: Path
) -> None:
    c = await _customer(gw)
    await _rules(gw, c.account_id, max_spend_hour_micros=300_000)  # 5 minutes at 0.06
    out = await _ask(gw, c, f"cap-{c.account_id}")
    assert "Access-Accept" in out and "Session-Timeout = 300" in out, out
    out = await _ask(gw, c, f"cap2-{c.account_id}")
    assert "Access-Reject" in out and "Hourly spend limit reached" in out, out
    assert gw.path.sip is not None
    run = await sipp("uac_402.xml", gw.path.sip.port(), tmp_path, caller=c.extension, number=NUMBER)
    assert run.returncode == 0 and run.successful == 1, run.output  # 402, SPEND_CAP_HOUR
