"""The slice keeper: answered slice-mode calls get their next slice before the held
time runs out, and a call that could not get one is hung up when it does.

Each shard's ``slices`` set scores a session by when it needs looking at: its held
time less ``balance.slice_lead_s`` (extend it), or, once cut, the end of its held
time (tell the switch to hang up). Every gateway may run a keeper: an extension
only grows a hold that is short of what the call needs, and a hang-up is claimed
once per call (``BalanceStore.claim_cut``), so two keepers never double either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.balance.store import BalanceStore, SessionEnded, UnknownSession
from gateway.calls.types import Hangup
from gateway.core import metrics
from gateway.core.periodic import Periodic

log = logging.getLogger(__name__)

KEEP_BATCH = 500


class SliceKeeper(Periodic):
    """Every ``balance.slice_check_s``: extend what is due, hang up what ran out."""

    name = "slice-keeper"

    def __init__(self, store: BalanceStore, hangup: Callable[[], Hangup | None]) -> None:
        super().__init__(store.config.slice_check_s)
        self.store = store
        self.hangup = hangup  # read at each use: the front sets it once it is up
        self.extended = 0
        self.hung_up = 0

    async def step(self) -> None:
        await self.check()

    async def check(self, now: float | None = None) -> int:
        """Look at every session due at ``now``; return how many were hung up."""
        moment = time.time() if now is None else now
        hung_up = 0
        for shard in range(self.store.keys.shards):
            for session in await self.store.due_slices(shard, moment, KEEP_BATCH):
                hung_up += await self._keep(session, shard, moment)
        return hung_up

    async def _keep(self, session: str, shard: int, now: float) -> int:
        store = self.store
        try:
            extended = await store.extend_key(session, shard, now=now)
        except (UnknownSession, SessionEnded):
            await store.forget_slice(session, shard)
            return 0
        if extended.grew:
            self.extended += 1
            metrics.child(metrics.SLICES, "extended").inc()
        if not extended.cut or extended.cut_at > now:
            return 0
        metrics.child(metrics.SLICES, "cut").inc()
        reach = await store.claim_cut(session, shard)
        if reach is None:
            return 0  # another gateway's keeper (or the Interim) has it
        hangup = self.hangup()
        if hangup is None or not reach:
            log.warning("credit.cut_unreachable", extra={"session": session})
            return 0
        log.info(
            "credit.exhausted",
            extra={"session": session, "held_s": extended.held_s, "granted_s": extended.granted_s},
        )
        await hangup(reach)
        self.hung_up += 1
        return 1
