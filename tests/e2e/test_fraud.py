"""Velocity checks end to end: a customer crossing a threshold over RADIUS is disabled
in PostgreSQL (reason fraud, with the figures), refused at once, its agent and the
operator get a mail in the outbox and the webhook a JSON POST; an unblock makes it a
customer again, judged afresh."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from gateway.agents.fraud_blocks import forgive
from gateway.agents.outbox import deliver
from gateway.agents.webhooks import webhook_delivery
from gateway.balance.keys import Keys
from gateway.config import AlertsConfig
from tests.e2e.conftest import Customer, Gateway, gateway_config, running
from tests.e2e.test_radius_radclient import radclient

OPERATOR = "noc@operator.example"


class Hook:
    """A real HTTP server on loopback that keeps each POST (and fails the first
    ``failures`` of them with 503)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/fraud"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        if self.failures > 0:
            self.failures -= 1
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            self.bodies.append(json.loads(body))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    server = Hook(failures=1)
    yield server
    await server.stop()


def _sections(url: str, **fraud: object) -> dict[str, dict[str, object]]:
    return {
        "fraud": dict(fraud),
        "alerts": {"operator_email": OPERATOR, "webhook_url": url, "retry_delay_s": 1.0},
    }


async def _ask(gw: Gateway, c: Customer, number: str, session: str) -> str:
    _code, out = await radclient(
        gw.auth_port,
        "auth",
        f'User-Name = "{c.extension}", User-Password = "{c.password}", '
        f'Called-Station-Id = "{number}", Acct-Session-Id = "{session}", '
        "Message-Authenticator = 0x00",
        tries=1,
    )
    return out


async def _directory_sees(gw: Gateway, c: Customer, status: str) -> None:
    assert gw.path.directory is not None
    for _ in range(200):
        account = gw.path.directory.account(c.account_id)
        if account is not None and account.status == status:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the directory did not see the account {status}")


async def _blocked(gw: Gateway, c: Customer) -> asyncpg.Record:
    for _ in range(200):
        row = await gw.pool.fetchrow(
            "SELECT status, disabled_reason, disabled_detail FROM accounts WHERE id = $1",
            c.account_id,
        )
        if row is not None and row["status"] == "disabled":
            return row
        await asyncio.sleep(0.02)
    pytest.fail("the account was not disabled")


async def test_attempts_to_unrated_numbers_disable_the_customer_and_tell_everyone(
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    db_pool: asyncpg.Pool,
    hook: Hook,
) -> None:
    url = await hook.start()
    sections = _sections(url, unrated_attempts_per_hour=3)
    config = gateway_config(
        database_url, redis_url, keys, str(tmp_path / "state"), sections=sections
    )
    async with running(config, db_pool) as gw:
        c = await gw.customer()
        await gw.pool.execute(
            "UPDATE accounts SET contact_emails = '{reseller@agent.example}' WHERE id = $1",
            c.agent_id,
        )
        assert "Access-Accept" in await _ask(gw, c, "004930123456", f"ok-{c.account_id}")
        for i in range(4):  # a stolen extension probing premium ranges no rate prices
            out = await _ask(gw, c, f"0088216{i:06d}", f"probe-{c.account_id}-{i}")
            assert "Destination not allowed" in out, out
        row = await _blocked(gw, c)
        await _directory_sees(gw, c, "disabled")  # before the unblock below, not after
        assert row["disabled_reason"] == "fraud"
        assert row["disabled_detail"].startswith("unrated_attempts: 4 attempts"), row
        # Refused at once: Redis has the status (no waiting for the directory).
        out = await _ask(gw, c, "004930123456", f"after-{c.account_id}")
        assert "Access-Reject" in out and "Account disabled" in out, out
        mails = await gw.pool.fetch(
            "SELECT recipient, subject, channel FROM notification_outbox "
            "WHERE kind = 'fraud_block' AND dedupe_key LIKE $1 ORDER BY channel, recipient",
            f"fraud:{c.account_id}:%",
        )
        assert [(m["recipient"], m["channel"]) for m in mails] == [
            ("noc@operator.example", "mail"),
            ("reseller@agent.example", "mail"),
            (url, "webhook"),
        ]
        assert "suspected fraud" in mails[0]["subject"]
        # The webhook: the first POST gets 503 and is retried after the delay.
        way = webhook_delivery(AlertsConfig(webhook_url=url, retry_delay_s=1.0))
        first = await deliver(db_pool, way, kind="fraud_block")
        assert (first.sent, first.failed) == (0, 1)
        later = await deliver(
            db_pool, way, datetime.now(UTC) + timedelta(seconds=5), kind="fraud_block"
        )
        assert (later.sent, later.failed) == (1, 0)
        (body,) = hook.bodies
        assert body["event"] == "account.blocked" and body["account_id"] == c.account_id
        assert body["rule"] == "unrated_attempts" and body["agent_id"] == c.agent_id

        # Unblocked by its agent's PATCH (here the same SQL the API runs, then the
        # counters are forgiven): it calls again, and is judged afresh.
        await gw.pool.execute(
            "UPDATE accounts SET status = 'active', disabled_reason = '', "
            "disabled_detail = '', disabled_at = NULL WHERE id = $1",
            c.account_id,
        )
        assert gw.path.balance is not None and gw.path.directory is not None
        await gw.path.balance.mirror.sync(c.account_id)
        await _directory_sees(gw, c, "active")
        await forgive(gw.path.balance.pipeliner.client, gw.config_keys, c.agent_id, c.account_id)
        assert "Access-Accept" in await _ask(gw, c, "004930123456", f"again-{c.account_id}")
        out = await _ask(gw, c, "0088216999999", f"again-probe-{c.account_id}")
        assert "Destination not allowed" in out  # one attempt: well under the limit
        await asyncio.sleep(0.2)
        status = await gw.pool.fetchval("SELECT status FROM accounts WHERE id = $1", c.account_id)
        assert status == "active"


