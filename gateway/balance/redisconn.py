"""The Redis client, and the one place where redis-py errors become ours."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import redis.asyncio as aioredis
import redis.exceptions

from gateway.config import RedisConfig, mask_url
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    OSError,
    TimeoutError,
)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn connection-level redis/OS errors into ``BackendUnavailable('redis')``."""
    try:
        yield
    except _UNAVAILABLE as exc:
        metrics.BACKEND_ERRORS.labels("redis").inc()
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


def create_client(config: RedisConfig, url: str) -> aioredis.Redis:
    """A client whose pool makes callers wait for a connection instead of failing.

    redis-py's default pool raises MaxConnectionsError when more tasks want a
    connection than it has; under a burst of calls that would refuse calls for no
    reason, so the blocking pool is used.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=config.max_connections,
        timeout=config.socket_timeout_s,
        socket_timeout=config.socket_timeout_s,
        socket_connect_timeout=config.socket_timeout_s,
        decode_responses=False,
    )
    log.info("redis.client", extra={"url": mask_url(url), "max": config.max_connections})
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
