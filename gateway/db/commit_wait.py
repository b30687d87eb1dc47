"""Group commit: let the caller of settle wait until PostgreSQL holds its call.

The committer resolves the waiters of every entry it commits, right after the
commit. An entry committed before its waiter registered, or by another process's
committer, is found by its absence from the stream: the committer deletes each
entry (atomically with its XACK) once PostgreSQL has it, so "no longer in the
stream" means "committed". That check runs in one pipelined round trip per
``poll_s`` for all waiters not already in this process's committer's hands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

import redis.asyncio as aioredis

from gateway.db.cdr_row import EntryRef
from gateway.errors import BackendUnavailable
from gateway.redisconn import translate_errors

log = logging.getLogger(__name__)


class CommitWaiters:
    """Futures keyed by (stream, entry id), resolved after commit or by a stream check."""

    def __init__(
        self, redis: aioredis.Redis, *, poll_s: float = 0.05, remember: int = 10_000
    ) -> None:
        self.redis = redis
        self.poll_s = poll_s
        self.remember = remember
        self._waiters: dict[EntryRef, tuple[float, list[asyncio.Future[bool]]]] = {}
        self._outcomes: OrderedDict[EntryRef, bool] = OrderedDict()
        self._in_hand: set[EntryRef] = set()
        self._poller: asyncio.Task[None] | None = None
        self._check_failing = False

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, stream: str, entry_id: str, timeout_s: float) -> bool:
        """True once the entry is committed; False on timeout or if it was dead-lettered."""
        ref = (stream, entry_id)
        known = self._outcomes.get(ref)
        if known is not None:
            return known
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        _, futures = self._waiters.setdefault(ref, (time.monotonic(), []))
        futures.append(future)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return False
        finally:
            self._forget(ref, future)

    def taken(self, refs: Iterable[EntryRef]) -> None:
        """This process's committer holds these entries: it will resolve them itself."""
        self._in_hand.update(refs)

    def resolve(self, refs: Iterable[EntryRef], committed: bool) -> None:
        """The entries are done: committed (True) or dead-lettered (False)."""
        for ref in refs:
            self._in_hand.discard(ref)
            self._remember(ref, committed)
            _, futures = self._waiters.pop(ref, (0.0, []))
            for future in futures:
                if not future.done():
                    future.set_result(committed)

    def released(self, refs: Iterable[EntryRef]) -> None:
        """The committer let go of these entries unresolved (it stopped)."""
        self._in_hand.difference_update(refs)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def _remember(self, ref: EntryRef, committed: bool) -> None:
        self._outcomes[ref] = committed
        if len(self._outcomes) > self.remember:
            self._outcomes.popitem(last=False)

    def _forget(self, ref: EntryRef, future: asyncio.Future[bool]) -> None:
        entry = self._waiters.get(ref)
        if entry is None:
            return
        futures = entry[1]
        if future in futures:
            futures.remove(future)
        if not futures:
            del self._waiters[ref]

    async def _poll(self) -> None:
        try:
            while self._waiters:
                await asyncio.sleep(self.poll_s)
                await self._check_stream()
        finally:
            self._poller = None

    async def _check_stream(self) -> None:
        # Only waiters older than one tick: the young ones are usually about to be
        # resolved by the committer of this process, for free.
        cutoff = time.monotonic() - self.poll_s
        refs = [
            ref
            for ref, (since, _) in self._waiters.items()
            if since <= cutoff and ref not in self._in_hand
        ]
        if not refs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, entry_id in refs:
            pipe.xrange(stream, entry_id, entry_id, count=1)
        try:
            with translate_errors():
                replies = await pipe.execute()
        except BackendUnavailable as exc:
            if not self._check_failing:  # once per outage, not every tick
                log.warning("committer.wait_check_failed", extra={"error": str(exc)})
            self._check_failing = True
            return
        self._check_failing = False
        gone = [ref for ref, reply in zip(refs, replies, strict=True) if not reply]
        if gone:
            self.resolve(gone, True)