async def test_many_new_countries_within_an_hour_disable_the_customer(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> None:
    sections = {"fraud": {"new_countries_per_hour": 2}}
    config = gateway_config(
        database_url, redis_url, keys, str(tmp_path / "state"), sections=sections
    )
    async with running(config, db_pool) as gw:
        c = await gw.customer()
        groups = await gw.pool.fetch(
            "SELECT rate_group_id FROM accounts WHERE id = ANY($1::bigint[])",
            [c.account_id, c.agent_id],
        )
        for prefix in ("33", "1", "81"):
            for g in groups:
                await gw.pool.execute(
                    "INSERT INTO rates (rate_group_id, prefix, destination, price_per_min_micros, "
                    " first_increment_s, next_increment_s) VALUES ($1, $2, 'x', 10000, 60, 60)",
                    g["rate_group_id"],
                    prefix,
                )
        assert gw.path.rates is not None
        for _ in range(100):
            if all(
                gw.path.rates.index.lookup(g["rate_group_id"], "8131234", datetime.now(UTC))
                for g in groups
            ):
                break
            await asyncio.sleep(0.02)
        # Three countries in the first hour: each call is answered (the check runs
        # beside it), and the third crosses the limit of two.
        for i, number in enumerate(("004930123456", "0033123456", "0012125550100")):
            out = await _ask(gw, c, number, f"cc-{c.account_id}-{i}")
            assert "Access-Accept" in out, out
        row = await _blocked(gw, c)
        assert row["disabled_detail"].startswith("new_countries: 3 new"), row
        out = await _ask(gw, c, "0081312345678", f"cc-{c.account_id}-last")
        assert "Account disabled" in out, out


async def test_mostly_short_calls_disable_the_customer(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> None:
    sections = {"fraud": {"short_call_ratio": 0.5, "short_call_s": 5, "short_call_min_calls": 3}}
    config = gateway_config(
        database_url, redis_url, keys, str(tmp_path / "state"), sections=sections
    )
    async with running(config, db_pool) as gw:
        c = await gw.customer()
        for i in range(3):
            session = f"short-{c.account_id}-{i}"
            assert "Access-Accept" in await _ask(gw, c, "004930123456", session)
            common = (
                f'User-Name = "{c.extension}", Called-Station-Id = "004930123456", '
                f'Acct-Session-Id = "{session}"'
            )
            for extra in (
                "Acct-Status-Type = Start",
                "Acct-Status-Type = Stop, Acct-Session-Time = 2",
            ):
                code, out = await radclient(gw.acct_port, "acct", f"{common}, {extra}")
                assert code == 0, out
        row = await _blocked(gw, c)
        assert row["disabled_detail"].startswith("short_calls: 3 of 3"), row
