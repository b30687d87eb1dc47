"""SIP under load: SIPp at 300 INVITEs/s for 10 s, every one answered 302, none failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from tests.e2e.conftest import Gateway, gateway_config, running
from tests.sip.harness import rate_group_of, route, sipp, with_sip

RATE = 300
CALLS = 3000


@pytest.fixture
async def gw(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    config = with_sip(gateway_config(database_url, redis_url, keys, str(tmp_path / "state")))
    async with running(config, db_pool) as gateway:
        yield gateway


@pytest.mark.slow
async def test_300_invites_per_second_for_10_s_without_a_failure(
    gw: Gateway, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    assert gw.path.sip is not None
    # Every call holds 7200 s at 0.06/min (7.2 units) until its TTL: fund them all.
    c = await gw.customer(balance=10**13, agent_balance=10**13)
    assert gw.path.routes is not None
    await route(gw.path.routes, gw.pool, await rate_group_of(gw.pool, c.account_id), "49")
    run = await sipp(
        "uac_load.xml",
        gw.path.sip.port(),
        tmp_path / "sipp",
        caller=c.extension,
        number="004930123456",
        calls=CALLS,
        rate=RATE,
        timeout_s=60,
        extra=("-l", "1000"),
    )
    assert run.returncode == 0, run.output
    assert (run.successful, run.failed) == (CALLS, 0), run.output
    calls_up = await redis_client.hget(gw.config_keys.account(c.agent_id, c.account_id), "calls")
    assert int(calls_up or 0) == CALLS  # each INVITE held once
    print(
        f"\nSIP load: {CALLS} INVITEs at {RATE}/s, {run.successful} answered 302, "
        f"{run.failed} failed; INVITE->302 p50 {run.percentile(50):.2f} ms, "
        f"p99 {run.percentile(99):.2f} ms, max {max(run.response_times_ms, default=0):.2f} ms "
        f"({len(run.response_times_ms)} samples)"
    )
