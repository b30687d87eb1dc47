"""The sweeper: ends calls whose hold outlived its deadline (no Stop ever came).

An answered call is settled at its held time (its grant in whole mode: the switch
was told to cut it there) or released free, per ``balance.orphan_policy``; a hold
whose call was never answered is released ``balance.setup_timeout_s`` after it was
made. Every gateway may sweep: the scripts are idempotent, so two sweepers
ending the same session charge it once.
"""

from __future__ import annotations

import logging
import time

from gateway.balance import fields
from gateway.balance.redisconn import redis_errors
from gateway.balance.store import BalanceStore, SessionEnded, UnknownSession
from gateway.balance.types import CallEnd
from gateway.core import metrics
from gateway.core.periodic import Periodic

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
ORPHAN_CAUSE = "orphan-swept"


class Sweeper(Periodic):
    """Periodically ends overdue sessions on every shard."""

    name = "sweeper"

    def __init__(self, store: BalanceStore) -> None:
        super().__init__(store.config.sweep_interval_s)
        self.store = store
        self.settled = 0
        self.released = 0

    async def step(self) -> None:
        await self.sweep()

    async def sweep(self, now: float | None = None) -> int:
        """End every session overdue at ``now``; return how many were ended."""
        moment = time.time() if now is None else now
        ended = 0
        keys = self.store.keys
        client = self.store.pipeliner.client
        for shard in range(keys.shards):
            with redis_errors():
                due = await client.zrangebyscore(
                    keys.due(shard), "-inf", moment, start=0, num=SWEEP_BATCH
                )
            for raw in due:
                session = raw.decode() if isinstance(raw, bytes) else str(raw)
                ended += await self._end(session, shard)
        return ended

    async def _end(self, session: str, shard: int) -> int:
        client = self.store.pipeliner.client
        with redis_errors():
            state, granted, held, answered_at = await client.hmget(
                session, [fields.STATE, fields.GRANTED, fields.HELD_S, fields.ANSWERED_AT]
            )
        try:
            if state == fields.ANSWERED and self.store.config.orphan_policy == "settle":
                # Billed for the time held (the grant in whole mode): a slice call's
                # keeper stopped extending, so no more than that was covered.
                start = float(answered_at or 0)
                seconds = int(held or granted or 0)
                end = CallEnd(disconnect_at=start + seconds, cause=ORPHAN_CAUSE, connect_at=start)
                settled = await self.store.settle_key(session, shard, seconds, end)
                if settled.duplicate:
                    return 0  # another gateway's sweeper ended it a moment ago
                self.settled += 1
                metrics.ORPHANS_SWEPT.labels("settled").inc()
            elif state is None:
                # The session is gone (expired or removed): only its index entry is left.
                with redis_errors():
                    await client.zrem(self.store.keys.due(shard), session)
                return 0
            else:
                if not await self.store.release_key(session, shard):
                    return 0  # already ended, by another gateway's sweeper or the call
                self.released += 1
                metrics.ORPHANS_SWEPT.labels("released").inc()
        except (UnknownSession, SessionEnded):
            return 0
        log.info("sweeper.ended", extra={"session": session, "state": str(state)})
        return 1
