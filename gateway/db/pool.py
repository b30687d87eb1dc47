"""The asyncpg pools, and the one place where asyncpg errors become ours.

Failover: ``database.url`` may list several hosts with ``target_session_attrs``; asyncpg
tries them in order for every new connection. When a connection finds its server gone,
or finds it read-only (it reached a standby), every open pool is told to replace its
connections (``expire_connections``) so each new one goes through the host list again
and lands on the promoted primary; the caller meanwhile sees ``BackendUnavailable`` and
retries as it does for any outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import asyncpg

from gateway.config import DatabaseConfig, mask_url
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable, Duplicate, StillReferenced

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now", as opposed to a bug or a
# constraint violation, which must surface as themselves.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx: the connection broke
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, not (yet) promoted
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # no host takes writes yet
)
UNAVAILABLE = _UNAVAILABLE
# Of those, the errors after which the pools' other connections are suspect too (their
# server went away or is a standby): they are replaced, not reused. A timeout or "too
# many connections" says nothing about which server the connections reach.
_STALE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,
    asyncpg.exceptions.InterfaceError,  # mostly "connection is closed": it saw EOF first
)

# The pools create_pool opened and nobody closed yet (asyncpg pools take no weak
# reference), and the expiries under way.
_open_pools: list[asyncpg.Pool] = []
_expiring: set[asyncio.Task[None]] = set()


def expire_pools() -> int:
    """Have every open pool replace its connections: idle ones at their next acquire,
    busy ones when released. Returns how many pools were told."""
    _open_pools[:] = [p for p in _open_pools if not p.is_closing()]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return 0
    for pool in _open_pools:
        task = loop.create_task(pool.expire_connections())
        _expiring.add(task)
        task.add_done_callback(_expiring.discard)
    return len(_open_pools)


@contextlib.contextmanager
def pg_errors() -> Iterator[None]:
    """Turn connection-level asyncpg/OS errors into ``BackendUnavailable('postgresql')``."""
    try:
        yield
    except asyncpg.exceptions._base.DataError:
        raise  # a value asyncpg cannot encode: a bug in the caller, not an outage
    except _UNAVAILABLE as exc:
        metrics.BACKEND_ERRORS.labels("postgresql").inc()
        if isinstance(exc, _STALE) and expire_pools():
            log.warning("db.pool.expired", extra={"reason": f"{type(exc).__name__}: {exc}"})
        raise BackendUnavailable("postgresql", f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def pg_integrity() -> Iterator[None]:
    """Turn the constraint violations a service expects into ours: a unique constraint
    into ``Duplicate``, a foreign key into ``StillReferenced``. Other violations pass
    as they are (a rule the service does not check: the API refuses them with 422)."""
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        raise Duplicate(exc.constraint_name or "", exc.detail or "") from exc
    except asyncpg.exceptions.ForeignKeyViolationError as exc:
        raise StillReferenced(exc.constraint_name or "", exc.detail or "") from exc


async def create_pool(config: DatabaseConfig, url: str) -> asyncpg.Pool:
    """Open the pool; fail with ``BackendUnavailable`` naming the URL when it cannot."""
    with pg_errors():
        pool = await asyncpg.create_pool(
            url,
            min_size=config.pool_min,
            max_size=config.pool_max,
            command_timeout=config.command_timeout_s,
            timeout=config.command_timeout_s,
            server_settings={"application_name": "gateway", "timezone": "UTC"},
        )
    _open_pools.append(pool)
    log.info("db.pool.open", extra={"url": mask_url(url), "max": config.pool_max})
    return pool
