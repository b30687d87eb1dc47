"""The committer: drains the settlement streams into PostgreSQL, exactly once, in batches.

Every shard's settlement stream has a consumer group ``committer``. A committer
reads entries (its own pending ones first after a restart, then new ones, and now
and then those a dead committer left pending), writes each batch in one PostgreSQL
transaction (``cdr_writer``), and only then acknowledges and deletes the entries,
both in one MULTI, so the stream holds exactly what PostgreSQL does not have yet.

Failure handling:
- PostgreSQL unavailable: the same batch is retried every ``retry_delay_s``; the
  entries stay pending in Redis (the stream is the spool).
- A malformed entry is copied to the shard's dead-letter stream with its id and
  the reason, then acknowledged: never dropped silently, never blocking others.
- A batch refused for one bad row (constraint or data error) is committed again
  entry by entry, and the bad entry is dead-lettered.
- A deadlock, serialization failure or statement timeout counts as an outage.
While one batch is written, the next is read and parsed, so Python and PostgreSQL
work at the same time.
A committer killed at any moment loses nothing: what it had not acknowledged is
read again, and the CDR key makes writing it twice a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg
import asyncpg.exceptions
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.config import CommitterConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.db import pool as db_pool
from gateway.settlement.cdr_row import (
    CdrRow,
    StreamEntry,
    dead_letter_fields,
    months_of,
    parse_entry,
)
from gateway.settlement.cdr_writer import BatchResult, Method, ensure_partition, write_batch
from gateway.settlement.commit_wait import CommitWaiters, commit_message

log = logging.getLogger(__name__)

GROUP = "committer"
READ_BLOCK_MS = 100
CLUSTER_POLL_S = 0.02  # on a cluster, how long an empty read waits before the next
LINGER_S = 0.005  # a small batch waits this long for company (group commit)
PARSE_SLICE = 50  # settlements checked between two turns of the event loop
FORGET_IDLE_S = 3600.0  # a consumer with nothing pending, idle this long, is removed

# A batch refused because of what is in it: retried entry by entry to find the bad one.
_REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ProgramLimitExceededError,  # e.g. a key too long for its index
    asyncpg.exceptions._base.DataError,  # an argument asyncpg could not encode
)
# Refused for now, fine later: treated like an outage.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,  # statement timeout, shutdown
)


class RowsRejected(Exception):
    """PostgreSQL refused the batch because of a row in it (constraint, bad value)."""


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Committer:
    """Moves settlements from the Redis streams into PostgreSQL (service ``committer``)."""

    name = "committer"

    def __init__(
        self,
        config: CommitterConfig,
        redis: RedisClient,
        pool: asyncpg.Pool,
        keys: Keys,
        consumer: str | None = None,
        *,
        method: Method = "json",
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.redis = redis
        self.pool = pool
        self.keys = keys
        self.consumer = consumer or default_consumer()
        self.method: Method = method
        self.drain_timeout_s = drain_timeout_s
        self.streams = tuple(keys.settlements(s) for s in range(keys.shards))
        self.dead_streams = {
            keys.settlements(s): keys.dead_settlements(s) for s in range(keys.shards)
        }
        self.channels = {keys.settlements(s): keys.commits_channel(s) for s in range(keys.shards)}
        self.cluster = isinstance(redis, RedisCluster)
        self.waiters = CommitWaiters(
            redis, channels=tuple(self.channels.values()), consumer=self.consumer
        )
        # Counters (metrics come later).
        self.batches = 0
        self.rows = 0  # CDRs inserted
        self.ledger_rows = 0
        self.duplicates = 0  # entries PostgreSQL already had
        self.retries = 0  # failed attempts at a batch
        self.dead_lettered = 0
        self.claimed = 0
        self.read_errors = 0
        self._months: set[date] = set()
        self._groups_ready = False
        self._pending_done = False
        self._next_claim = 0.0
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[int] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer groups (fails fast if Redis is not there), then run."""
        await self.ensure_groups()
        self._draining = False
        self._next_claim = 0.0  # a restarted committer (new pid) claims its old entries
        self._task = asyncio.create_task(self._run(), name="committer")
        log.info(
            "committer.started", extra={"consumer": self.consumer, "streams": len(self.streams)}
        )

    async def stop(self) -> None:
        """Stop reading once the streams are drained, within ``drain_timeout_s``."""
        task, self._task = self._task, None
        if task is not None:
            self._draining = True
            done, _ = await asyncio.wait({task}, timeout=self.drain_timeout_s)
            if not done:
                log.error("committer.drain_timeout", extra={"consumer": self.consumer})
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.waiters.close()
        log.info("committer.stopped", extra={"consumer": self.consumer, "rows": self.rows})

    async def wait_committed(self, stream: str, entry_id: str, timeout_s: float) -> bool:
        """True once PostgreSQL holds the entry's call; False after ``timeout_s``
        (or if the entry was dead-lettered). Entries committed before the call, or
        by another committer, are found too (they have left the stream)."""
        return await self.waiters.wait(stream, entry_id, timeout_s)

    async def process_available(self) -> int:
        """Commit everything readable now: own pending entries, then new ones.

        Returns how many entries were handled. For tests and a final flush; not to be
        called while the service runs.
        """
        await self.ensure_groups()
        handled = await self.process_pending()
        while items := await self._read({s: ">" for s in self.streams}, block_ms=None):
            handled += await self._commit_chunks(items)
        return handled

    async def ensure_groups(self) -> None:
        """XGROUP CREATE on every shard stream (MKSTREAM; an existing group is fine)."""
        with redis_errors():
            for stream in self.streams:
                try:
                    await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except redis.exceptions.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        self._groups_ready = True

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            if self._writing is not None:  # stopped by cancellation: the batch stays pending
                self._writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writing
                self._writing = None

    async def _loop(self) -> None:
        while True:
            try:
                if await self._step():
                    return
            except BackendUnavailable as exc:
                self.read_errors += 1
                log.warning("committer.backend_unavailable", extra={"error": str(exc)})
                await asyncio.sleep(self.config.retry_delay_s)
            except redis.exceptions.ResponseError as exc:
                self.read_errors += 1
                if "NOGROUP" in str(exc):  # the stream was deleted: recreate the group
                    self._groups_ready = False
                else:
                    log.exception("committer.redis_error")
                await asyncio.sleep(self.config.retry_delay_s)
            except Exception:
                self.read_errors += 1
                log.exception("committer.loop_error")
                await asyncio.sleep(self.config.retry_delay_s)

    async def _step(self) -> bool:
        """One turn of the loop; True when draining and nothing is left."""
        if not self._groups_ready:
            await self.ensure_groups()
        if not self._pending_done:
            await self.process_pending()
            self._pending_done = True
        if not self._draining and time.monotonic() >= self._next_claim:
            await self._wait_writing()
            await self.claim_idle()
            self._next_claim = time.monotonic() + self._claim_every_s()
        block = None if self._draining else READ_BLOCK_MS
        # The next batch is read and parsed while the previous one is being written:
        # Python and PostgreSQL then work at the same time.
        items = await self._read({s: ">" for s in self.streams}, block_ms=block)
        small = bool(items) and len(items) < self.config.batch_size
        if small and not self._draining:
            # Group commit: a few milliseconds for more settlements to arrive. A
            # transaction costs PostgreSQL (and this process) far more than a row, and
            # at a few hundred calls a second most would otherwise hold one or two.
            await asyncio.sleep(LINGER_S)
        await self._wait_writing()
        if small:
            # What arrived meanwhile (and while the previous batch was written) joins.
            items += await self._read({s: ">" for s in self.streams}, block_ms=None)
        if items:
            self._writing = asyncio.create_task(self._commit_chunks(items))
            return False
        return self._draining

    async def _wait_writing(self) -> None:
        task, self._writing = self._writing, None
        if task is not None:
            await task

    def _claim_every_s(self) -> float:
        return max(0.5, self.config.claim_idle_s / 2)

    async def process_pending(self) -> int:
        """Commit the entries this consumer read before and never acknowledged."""
        cursors = {s: "0" for s in self.streams}
        handled = 0
        while cursors:
            items = await self._read(cursors, block_ms=None)
            if not items:
                break
            for stream in list(cursors):
                ids = [i.entry_id for i in items if i.stream == stream]
                if ids:
                    cursors[stream] = ids[-1]
                else:
                    del cursors[stream]
            handled += await self._commit_chunks(items)
        if handled:
            log.info("committer.pending_resumed", extra={"entries": handled})
        return handled

    async def claim_idle(self, min_idle_s: float | None = None) -> int:
        """Take over and commit entries other consumers left pending for too long."""
        idle_ms = int(1000 * (self.config.claim_idle_s if min_idle_s is None else min_idle_s))
        handled = 0
        for stream in self.streams:
            start = "0-0"
            while True:
                with redis_errors():
                    reply = await self.redis.xautoclaim(
                        stream,
                        GROUP,
                        self.consumer,
                        idle_ms,
                        start_id=start,
                        count=self.config.batch_size,
                    )
                start = _text(reply[0])
                items = [parse_entry(stream, _text(i), f) for i, f in reply[1] if i is not None]
                if items:
                    self.claimed += len(items)
                    log.warning(
                        "committer.claimed", extra={"stream": stream, "entries": len(items)}
                    )
                    handled += await self._commit_chunks(items)
                if start == "0-0":
                    break
            await self._forget_idle_consumers(stream)
        return handled

    async def _forget_idle_consumers(self, stream: str) -> None:
        """Remove consumers with nothing pending, idle for long: every restart of a
        committer adds one (the default name holds the pid)."""
        with redis_errors():
            consumers = await self.redis.xinfo_consumers(stream, GROUP)
            for consumer in consumers:
                name = _text(consumer["name"])
                idle_s = int(consumer["idle"]) / 1000
                if name != self.consumer and consumer["pending"] == 0 and idle_s > FORGET_IDLE_S:
                    await self.redis.xgroup_delconsumer(stream, GROUP, name)

    async def _read(self, cursors: dict[str, str], block_ms: int | None) -> list[StreamEntry]:
        by_stream: Any
        if self.cluster:
            by_stream = await self._read_each(cursors, block_ms)
        else:
            streams: dict[Any, Any] = dict(cursors)
            with redis_errors():
                reply: Any = await self.redis.xreadgroup(
                    GROUP, self.consumer, streams, count=self.config.batch_size, block=block_ms
                )
            by_stream = reply.items() if isinstance(reply, dict) else reply or []
        return await self._parse(by_stream)

    async def _read_each(self, cursors: dict[str, str], block_ms: int | None) -> list[Any]:
        """A cluster refuses one read of streams in several slots: one XREADGROUP per
        stream, sent as one pipeline per node. Nothing there: wait a little, as a
        blocking read would (a blocking read per stream would hold a connection each)."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for stream, cursor in cursors.items():
                pipe.xreadgroup(
                    GROUP, self.consumer, {stream: cursor}, count=self.config.batch_size
                )
            replies = await pipe.execute()
        found: list[Any] = []
        for reply in replies:
            found.extend(reply.items() if isinstance(reply, dict) else reply or [])
        if not found and block_ms:
            await asyncio.sleep(min(block_ms / 1000, CLUSTER_POLL_S))
        return found

    async def _parse(self, by_stream: Any) -> list[StreamEntry]:
        items: list[StreamEntry] = []
        entries: Any
        for stream, entries in by_stream:
            if entries and isinstance(entries[0], list):  # RESP3 wraps the list once more
                entries = entries[0]
            name = _text(stream)
            for start in range(0, len(entries), PARSE_SLICE):
                if start:
                    # The call path shares this event loop: a batch of 500 takes tens
                    # of ms to check, so requests get their turn between slices.
                    await asyncio.sleep(0)
                items.extend(
                    parse_entry(name, _text(i), f) for i, f in entries[start : start + PARSE_SLICE]
                )
        return items

    # -- one batch -----------------------------------------------------------------------

    async def _commit_chunks(self, items: Sequence[StreamEntry]) -> int:
        size = self.config.batch_size
        for start in range(0, len(items), size):
            await self._commit(items[start : start + size])
        return len(items)

    async def _commit(self, items: Sequence[StreamEntry]) -> None:
        """Commit one batch, retrying through outages until it is stored."""
        refs = [i.ref for i in items]
        self.waiters.taken(refs)
        try:
            while True:
                try:
                    await self._commit_once(items)
                    return
                except BackendUnavailable as exc:
                    self.retries += 1
                    log.warning(
                        "committer.batch_retry",
                        extra={"error": str(exc), "entries": len(items), "retries": self.retries},
                    )
                except Exception:
                    self.retries += 1
                    log.exception("committer.batch_failed", extra={"entries": len(items)})
                await asyncio.sleep(self.config.retry_delay_s)
        finally:
            self.waiters.released(refs)

    async def _commit_once(self, items: Sequence[StreamEntry]) -> None:
        good = [i for i in items if i.row is not None and not i.error]
        if good:
            await self._ensure_partitions([i.row for i in good if i.row is not None])
            try:
                self._count(await self._write(good))
            except RowsRejected as exc:
                log.warning("committer.batch_rejected", extra={"error": str(exc)})
                await self._write_each(good)
        await self._finish(items)

    async def _write(self, items: Sequence[StreamEntry]) -> BatchResult:
        rows = [i.row for i in items if i.row is not None]
        with db_pool.pg_errors():
            try:
                started = time.perf_counter()
                async with self.pool.acquire() as conn:
                    result = await write_batch(conn, rows, self.method)
                elapsed = time.perf_counter() - started
                metrics.COMMIT_BATCH_SECONDS.observe(elapsed)
                metrics.BACKEND_SECONDS.labels("postgresql").observe(elapsed)
                return result
            except _REJECTED as exc:
                raise RowsRejected(f"{type(exc).__name__}: {exc}") from exc
            except _TRANSIENT as exc:
                raise BackendUnavailable("postgresql", f"{type(exc).__name__}: {exc}") from exc

    async def _write_each(self, items: Sequence[StreamEntry]) -> None:
        """Commit entry by entry; an entry PostgreSQL refuses alone goes to dead letters."""
        for item in items:
            try:
                self._count(await self._write([item]))
            except RowsRejected as exc:
                item.error = str(exc)
                log.error(
                    "committer.entry_rejected",
                    extra={"stream": item.stream, "id": item.entry_id, "error": item.error},
                )

    def _count(self, result: BatchResult) -> None:
        self.rows += result.cdrs
        self.ledger_rows += result.ledger_rows
        self.duplicates += result.duplicates
        metrics.COMMITTED.labels("committed").inc(result.cdrs)
        metrics.COMMITTED.labels("duplicate").inc(result.duplicates)

    async def _ensure_partitions(self, rows: Sequence[CdrRow]) -> None:
        for month in sorted(months_of(rows) - self._months):
            with db_pool.pg_errors():
                try:
                    async with self.pool.acquire() as conn:
                        await ensure_partition(conn, month)
                except db_pool.UNAVAILABLE:
                    raise  # an outage or failover (pg_errors): the batch is retried
                except asyncpg.exceptions.PostgresError as exc:
                    # Rows then land in cdrs_default, which is acceptable.
                    log.warning(
                        "committer.partition_failed", extra={"month": str(month), "error": str(exc)}
                    )
            self._months.add(month)

    async def _finish(self, items: Sequence[StreamEntry]) -> None:
        """Dead-letter the bad entries, then XACK + XDEL all, one MULTI per stream."""
        dead = [i for i in items if i.error]
        by_stream: dict[str, list[StreamEntry]] = {}
        for item in items:
            by_stream.setdefault(item.stream, []).append(item)
        for entry in dead:
            log.error(
                "committer.dead_letter",
                extra={"stream": entry.stream, "id": entry.entry_id, "error": entry.error},
            )
        with redis_errors():
            for stream, group in by_stream.items():
                ids = [i.entry_id for i in group]
                pipe = self.redis.pipeline(transaction=True)
                for item in group:
                    if item.error:
                        pipe.xadd(self.dead_streams[stream], dead_letter_fields(item))
                pipe.xack(stream, GROUP, *ids)
                pipe.xdel(stream, *ids)
                # The other processes' callers waiting for these calls hear it here.
                committed = [i.entry_id for i in group if not i.error]
                dead_ids = [i.entry_id for i in group if i.error]
                message = commit_message(self.consumer, stream, committed, dead_ids)
                if self.cluster:  # to the shard's own node, not broadcast over the bus
                    pipe.execute_command("SPUBLISH", self.channels[stream], message)
                else:
                    pipe.publish(self.channels[stream], message)
                await pipe.execute()
        self.batches += 1
        self.dead_lettered += len(dead)
        metrics.COMMITTED.labels("dead_letter").inc(len(dead))
        self.waiters.resolve([i.ref for i in items if not i.error], True)
        self.waiters.resolve([i.ref for i in dead], False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
