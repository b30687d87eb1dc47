"""The outbox: notices are queued in ``notification_outbox`` and sent from there, by
mail (channel ``mail``) or as a JSON POST to a webhook (channel ``webhook``: the
recipient is the URL, the body the JSON).

Whoever wants to tell someone something (the dormancy job) inserts a row, in the
same transaction as the change it reports, under a ``dedupe_key`` so a repeated
round queues nothing twice. ``drain`` sends the due rows over SMTP (stdlib
``smtplib`` in a thread, so the event loop never blocks on a slow server).

Every gateway may drain: a row is claimed by pushing its ``next_attempt_at``
forward by a lease (``FOR UPDATE SKIP LOCKED``), so two senders never pick the same
row; a sender that dies mid-conversation leaves the row due again once the lease
ends (mail is sent at least once). A failure keeps the error, counts the attempt
and waits ``smtp.retry_delay_s * 2**attempts`` (capped at a day); after
``smtp.max_attempts`` failures the row stays, unsent, for an operator to look at.
With ``smtp.host`` empty nothing is sent: mail waits in the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import partial
from typing import Any

import asyncpg
from prometheus_client import Counter

from gateway.config import SmtpConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.periodic import Periodic
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 86_400.0
BATCH = 50
_ERROR_MAX = 1000

_CLAIM = """
UPDATE notification_outbox SET next_attempt_at = $2 + make_interval(secs => $4)
WHERE id = (SELECT id FROM notification_outbox
            WHERE sent_at IS NULL AND next_attempt_at <= $2 AND attempts < $3
              AND ($1::text IS NULL OR kind = $1) AND channel = $5
            ORDER BY next_attempt_at, id LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING id, kind, recipient, subject, body, attempts
"""


@dataclass(frozen=True, slots=True)
class DrainResult:
    sent: int = 0
    failed: int = 0


async def enqueue(
    conn: Connection,
    *,
    kind: str,
    recipient: str,
    subject: str,
    body: str,
    dedupe_key: str,
    channel: str = "mail",
) -> bool:
    """Queue one notice; False when one with ``dedupe_key`` is already queued or sent."""
    queued = await conn.fetchval(
        "INSERT INTO notification_outbox (kind, recipient, subject, body, dedupe_key, channel) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        kind,
        recipient,
        subject,
        body,
        dedupe_key,
        channel,
    )
    return queued is not None


async def notify(
    conn: Connection,
    *,
    kind: str,
    key: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    webhook_url: str = "",
    event: str = "",
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Queue one event's notices: a mail to each recipient (once each, in order) and,
    with ``webhook_url``, the JSON ``payload`` POSTed there; each deduplicated under
    ``key``, so an event queued twice is sent once."""
    for recipient in dict.fromkeys(recipients):
        await enqueue(
            conn,
            kind=kind,
            recipient=recipient,
            subject=subject,
            body=body,
            dedupe_key=f"{key}:{recipient}",
        )
    if webhook_url and payload is not None:
        await enqueue(
            conn,
            kind=kind,
            recipient=webhook_url,
            subject=event,
            body=json.dumps(payload, separators=(",", ":")),
            dedupe_key=f"{key}:webhook",
            channel="webhook",
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one channel sends and retries."""

    channel: str
    send: Callable[[str, str, str], None]  # (recipient, subject, body), blocking; raises
    errors: tuple[type[BaseException], ...]
    first_retry_s: float
    max_attempts: int
    lease_s: float
    sent: Counter
    label: str  # the log event prefix


def retry_delay_s(config: SmtpConfig | Delivery, attempts: int) -> float:
    """Wait before the next try of a notice that has failed ``attempts`` times before."""
    first = config.retry_delay_s if isinstance(config, SmtpConfig) else config.first_retry_s
    delay: float = first * 2 ** min(attempts, 32)
    return min(delay, MAX_RETRY_DELAY_S)


def _message(config: SmtpConfig, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def send_mail(config: SmtpConfig, recipient: str, subject: str, body: str) -> None:
    """Send one mail (blocking); raises ``smtplib.SMTPException`` or ``OSError``."""
    message = _message(config, recipient, subject, body)
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as client:
        if config.starttls:
            client.starttls(context=ssl.create_default_context())
        if config.username:
            client.login(config.username, config.password)
        client.send_message(message)


def _lease_s(config: SmtpConfig) -> float:
    # Long enough for a whole SMTP conversation (connect, TLS, login, data, quit).
    return max(60.0, config.timeout_s * 6)


def mail_delivery(config: SmtpConfig) -> Delivery:
    return Delivery(
        channel="mail",
        send=partial(send_mail, config),
        errors=(smtplib.SMTPException, OSError, ValueError),
        first_retry_s=config.retry_delay_s,
        max_attempts=config.max_attempts,
        lease_s=_lease_s(config),
        sent=metrics.OUTBOX_MAILS,
        label="outbox",
    )


async def _finish(
    pool: asyncpg.Pool, row: asyncpg.Record, now: datetime, error: str | None, way: Delivery
) -> None:
    with pg_errors():
        async with pool.acquire() as conn:
            if error is None:
                await conn.execute(
                    "UPDATE notification_outbox SET sent_at = $2, attempts = attempts + 1, "
                    "last_error = '' WHERE id = $1",
                    row["id"],
                    now,
                )
                return
            await conn.execute(
                "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2, "
                "next_attempt_at = $3 WHERE id = $1",
                row["id"],
                error[:_ERROR_MAX],
                now + timedelta(seconds=retry_delay_s(way, row["attempts"])),
            )


async def drain(
    pool: asyncpg.Pool,
    config: SmtpConfig,
    now: datetime | None = None,
    *,
    kind: str | None = None,
    limit: int = BATCH,
) -> DrainResult:
    """Send up to ``limit`` due mails (of ``kind``, or any); nothing when no SMTP host is set.

    ``now`` is the clock the due times and retries are computed with (tests move it).
    """
    if not config.host:
        return DrainResult()
    return await deliver(pool, mail_delivery(config), now, kind=kind, limit=limit)


async def deliver(
    pool: asyncpg.Pool,
    way: Delivery,
    now: datetime | None = None,
    *,
    kind: str | None = None,
    limit: int = BATCH,
) -> DrainResult:
    """Send up to ``limit`` due notices of ``way``'s channel, each claimed by one sender."""
    sent = failed = 0
    for _ in range(limit):
        moment = now or datetime.now(UTC)
        with pg_errors():
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    _CLAIM, kind, moment, way.max_attempts, way.lease_s, way.channel
                )
        if row is None:
            break
        try:
            await asyncio.to_thread(way.send, row["recipient"], row["subject"], row["body"])
        except way.errors as exc:
            error = f"{type(exc).__name__}: {exc}"
            await _finish(pool, row, moment, error, way)
            failed += 1
            gave_up = row["attempts"] + 1 >= way.max_attempts
            way.sent.labels("gave_up" if gave_up else "failed").inc()
            log.warning(
                f"{way.label}.send_failed",
                extra={
                    "notice": row["id"],
                    "attempts": row["attempts"] + 1,
                    "error": error,
                    "gave_up": gave_up,
                },
            )
            continue
        await _finish(pool, row, moment, None, way)
        sent += 1
        way.sent.labels("sent").inc()
        log.info(f"{way.label}.sent", extra={"notice": row["id"], "kind": row["kind"]})
    return DrainResult(sent, failed)


class OutboxSender(Periodic):
    """Drains the outbox every ``smtp.send_interval_s``."""

    name = "outbox"

    def __init__(self, pool: asyncpg.Pool, config: SmtpConfig) -> None:
        super().__init__(config.send_interval_s)
        self.pool = pool
        self.config = config

    async def step(self) -> None:
        try:
            await drain(self.pool, self.config)
        except BackendUnavailable:
            raise  # Periodic logs it and tries again next round
        except asyncpg.PostgresError:
            # Not worth stopping the loop over: logged, and tried again next round.
            log.exception("outbox.drain_failed")
