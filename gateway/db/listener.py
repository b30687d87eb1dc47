"""LISTEN on a PostgreSQL channel, on a dedicated connection that comes back.

Notifications are handed to ``on_notify(payload)``. When the connection drops,
it reconnects with backoff and calls ``on_reconnect()``: notifications sent while
it was away are lost, so the owner reloads everything then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class NotifyListener:
    """Keeps one LISTEN connection alive and forwards its notifications."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_reconnect: Callable[[], Awaitable[None]],
        check_interval_s: float = 1.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.check_interval_s = check_interval_s
        self.reconnects = 0
        self._conn: asyncpg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        """Connect and LISTEN (raising if PostgreSQL is not there), then keep it up."""
        await self._connect()
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=5)
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(self.channel, self._forward)
        self._conn = conn
        self._lost.clear()

    def _forward(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.on_notify(str(payload))

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.check_interval_s)
            conn = self._conn
            if conn is not None and not conn.is_closed() and not self._lost.is_set():
                continue
            log.warning("db.listen.lost", extra={"channel": self.channel})
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = 0.1
        while True:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._conn = None
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("db.listen.retry", extra={"channel": self.channel, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            self.reconnects += 1
            log.info("db.listen.back", extra={"channel": self.channel})
            await self.on_reconnect()
            return
