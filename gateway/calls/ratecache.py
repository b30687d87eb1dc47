"""The rates every gateway rates calls with, kept in step with PostgreSQL.

A ``GroupCache`` (``gateway.db.group_cache``) over the ``gateway_rates`` channel
(migration 0003's triggers): the call path reads ``RateCache.index``, a
``RatingIndex`` swapped whole on every change.
"""

from __future__ import annotations

import asyncpg

from gateway.db.group_cache import GroupCache
from gateway.db.rates import CHANNEL, load_tables
from gateway.rating import RateTable, RatingIndex


class RateCache(GroupCache[RateTable, RatingIndex]):
    """The current ``RatingIndex``, reloaded per changed rate group."""

    def __init__(self, pool: asyncpg.Pool, database_url: str, **timing: float) -> None:
        super().__init__("rates", pool, database_url, CHANNEL, load_tables, RatingIndex, **timing)
