"""Group commit: let the caller of settle wait until PostgreSQL holds its call.

The committer resolves the waiters of every entry it commits, right after the
commit, and publishes the batch's entry ids on its shard's channel
(``Keys.commits_channel``): the committers of the other processes (each worker has
one, and any of them may take any entry) hear it and resolve their own waiters.

Publish/subscribe may lose a message (while reconnecting), so an entry still waited
for after ``fallback_s`` is looked up: the committer deletes each entry (atomically
with its XACK) once PostgreSQL has it, so "no longer in the stream" means
"committed". That check runs in one pipelined round trip per ``poll_s`` for the
waiters concerned; while the subscription is down it covers every waiter older than
one tick, as the only way to learn of other processes' commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.core.errors import BackendUnavailable
from gateway.settlement.cdr_row import EntryRef

log = logging.getLogger(__name__)

RESUBSCRIBE_S = 1.0


def commit_message(
    consumer: str, stream: str, committed: Sequence[str], dead: Sequence[str]
) -> str:
    """What a committer publishes after a batch: who, which stream, the entry ids
    committed and those dead-lettered (one line each)."""
    return "\n".join((consumer, stream, " ".join(committed), " ".join(dead)))


class CommitWaiters:
    """Futures keyed by (stream, entry id), resolved after commit: by this process's
    committer, by a message from another's, or by a stream check."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        channels: Sequence[str] = (),
        consumer: str = "",
        poll_s: float = 0.05,
        fallback_s: float = 0.5,
        remember: int = 10_000,
    ) -> None:
        self.redis = redis
        self.channels = tuple(channels)
        self.consumer = consumer  # this process's committer: its messages are skipped
        self.poll_s = poll_s
        self.fallback_s = fallback_s
        self.remember = remember
        self._waiters: dict[EntryRef, tuple[float, list[asyncio.Future[bool]]]] = {}
        self._outcomes: OrderedDict[EntryRef, bool] = OrderedDict()
        self._in_hand: set[EntryRef] = set()
        self._poller: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        self._listen_after = 0.0
        self._check_failing = False
        self.messages = 0  # commit messages heard from other committers

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, stream: str, entry_id: str, timeout_s: float) -> bool:
        """True once the entry is committed; False on timeout or if it was dead-lettered."""
        ref = (stream, entry_id)
        known = self._outcomes.get(ref)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        _, futures = self._waiters.setdefault(ref, (time.monotonic(), []))
        futures.append(future)
        if self._listener is None and self.channels and time.monotonic() >= self._listen_after:
            self._listener = asyncio.create_task(self._listen(), name="commit-listener")
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="commit-poller")
        # A timer rather than asyncio.wait_for: no task and no shield per waiting call.
        timer = loop.call_later(timeout_s, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._forget(ref, future)

    def taken(self, refs: Iterable[EntryRef]) -> None:
        """This process's committer holds these entries: it will resolve them itself."""
        self._in_hand.update(refs)

    def resolve(self, refs: Iterable[EntryRef], committed: bool) -> None:
        """The entries are done: committed (True) or dead-lettered (False)."""
        waiters = self._waiters
        for ref in refs:
            self._in_hand.discard(ref)
            self._remember(ref, committed)
            found = waiters.pop(ref, None)
            if found is not None:
                for future in found[1]:
                    if not future.done():
                        future.set_result(committed)

    def released(self, refs: Iterable[EntryRef]) -> None:
        """The committer let go of these entries unresolved (it stopped)."""
        self._in_hand.difference_update(refs)

    def heard(self, message: bytes | str) -> None:
        """A commit message (``commit_message``) from any committer."""
        text = message.decode() if isinstance(message, bytes) else message
        consumer, stream, committed, dead = text.split("\n")
        if consumer == self.consumer:
            return  # resolved already, by this process's committer
        self.messages += 1
        self.resolve([(stream, entry_id) for entry_id in committed.split()], True)
        self.resolve([(stream, entry_id) for entry_id in dead.split()], False)

    async def close(self) -> None:
        for task in (self._poller, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = self._listener = None
        self._subscribed = False

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

    async def _listen(self) -> None:
        """Hear the committers' messages until the connection fails; a later ``wait``
        subscribes again (after ``RESUBSCRIBE_S``), so nothing reconnects on its own
        once calls stop coming (a client closed at shutdown stays closed).

        On a cluster the messages are sharded (SPUBLISH): each is heard on the primary
        of its channel's slot, so there is one subscription per primary; when one fails
        (its node died, its slots moved) all are dropped and made again later, from the
        slot map of then."""
        pubsubs: list[Any] = []
        try:
            with redis_errors():
                if isinstance(self.redis, RedisCluster):
                    pubsubs = await self._shard_subscriptions(self.redis)
                else:
                    pubsubs = [self.redis.pubsub(ignore_subscribe_messages=True)]
                    await pubsubs[0].subscribe(*self.channels)
                self._subscribed = True
                listening = [asyncio.create_task(self._hear(p)) for p in pubsubs]
                try:
                    done, _ = await asyncio.wait(listening, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in listening:
                        task.cancel()
                    await asyncio.gather(*listening, return_exceptions=True)
                for task in done:
                    task.result()  # the error that ended it, to the handlers below
        except BackendUnavailable as exc:
            log.warning("committer.commit_listener_failed", extra={"error": str(exc)})
        except Exception:
            log.exception("committer.commit_listener_failed")
        finally:
            self._subscribed = False
            self._listener = None
            self._listen_after = time.monotonic() + RESUBSCRIBE_S
            for pubsub in pubsubs:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    if isinstance(self.redis, RedisCluster):  # the node client is ours
                        await pubsub.connection_pool.disconnect()

    async def _shard_subscriptions(self, cluster: RedisCluster) -> list[Any]:
        by_node: dict[str, list[str]] = {}
        nodes: dict[str, Any] = {}
        for channel in self.channels:
            node = cluster.get_node_from_key(channel)
            if node is None:
                raise BackendUnavailable("redis", f"no primary holds the slot of {channel}")
            nodes[node.name] = node
            by_node.setdefault(node.name, []).append(channel)
        pubsubs: list[Any] = []
        for name, channels in by_node.items():
            node = nodes[name]
            # a client of the node's own: a sharded subscription lives on one node
            pool = aioredis.ConnectionPool(
                connection_class=node.connection_class, max_connections=1, **node.connection_kwargs
            )
            client = aioredis.Redis(connection_pool=pool)
            # subscribe messages are seen: the node's own sunsubscribe (its slot moved)
            # must reach _hear, not be swallowed
            pubsub = client.pubsub()
            pubsubs.append(pubsub)
            by_slot: dict[int, list[str]] = {}
            for channel in channels:
                by_slot.setdefault(cluster.keyslot(channel), []).append(channel)
            for same_slot in by_slot.values():  # one SSUBSCRIBE may not cross slots
                await pubsub.ssubscribe(*same_slot)
        return pubsubs

    async def _hear(self, pubsub: Any) -> None:
        with redis_errors():
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message.get("type")
                if kind in ("message", "smessage"):
                    try:
                        self.heard(message["data"])
                    except (ValueError, UnicodeDecodeError) as exc:
                        log.warning("committer.bad_commit_message", extra={"error": str(exc)})
                elif kind == "sunsubscribe":
                    # The slot moved to another node (failover, resharding): subscribe
                    # again, from the new map.
                    raise redis.exceptions.ConnectionError("shard channel moved")

    async def _poll(self) -> None:
        try:
            while self._waiters:
                await asyncio.sleep(self.poll_s)
                await self._check_stream()
        finally:
            self._poller = None

    async def _check_stream(self) -> None:
        # Only waiters older than the fallback delay (one tick without a subscription):
        # the young ones are about to be resolved by a committer, for free.
        cutoff = time.monotonic() - (self.fallback_s if self._subscribed else self.poll_s)
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
            with redis_errors():
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


def _time_out(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
