"""A gateway running in the test's event loop, on loopback ports chosen by the OS."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.balance.redisconn import shard_count
from gateway.config import Config, from_mapping
from gateway.runtime.app import CallPath, Container, Runtime, backend_services
from tests import factories

SECRET = "e2e-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.4", 0))
        return int(s.getsockname()[1])


COA_PORT = _free_udp_port()  # where the "coa-nas" switch takes Disconnect-Requests
_seq = itertools.count(1)


@dataclass
class Customer:
    account_id: int
    agent_id: int
    extension: str
    password: str
    caller_id: str


@dataclass
class Gateway:
    config: Config
    path: CallPath
    pool: asyncpg.Pool
    auth_port: int
    acct_port: int

    async def customer(
        self,
        balance: int = 10_000_000,
        agent_balance: int = 10**9,
        increments: tuple[int, int] = (60, 60),
        currencies: tuple[str, str] = ("USD", "USD"),
    ) -> Customer:
        """A customer under a wholesale agent, rated for 49 (0.06/min, agent 0.03/min),
        both billed in ``increments`` (first, next); ``currencies``: the customer's and
        the agent's (each rate group in its account's)."""
        n = next(_seq)
        first, step = increments
        async with self.pool.acquire() as conn:
            retail = await factories.rate_group(
                conn, [factories.rate(60_000, first, step, prefix="49")]
            )
            wholesale = await factories.rate_group(
                conn, [factories.rate(30_000, first, step, prefix="49")]
            )
            agent = await factories.account(
                conn, kind="agent", mode="wholesale", balance=agent_balance, rate_group_id=wholesale
            )
            customer = await factories.account(
                conn, parent=agent, balance=balance, rate_group_id=retail
            )
            for account, group, currency in (
                (customer, retail, currencies[0]),
                (agent, wholesale, currencies[1]),
            ):
                await conn.execute(
                    "UPDATE accounts SET currency = $2 WHERE id = $1", account, currency
                )
                await conn.execute(
                    "UPDATE rate_groups SET currency = $2 WHERE id = $1", group, currency
                )
            extension = f"e2e{n}x{customer}"
            caller_id = f"4420{customer:08d}"
            await conn.execute(
                "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, 'pw-e2e')",
                customer,
                extension,
            )
            await conn.execute(
                "INSERT INTO caller_ids (account_id, number) VALUES ($1, $2)", customer, caller_id
            )
        await self.seen(extension, retail)
        return Customer(customer, agent, extension, "pw-e2e", caller_id)

    async def seen(self, extension: str, rate_group: int) -> None:
        """Wait until the gateway heard of the new extension and rates (NOTIFY, < 1 s)."""
        directory, rates = self.path.directory, self.path.rates
        assert directory is not None and rates is not None
        for _ in range(100):
            if directory.extension(extension) is not None and rate_group in rates.index:
                return
            await asyncio.sleep(0.02)
        pytest.fail("the gateway did not pick up the new customer within 2 s")

    async def drain(self) -> None:
        """Let the committer write what was settled."""
        assert self.path.committer is not None
        for _ in range(100):
            if not await self.path.committer.redis.xlen(self.config_keys.settlements(0)):
                return
            await asyncio.sleep(0.05)

    @property
    def config_keys(self) -> Keys:
        return Keys(
            self.config.redis.key_prefix, shard_count(self.config.redis, self.config.redis.url)
        )


def gateway_config(
    database_url: str,
    redis_url: str,
    keys: Keys,
    state_dir: str,
    balance: dict[str, object] | None = None,
    clients: list[dict[str, object]] | None = None,
    sections: dict[str, dict[str, object]] | None = None,
) -> Config:
    """Loopback ports chosen by the OS, three switches (cisco, kamailio-style, one with
    CoA) unless ``clients`` says otherwise; ``balance`` overrides [balance] keys and
    ``sections`` adds whole sections (e.g. ``{"fraud": {...}}``)."""
    return from_mapping(
        {
            **(sections or {}),
            "service": {"state_dir": state_dir, "drain_timeout_s": 5.0},
            "redis": {"url": redis_url, "key_prefix": keys.prefix},
            "database": {"url": database_url},
            "balance": balance or {},
            "committer": {"commit_wait_s": 2.0},
            "metrics": {"bind": "127.0.0.1", "port": 0, "gauge_interval_s": 0.2},
            "radius": {
                "bind": ["127.0.0.1"],
                "auth_port": 0,
                "acct_port": 0,
                "clients": clients
                or [
                    {
                        "name": "cisco-gw",
                        "address": "127.0.0.1",
                        "secret": SECRET,
                        "profile": "cisco",
                        "country_code": "44",
                    },
                    {
                        "name": "kamailio",
                        "address": "127.0.0.3",
                        "secret": SECRET,
                        "profile": "standard",
                        "require_message_authenticator": False,
                        "verify_password": False,
                    },
                    {
                        "name": "coa-nas",
                        "address": "127.0.0.4",
                        "secret": SECRET,
                        "profile": "standard",
                        "coa_port": COA_PORT,
                    },
                ],
            },
        }
    )


@contextlib.asynccontextmanager
async def running(config: Config, pool: asyncpg.Pool) -> AsyncIterator[Gateway]:
    """The gateway's services started in this event loop, stopped on exit."""
    runtime = Runtime(config)
    path = CallPath(runtime)
    container = Container([*backend_services(runtime), path], drain_timeout_s=5.0)
    await container.start()
    try:
        assert path.radius is not None
        yield Gateway(config, path, pool, path.radius.port("auth"), path.radius.port("acct"))
    finally:
        await container.stop()


@pytest.fixture
async def gateway(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    config = gateway_config(database_url, redis_url, keys, str(tmp_path))
    async with running(config, db_pool) as gw:
        yield gw


def require_radclient() -> str:
    path = shutil.which("radclient")
    if path is None:
        pytest.fail("radclient is missing: `make test` installs freeradius-utils")
    return path
