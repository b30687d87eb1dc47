"""Webhook notices: a JSON POST per event to ``[alerts] webhook_url``, queued in the
outbox (channel ``webhook``) with the event and retried like mail: exponential delay
from ``alerts.retry_delay_s``, at most ``alerts.max_attempts`` tries, any 2xx is done.
"""

from __future__ import annotations

import urllib.request
from functools import partial

import asyncpg

from gateway.agents.outbox import Delivery, deliver
from gateway.config import AlertsConfig
from gateway.core import metrics
from gateway.core.periodic import Periodic


def post_json(timeout_s: float, url: str, event: str, body: str) -> None:
    """POST ``body`` (JSON) to ``url``; raises OSError (URLError, HTTPError) unless 2xx."""
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Gateway-Event": event},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:
        if not 200 <= reply.status < 300:
            raise OSError(f"HTTP {reply.status}")


def webhook_delivery(config: AlertsConfig) -> Delivery:
    return Delivery(
        channel="webhook",
        send=partial(post_json, config.timeout_s),
        errors=(OSError, ValueError),
        first_retry_s=config.retry_delay_s,
        max_attempts=config.max_attempts,
        lease_s=max(30.0, config.timeout_s * 3),
        sent=metrics.WEBHOOKS,
        label="webhook",
    )


class WebhookSender(Periodic):
    """Sends the due webhooks every ``alerts.send_interval_s``."""

    name = "webhooks"

    def __init__(self, pool: asyncpg.Pool, config: AlertsConfig) -> None:
        super().__init__(config.send_interval_s)
        self.pool = pool
        self.delivery = webhook_delivery(config)

    async def step(self) -> None:
        await deliver(self.pool, self.delivery)
