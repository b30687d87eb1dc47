"""The asyncpg pool, and the one place where asyncpg errors become ours."""

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
)


@contextlib.contextmanager
def pg_errors() -> Iterator[None]:
    """Turn connection-level asyncpg/OS errors into ``BackendUnavailable('postgresql')``."""
    try:
        yield
    except asyncpg.exceptions._base.DataError:
        raise  # a value asyncpg cannot encode: a bug in the caller, not an outage
    except _UNAVAILABLE as exc:
        metrics.BACKEND_ERRORS.labels("postgresql").inc()
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
    log.info("db.pool.open", extra={"url": mask_url(url), "max": config.pool_max})
    return pool
