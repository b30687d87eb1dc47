"""The rates every gateway rates calls with, kept in step with PostgreSQL.

At start ``RateCache`` LISTENs on ``gateway_rates`` on a connection of its own
(``gateway.db.listener``), then loads every rate group, so a change committed in
between is not missed. The triggers of migration 0003 send the ids of the rate
groups each committed statement changed; the cache reloads only those (all of them
on ``*``), coalescing bursts, and swaps in a new ``RatingIndex`` in one assignment:
the index the call path holds is never changed under it. Tables are built in a
worker thread. When the LISTEN connection drops, it comes back with backoff and
the cache reloads everything, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from gateway.db.listener import NotifyListener
from gateway.db.pool import pg_errors
from gateway.db.rates import CHANNEL, RELOAD_ALL, load_tables
from gateway.rating import RateTable, RatingIndex

log = logging.getLogger(__name__)


class RateCache:
    """Service holding the current ``RatingIndex``; see the module docstring."""

    name = "rates"

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        *,
        coalesce_s: float = 0.05,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        check_interval_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.coalesce_s = coalesce_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.full_loads = 0  # counters for metrics and tests
        self.group_loads = 0
        self._index = RatingIndex()
        self._listener = NotifyListener(
            database_url, CHANNEL, self._on_notify, self._on_reconnect, check_interval_s
        )
        self._wake = asyncio.Event()
        self._pending: set[int] = set()
        self._pending_all = False
        self._task: asyncio.Task[None] | None = None

    @property
    def index(self) -> RatingIndex:
        """The current index; a reload replaces it, never changes it."""
        return self._index

    @property
    def reconnects(self) -> int:
        """How many times the LISTEN connection came back after a drop."""
        return self._listener.reconnects

    async def start(self) -> None:
        """LISTEN, then load everything: a change committed in between is not missed."""
        with pg_errors():
            await self._listener.start()
        try:
            await self._load_all()
        except BaseException:
            await self._listener.stop()
            raise
        self._task = asyncio.create_task(self._reload_loop(), name="ratecache.reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._listener.stop()

    def _on_notify(self, payload: str) -> None:
        parts = payload.split(",")
        if payload == RELOAD_ALL or not all(p.isascii() and p.isdigit() for p in parts):
            self._request(None)  # a payload we do not understand also reloads everything
            return
        self._request({int(p) for p in parts})

    async def _on_reconnect(self) -> None:
        # Notifications sent while the connection was down are lost: reload everything.
        self._request(None)

    def request_reload(self) -> None:
        """Reload every group soon, off the call path (SIGHUP)."""
        self._request(None)

    def _request(self, group_ids: set[int] | None) -> None:
        """Queue a reload of ``group_ids`` (everything when None) for the reload task."""
        if group_ids is None:
            self._pending_all = True
        else:
            self._pending.update(group_ids)
        self._wake.set()

    async def _reload_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.coalesce_s)  # let a burst of statements arrive
            self._wake.clear()
            reload_all, groups = self._pending_all, self._pending
            self._pending_all, self._pending = False, set()
            try:
                if reload_all:
                    await self._load_all()
                else:
                    await self._load_groups(groups)
                delay = self.retry_initial_s
            except Exception:
                # The old index keeps serving; the same work is retried after a pause.
                log.exception("rates.reload_failed", extra={"retry_in_s": round(delay, 3)})
                self._request(None if reload_all else groups)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _load_all(self) -> None:
        started = time.perf_counter()
        with pg_errors():
            async with self.pool.acquire() as conn:
                tables = await load_tables(conn, None)
        self._index = RatingIndex(tables)
        self.full_loads += 1
        log.info(
            "rates.loaded",
            extra={
                "groups": len(tables),
                "rates": sum(len(t) for t in tables.values()),
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    async def _load_groups(self, group_ids: set[int]) -> None:
        started = time.perf_counter()
        with pg_errors():
            async with self.pool.acquire() as conn:
                tables = await load_tables(conn, group_ids)
        merged: dict[int, RateTable] = dict(self._index)
        for group_id in group_ids:
            if group_id in tables:
                merged[group_id] = tables[group_id]
            else:
                merged.pop(group_id, None)  # the group was deleted
        self._index = RatingIndex(merged)
        self.group_loads += 1
        log.info(
            "rates.reloaded",
            extra={
                "groups": sorted(group_ids)[:20],
                "group_count": len(group_ids),
                "rates": sum(len(t) for t in tables.values()),
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
