"""Routes kept in step with PostgreSQL, and the route of one call.

``RouteCache`` mirrors ``gateway.ratecache.RateCache``: LISTEN on ``gateway_routes``
first, then load everything, so a change committed in between is not missed; a
notification reloads the rate groups it names (everything on ``*``, on a payload
it cannot read, and after the LISTEN connection came back), bursts coalesced; the
index is swapped in one assignment.

``Router`` picks the gateways of a call: the caller's rate group (found the way the
authorization will find it), the longest matching prefix of the normalized number,
else the configured default route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from gateway.authz.directory import Directory
from gateway.authz.identify import Credentials, identify
from gateway.authz.reasons import Refusal
from gateway.calls import Party, Policy
from gateway.db.listener import NotifyListener
from gateway.db.pool import pg_errors
from gateway.db.routes import CHANNEL, RELOAD_ALL, load_tables
from gateway.routes import Gateway, RouteIndex, ordered

log = logging.getLogger(__name__)


class RouteCache:
    """Service holding the current ``RouteIndex``; see the module docstring."""

    name = "routes"

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        *,
        coalesce_s: float = 0.05,
        retry_s: float = 1.0,
        check_interval_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.coalesce_s = coalesce_s
        self.retry_s = retry_s
        self.loads = 0
        self._index = RouteIndex()
        self._listener = NotifyListener(
            database_url, CHANNEL, self._on_notify, self._on_reconnect, check_interval_s
        )
        self._wake = asyncio.Event()
        self._pending: set[int] | None = set()  # None: everything
        self._task: asyncio.Task[None] | None = None

    @property
    def index(self) -> RouteIndex:
        return self._index

    async def start(self) -> None:
        with pg_errors():
            await self._listener.start()
        try:
            await self._load(None)
        except BaseException:
            await self._listener.stop()
            raise
        self._task = asyncio.create_task(self._reload_loop(), name="routes.reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._listener.stop()

    def request_reload(self, group_ids: set[int] | None = None) -> None:
        """Reload ``group_ids`` (everything when None) soon, off the call path."""
        if group_ids is None or self._pending is None:
            self._pending = None
        else:
            self._pending |= group_ids
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
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.coalesce_s)
            self._wake.clear()
            groups, self._pending = self._pending, set()
            try:
                await self._load(groups)
            except Exception:
                log.exception("routes.reload_failed", extra={"retry_in_s": self.retry_s})
                self.request_reload(groups)
                await asyncio.sleep(self.retry_s)

    async def _load(self, group_ids: set[int] | None) -> None:
        with pg_errors():
            async with self.pool.acquire() as conn:
                tables = await load_tables(conn, group_ids)
        if group_ids is None:
            merged = tables
        else:
            merged = dict(self._index)
            for group_id in group_ids:
                merged.pop(group_id, None)
            merged.update(tables)
        self._index = RouteIndex(merged)
        self.loads += 1
        log.info(
            "routes.loaded",
            extra={
                "groups": "all" if group_ids is None else sorted(group_ids)[:20],
                "routes": sum(len(t) for t in tables.values()),
            },
        )


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: its normalized number and the gateways to try, in order.

    No gateways: the destination has no route (or its prefix is blocked).
    """

    number: str
    gateways: tuple[Gateway, ...]


class RouteSource(Protocol):
    """Anything with a current ``RouteIndex`` (the cache, or a fixed one in tests)."""

    @property
    def index(self) -> RouteIndex: ...


class Router:
    """Routes calls over the directory and the routes; see the module docstring."""

    def __init__(
        self, directory: Directory, routes: RouteSource, default: Sequence[Gateway]
    ) -> None:
        self.directory = directory
        self.routes = routes
        self.default = tuple(default)

    def route(self, party: Party, policy: Policy, call_id: str) -> Route | None:
        """The route of a call; None when the caller is not known (the authorization
        then refuses it with the right reason)."""
        account_id = self._caller(party, policy)
        if account_id is None:
            return None
        number = policy.number(party.called)
        account = self.directory.account(account_id)
        if number is None or account is None:
            return Route(number or "", ())
        found = None
        if account.rate_group_id is not None:
            found = self.routes.index.lookup(account.rate_group_id, number)
        if found is None:
            found = self.default
        return Route(number, ordered(found, call_id))

    def _caller(self, party: Party, policy: Policy) -> int | None:
        # Who the authorization will bill, without its checks (secret, status):
        # those belong to it and give the refusal its reason.
        caller = identify(
            self.directory,
            username=party.username,
            caller_number=policy.number(party.calling or party.username),
            credentials=Credentials(),
            order=policy.order,
            accounting=True,
        )
        return None if isinstance(caller, Refusal) else caller.account_id
