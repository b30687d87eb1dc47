"""The carrier routes of every rate group, kept in step with PostgreSQL.

A ``GroupCache`` (``gateway.db.group_cache``) over the ``gateway_routes`` channel
(migration 0005's triggers): ``Calls`` reads ``RouteCache.index``, a ``RouteIndex``
swapped whole on every change, to route the calls the SIP front authorizes.
"""

from __future__ import annotations

import asyncpg

from gateway.db.carriers import CHANNEL, load_tables
from gateway.db.group_cache import GroupCache
from gateway.rating.carriers import RouteIndex, RouteTable


class RouteCache(GroupCache[RouteTable, RouteIndex]):
    """The current ``RouteIndex``, reloaded per changed rate group."""

    def __init__(self, pool: asyncpg.Pool, database_url: str, **timing: float) -> None:
        super().__init__("routes", pool, database_url, CHANNEL, load_tables, RouteIndex, **timing)
