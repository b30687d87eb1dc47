"""Samples the gauges that live in Redis: calls up, money held and credit exposure
per top-level agent, settlement backlog and committer lag. Read every ``gauge_interval_s``, off
the call path; label cardinality is bounded by ``metrics.top_agents``."""

from __future__ import annotations

import contextlib
import logging

from gateway.authz.directory import Directory
from gateway.balance import fields
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.config import MetricsConfig
from gateway.core import metrics
from gateway.core.periodic import Periodic
from gateway.runtime.ops import monotonic_age

log = logging.getLogger(__name__)


class GaugeSampler(Periodic):
    name = "gauges"

    def __init__(
        self, config: MetricsConfig, redis: RedisClient, keys: Keys, directory: Directory
    ) -> None:
        super().__init__(config.gauge_interval_s)
        self.config = config
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self._labelled: set[str] = set()

    async def step(self) -> None:
        await self.sample()

    async def sample(self) -> None:
        """Read everything once and set the gauges."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard in range(self.keys.shards):
                pipe.xlen(self.keys.settlements(shard))
                pipe.xrange(self.keys.settlements(shard), count=1)
            replies = await pipe.execute()
            backlog = sum(int(n) for n in replies[0::2])
            oldest = [entries[0][0] for entries in replies[1::2] if entries]
            metrics.SETTLEMENT_BACKLOG.set(backlog)
            metrics.COMMITTER_LAG.set(max((monotonic_age(i) for i in oldest), default=0.0))
            await self._per_agent()

    async def _per_agent(self) -> None:
        tops = sorted(
            a.id
            for a in self.directory.tables.accounts.values()
            if a.parent_id is None and a.kind == "agent" and a.status != "removed"
        )[: self.config.top_agents]
        if not tops:
            return
        pipe = self.redis.pipeline(transaction=False)
        for agent in tops:
            pipe.hmget(
                self.keys.account(agent, agent), [fields.CALLS, fields.HELD_MICROS, fields.EXPOSURE]
            )
        seen: set[str] = set()
        for agent, (calls, held, exposure) in zip(tops, await pipe.execute(), strict=True):
            label = str(agent)
            seen.add(label)
            metrics.CALLS_UP.labels(label).set(int(calls or 0))
            metrics.MONEY_HELD.labels(label).set(int(held or 0))
            metrics.CREDIT_EXPOSURE.labels(label).set(int(exposure or 0))
        for gone in self._labelled - seen:
            with contextlib.suppress(KeyError):
                metrics.CALLS_UP.remove(gone)
                metrics.MONEY_HELD.remove(gone)
                metrics.CREDIT_EXPOSURE.remove(gone)
        self._labelled = seen
