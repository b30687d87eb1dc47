"""`gateway reconcile` reports drift with exit 1 and repairs it with --repair."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from tests import factories
from tests.conftest import MakeBalance


async def _gateway(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_reconcile_reports_then_repairs(
    database_url: str,
    redis_url: str,
    keys: Keys,
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    make_balance: MakeBalance,
) -> None:
    balance = await make_balance()
    async with db_pool.acquire() as conn:
        account = await factories.account(conn, kind="agent", mode="transfer", balance=5_000_000)
    await balance.mirror.load([account])
    await redis_client.hincrby(keys.account(account, account), "bal", -1234)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_REDIS_KEY_PREFIX": keys.prefix,
            "GATEWAY_LOG_LEVEL": "warning",
        }
    )
    code, out = await _gateway("reconcile", env=env)
    assert code == 1, out
    assert f"account {account}: bal redis=4998766 expected=5000000 (-1234)" in out
    code, out = await _gateway("reconcile", "--repair", env=env)
    assert code == 0 and "repaired" in out, out
    code, out = await _gateway("reconcile", env=env)
    assert code == 0 and "no drift" in out, out
    assert int(await redis_client.hget(keys.account(account, account), "bal")) == 5_000_000
