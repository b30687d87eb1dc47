"""The mail outbox against a real local SMTP server (aiosmtpd on 127.0.0.1).

Every test queues rows of its own ``kind`` and drains only that kind, so mail other
tests left in the shared table is not touched (except by the service test, which
drains everything due into its own throw-away server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller

from gateway.agents import outbox
from gateway.config import Config, SmtpConfig
from gateway.runtime.app import ManagementJobs, Runtime

_seq = itertools.count(1)


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(_free_port())
    yield server
    server.stop()


def _smtp(server: SmtpServer, **changes: Any) -> SmtpConfig:
    base = SmtpConfig(host="127.0.0.1", port=server.port, sender="gw@example.test", timeout_s=5.0)
    return dataclasses.replace(base, **changes)


async def _queue(pool: asyncpg.Pool, count: int = 1) -> tuple[str, list[str]]:
    kind = f"test-{next(_seq)}-{id(pool) % 10_000}-{datetime.now(UTC).timestamp()}"
    recipients = [f"r{i}@example.test" for i in range(count)]
    async with pool.acquire() as conn:
        for i, recipient in enumerate(recipients):
            queued = await outbox.enqueue(
                conn,
                kind=kind,
                recipient=recipient,
                subject=f"Notice {i}",
                body=f"Hello {i}\n",
                dedupe_key=f"{kind}:{i}",
            )
            assert queued
    return kind, recipients


async def _rows(pool: asyncpg.Pool, kind: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM notification_outbox WHERE kind = $1 ORDER BY id", kind
        )


async def test_enqueue_is_deduplicated(db_pool: asyncpg.Pool) -> None:
    kind, _ = await _queue(db_pool)
    async with db_pool.acquire() as conn:
        again = await outbox.enqueue(
            conn,
            kind=kind,
            recipient="x@example.test",
            subject="s",
            body="b",
            dedupe_key=f"{kind}:0",
        )
    assert again is False
    assert len(await _rows(db_pool, kind)) == 1


async def test_no_smtp_host_leaves_mail_waiting(db_pool: asyncpg.Pool) -> None:
    kind, _ = await _queue(db_pool)
    result = await outbox.drain(db_pool, SmtpConfig(), kind=kind)
    assert result == outbox.DrainResult()
    [row] = await _rows(db_pool, kind)
    assert row["attempts"] == 0 and row["sent_at"] is None


async def test_server_down_then_up(db_pool: asyncpg.Pool, smtp_server: SmtpServer) -> None:
    kind, recipients = await _queue(db_pool)
    config = _smtp(smtp_server, retry_delay_s=300.0)
    now = datetime.now(UTC)

    down = await outbox.drain(db_pool, config, now, kind=kind)
    assert down == outbox.DrainResult(sent=0, failed=1)
    [row] = await _rows(db_pool, kind)
    assert row["attempts"] == 1
    assert row["sent_at"] is None
    assert row["next_attempt_at"] == now + timedelta(seconds=300)
    assert "Connection" in row["last_error"] or "refused" in row["last_error"].lower()

    smtp_server.start()
    # Not due yet: nothing is tried before the retry time.
    assert await outbox.drain(db_pool, config, now + timedelta(seconds=10), kind=kind) == (
        outbox.DrainResult()
    )
    later = now + timedelta(seconds=301)
    up = await outbox.drain(db_pool, config, later, kind=kind)
    assert up == outbox.DrainResult(sent=1, failed=0)
    [row] = await _rows(db_pool, kind)
    assert row["sent_at"] == later
    assert row["attempts"] == 2
    assert row["last_error"] == ""

    [(rcpt, raw)] = smtp_server.inbox.messages
    assert rcpt == recipients
    message = message_from_bytes(raw)
    assert message["Subject"] == "Notice 0"
    assert message["From"] == "gw@example.test"
    assert message["To"] == recipients[0]
    assert "Hello 0" in message.get_payload()
    # Sent is sent: a later drain does not send it again.
    assert await outbox.drain(db_pool, config, later + timedelta(days=1), kind=kind) == (
        outbox.DrainResult()
    )


async def test_retry_delay_doubles_and_gives_up(
    db_pool: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    config = _smtp(smtp_server, retry_delay_s=10.0, max_attempts=3)
    assert [outbox.retry_delay_s(config, n) for n in range(4)] == [10.0, 20.0, 40.0, 80.0]
    assert outbox.retry_delay_s(config, 1000) == outbox.MAX_RETRY_DELAY_S
    kind, _ = await _queue(db_pool)
    now = datetime.now(UTC)
    for attempt, delay in enumerate((10, 20, 40), start=1):
        result = await outbox.drain(db_pool, config, now, kind=kind)
        assert result.failed == 1
        [row] = await _rows(db_pool, kind)
        assert row["attempts"] == attempt
        assert row["next_attempt_at"] == now + timedelta(seconds=delay)
        now = row["next_attempt_at"]
    # Three failures: given up, even once the server answers.
    smtp_server.start()
    assert await outbox.drain(db_pool, config, now + timedelta(days=30), kind=kind) == (
        outbox.DrainResult()
    )
    assert smtp_server.inbox.messages == []


async def test_concurrent_drains_send_each_mail_once(
    db_pool: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    kind, recipients = await _queue(db_pool, count=6)
    config = _smtp(smtp_server)
    results = await asyncio.gather(*(outbox.drain(db_pool, config, kind=kind) for _ in range(3)))
    assert sum(r.sent for r in results) == 6
    assert sorted(r for rcpt, _ in smtp_server.inbox.messages for r in rcpt) == recipients
    assert all(row["sent_at"] is not None for row in await _rows(db_pool, kind))


async def test_management_jobs_send_the_outbox(
    config: Config,
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    smtp_server: SmtpServer,
) -> None:
    smtp_server.start()
    kind, recipients = await _queue(db_pool)
    smtp = _smtp(smtp_server, send_interval_s=0.1)
    off = dataclasses.replace(config.dormancy, enabled=False)
    no_charges = dataclasses.replace(config.recurring, enabled=False)
    no_invoices = dataclasses.replace(config.invoices, enabled=False)
    runtime = Runtime(
        dataclasses.replace(
            config, smtp=smtp, dormancy=off, recurring=no_charges, invoices=no_invoices
        )
    )
    runtime.db, runtime.redis = db_pool, redis_client
    jobs = ManagementJobs(runtime)
    await jobs.start()
    try:
        assert [j.name for j in jobs.jobs] == ["low-balance", "outbox"]
        for _ in range(100):
            [row] = await _rows(db_pool, kind)
            if row["sent_at"] is not None:
                break
            await asyncio.sleep(0.05)
        assert row["sent_at"] is not None
    finally:
        await jobs.stop()
    assert jobs.jobs == []
    assert recipients[0] in [r for rcpt, _ in smtp_server.inbox.messages for r in rcpt]
