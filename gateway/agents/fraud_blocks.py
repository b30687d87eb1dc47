"""Disabling an account a velocity check flagged, and telling who must know.

One transaction disables the account (``disabled_reason = 'fraud'``, the rule and
its figures in ``disabled_detail``) and queues the notices: a mail to each contact
address of the agent above it and to ``alerts.operator_email``, and a JSON POST to
``alerts.webhook_url``, each under a dedupe key so that two gateways crossing the
same threshold queue them once. An account that is not active is left as it is.
Unblocking is the account's ordinary PATCH to ``status = "active"``, which clears the
reason and the detail.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from gateway.agents import outbox
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.calls.fraud import Crossed
from gateway.config import AlertsConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

KIND = "fraud_block"
EVENT = "account.blocked"


async def block(pool: asyncpg.Pool, alerts: AlertsConfig, crossed: Crossed) -> bool:
    """Disable ``crossed.account_id`` for fraud; False when it was not active."""
    now = datetime.now(UTC)
    with pg_errors():
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE accounts SET status = 'disabled', disabled_reason = 'fraud', "
                "  disabled_detail = $2, disabled_at = $3 "
                "WHERE id = $1 AND status = 'active' RETURNING id, name, kind, parent_id",
                crossed.account_id,
                f"{crossed.rule}: {crossed.detail}"[:500],
                now,
            )
            if row is None:
                return False
            parent = None
            if row["parent_id"] is not None:
                parent = await conn.fetchrow(
                    "SELECT id, name, contact_emails FROM accounts WHERE id = $1",
                    row["parent_id"],
                )
            key = f"fraud:{crossed.account_id}:{now.isoformat()}"
            subject = f"Account {row['name']} (#{row['id']}) disabled: suspected fraud"
            body = (
                f"The gateway disabled account {row['name']} (#{row['id']}) at "
                f"{now:%Y-%m-%d %H:%M:%S} UTC.\n\nRule: {crossed.rule}\n{crossed.detail}\n\n"
                "Its calls are refused until it is set active again.\n"
            )
            recipients = list(parent["contact_emails"]) if parent is not None else []
            if alerts.operator_email:
                recipients.append(alerts.operator_email)
            payload = {
                "event": EVENT,
                "account_id": row["id"],
                "account_name": row["name"],
                "kind": row["kind"],
                "agent_id": row["parent_id"],
                "rule": crossed.rule,
                "detail": crossed.detail,
                "at": now.isoformat(),
            }
            await outbox.notify(
                conn,
                kind=KIND,
                key=key,
                recipients=recipients,
                subject=subject,
                body=body,
                webhook_url=alerts.webhook_url,
                event=EVENT,
                payload=payload,
            )
    metrics.child(metrics.FRAUD_BLOCKS, crossed.rule).inc()
    log.warning(
        "fraud.blocked",
        extra={"account": crossed.account_id, "rule": crossed.rule, "detail": crossed.detail},
    )
    return True


async def forgive(client: RedisClient, keys: Keys, root_id: int, account_id: int) -> None:
    """Judge an unblocked account afresh: the hour's counts go, and the countries it has
    dialled so far count as known (not new). Best effort: Redis may be down."""
    countries = keys.countries(root_id, account_id)
    try:
        with redis_errors():
            known = await client.hkeys(countries)
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.account(root_id, account_id), "vh")
                if known:
                    pipe.hset(countries, mapping=dict.fromkeys(known, 0))
                await pipe.execute()
    except BackendUnavailable as exc:
        log.warning("fraud.forgive_failed", extra={"account": account_id, "error": exc.reason})
