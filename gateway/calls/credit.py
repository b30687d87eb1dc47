"""The slice keeper: answered slice-mode calls get their next slice before the held
time runs out, and a call that could not get one is hung up when it does.

Each shard's ``slices`` set scores a session by when it needs looking at: its held
time less ``balance.slice_lead_s`` (extend it), or, once cut, the end of its held
time (tell the switch to hang up). Every gateway may run a keeper: an extension
only grows a hold that is short of what the call needs, and a hang-up is claimed
once per call (``BalanceStore.claim_cut``), so two keepers never double either.

A switch that takes CoA (``hangup = "coa"``) is told at once, when the call is
cut, to end it at its held time (Session-Timeout, counted from the answer), claimed
once per call too (``BalanceStore.claim_coa``); when it acknowledges, no
Disconnect-Request follows; when it NAKs or is silent, one does, as for any switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.balance.store import BalanceStore, SessionEnded, UnknownSession
from gateway.calls.types import Hangup, Limit
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.periodic import Periodic

log = logging.getLogger(__name__)

KEEP_BATCH = 500


class SliceKeeper(Periodic):
    """Every ``balance.slice_check_s``: extend what is due, hang up what ran out."""

    name = "slice-keeper"

    def __init__(
        self,
        store: BalanceStore,
        hangup: Callable[[], Hangup | None],
        limit: Callable[[], Limit | None] = lambda: None,
    ) -> None:
        super().__init__(store.config.slice_check_s)
        self.store = store
        self.hangup = hangup  # read at each use: the front sets it once it is up
        self.limit = limit  # likewise
        self.extended = 0
        self.hung_up = 0
        self.limited = 0  # cut calls whose switch acknowledged their Session-Timeout
        # CoA answers take up to seconds: awaited aside, so the keeper keeps its pace.
        self._asking: set[asyncio.Task[None]] = set()

    async def step(self) -> None:
        await self.check()

    async def stop(self) -> None:
        await super().stop()
        # A CoA still waiting for its answer is abandoned: the claim stays, and with no
        # ACK recorded the keeper of any gateway sends the Disconnect at the held time.
        for task in list(self._asking):
            task.cancel()
        await asyncio.gather(*self._asking, return_exceptions=True)

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
        if not extended.cut:
            return 0
        if extended.cut_at > now:
            await self._limit(session, extended.held_s)
            return 0
        metrics.child(metrics.SLICES, "cut").inc()
        reach = await store.claim_cut(session, shard)
        if reach is None:
            return 0  # another gateway's keeper (or the Interim) has it
        if await store.coa_acked(session):
            log.info("credit.ended_by_switch", extra={"session": session})
            return 0  # the switch took the Session-Timeout: it ends the call itself
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

    async def _limit(self, session: str, held_s: int) -> None:
        """A call just cut: tell its switch, once, to end it when its held time is
        over (``held_s`` after the answer), if the front can (``Limit``)."""
        limit = self.limit()
        if limit is None:
            return
        reach = await self.store.claim_coa(session)
        if not reach:
            return  # claimed already (here or by another gateway), or unreachable
        task = asyncio.create_task(self._ask(limit, session, reach, held_s))
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    async def _ask(self, limit: Limit, session: str, reach: str, held_s: int) -> None:
        if not await limit(reach, held_s):
            return  # NAK or silence: the Disconnect-Request goes at the held time
        self.limited += 1
        try:
            await self.store.coa_acked(session, acked=True)
        except BackendUnavailable:
            # Unrecorded, the keeper sends a Disconnect-Request at the held time too:
            # the call ends on time either way.
            log.warning("credit.coa_ack_unrecorded", extra={"session": session})
