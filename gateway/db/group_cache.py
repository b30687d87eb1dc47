"""An index of per-rate-group tables kept in step with PostgreSQL (rates, routes).

At start the cache LISTENs on its channel on a connection of its own
(``gateway.db.listener``), then loads every group, so a change committed in between
is not missed. The triggers (migrations 0003 and 0005) send the ids of the rate
groups each committed statement changed; the cache reloads only those (all of them
on ``*`` or on a payload it cannot read), coalescing bursts, and swaps in a new
index in one assignment: the index the call path holds is never changed under it.
A failed reload keeps the old index serving and is retried with backoff. When the
LISTEN connection drops, it comes back with backoff and the cache reloads
everything, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

import asyncpg

from gateway.db import Connection
from gateway.db.listener import NotifyListener
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

RELOAD_ALL = "*"
Table = TypeVar("Table")
Index = TypeVar("Index")
# Loads the tables of the given groups (every group when None), by group id.
Loader = Callable[[Connection, set[int] | None], Awaitable[dict[int, Table]]]


class GroupCache(Generic[Table, Index]):
    """A service holding the current index over per-group tables; see the module
    docstring. ``name`` names the service and its log events (``<name>.loaded``)."""

    def __init__(
        self,
        name: str,
        pool: asyncpg.Pool,
        database_url: str,
        channel: str,
        load: Loader[Table],
        make_index: Callable[[Mapping[int, Table]], Index],
        *,
        coalesce_s: float = 0.05,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        check_interval_s: float = 1.0,
    ) -> None:
        self.name = name
        self.pool = pool
        self.load = load
        self.make_index = make_index
        self.coalesce_s = coalesce_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.full_loads = 0  # counters for metrics and tests
        self.group_loads = 0
        self._tables: dict[int, Table] = {}
        self._index = make_index({})
        self._listener = NotifyListener(
            database_url, channel, self._on_notify, self._on_reconnect, check_interval_s
        )
        self._wake = asyncio.Event()
        self._pending: set[int] = set()
        self._pending_all = False
        self._task: asyncio.Task[None] | None = None

    @property
    def index(self) -> Index:
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
            await self._load(None)
        except BaseException:
            await self._listener.stop()
            raise
        self._task = asyncio.create_task(self._reload_loop(), name=f"{self.name}.reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._listener.stop()

    def request_reload(self, group_ids: set[int] | None = None) -> None:
        """Reload ``group_ids`` (everything when None) soon, off the call path."""
        if group_ids is None:
            self._pending_all = True
        else:
            self._pending.update(group_ids)
        self._wake.set()

    def _on_notify(self, payload: str) -> None:
        parts = payload.split(",")
        if payload == RELOAD_ALL or not all(p.isascii() and p.isdigit() for p in parts):
            self.request_reload(None)
        else:
            self.request_reload({int(p) for p in parts})

    async def _on_reconnect(self) -> None:
        self.request_reload(None)  # notifications sent while away are lost

    async def _reload_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.coalesce_s)  # let a burst of statements arrive
            self._wake.clear()
            reload_all, groups = self._pending_all, self._pending
            self._pending_all, self._pending = False, set()
            try:
                await self._load(None if reload_all else groups)
                delay = self.retry_initial_s
            except Exception:
                # The old index keeps serving; the same work is retried after a pause.
                log.exception(f"{self.name}.reload_failed", extra={"retry_in_s": round(delay, 3)})
                self.request_reload(None if reload_all else groups)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _load(self, group_ids: set[int] | None) -> None:
        started = time.perf_counter()
        with pg_errors():
            async with self.pool.acquire() as conn:
                tables = await self.load(conn, group_ids)
        if group_ids is None:
            merged = tables
            self.full_loads += 1
        else:
            merged = dict(self._tables)
            for group_id in group_ids:
                merged.pop(group_id, None)  # a group the reload does not find was deleted
            merged.update(tables)
            self.group_loads += 1
        self._tables = merged
        self._index = self.make_index(merged)
        log.info(
            f"{self.name}.loaded" if group_ids is None else f"{self.name}.reloaded",
            extra={
                "groups": "all" if group_ids is None else sorted(group_ids)[:20],
                "tables": len(tables),
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
