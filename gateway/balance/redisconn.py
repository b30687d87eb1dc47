"""The Redis client, and the one place where redis-py errors become ours.

``redis.url`` names one of three deployments, and the client follows it:
``redis://`` (or ``rediss://``, ``unix://``) one server; ``redis+cluster://h1:p1,h2:p2``
(or ``[redis] cluster = true``) a Redis Cluster, the hosts being seeds; and
``redis+sentinel://h1:p1,h2:p2/<service>`` the primary that Sentinels name
``service``, followed through their failovers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from gateway.config import RedisConfig, mask_url
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

# What the gateway talks to: one server (or a Sentinel-managed primary), or a cluster.
RedisClient = aioredis.Redis | RedisCluster

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A cluster mid-failover: a slot without a primary, or one being moved.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.MasterDownError,
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
    except redis.exceptions.RedisClusterException as exc:
        # redis-py gave up following the cluster (every seed down, no slot map):
        # as much an outage as a refused connection.
        metrics.BACKEND_ERRORS.labels("redis").inc()
        raise BackendUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True, slots=True)
class Target:
    """What ``redis.url`` names, parsed."""

    kind: str  # "server", "cluster" or "sentinel"
    hosts: tuple[tuple[str, int], ...] = ()  # cluster seeds or sentinels
    service: str = ""  # sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    sentinel_password: str | None = None


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [::1]:7000
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        hosts.append((host, int(port) if port else default_port))
    if not hosts:
        raise ValueError("names no host")
    return tuple(hosts)


def parse_target(url: str, cluster: bool = False) -> Target:
    """Read ``redis.url``; ``cluster`` (``[redis] cluster``) makes a plain URL a cluster.

    Raises ValueError naming what is wrong."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES or (cluster and scheme):
        parts = urlsplit(url)
        netloc = parts.netloc
        user = pw = None
        if "@" in netloc:
            creds = netloc.rsplit("@", 1)[0]
            user, _, pw = creds.partition(":")
            user, pw = (unquote(user) or None), (unquote(pw) or None)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        tls = scheme.startswith("rediss")
        if scheme in SENTINEL_SCHEMES:
            path = [p for p in parts.path.split("/") if p]
            if not path:
                raise ValueError(
                    "a sentinel URL names the service: redis+sentinel://h:26379/<name>"
                )
            db = int(path[1]) if len(path) > 1 else int(query.get("db", 0))
            return Target(
                "sentinel",
                _hosts(netloc, 26379),
                service=path[0],
                db=db,
                username=user,
                password=pw,
                tls=tls,
                sentinel_password=query.get("sentinel_password"),
            )
        return Target("cluster", _hosts(netloc, 6379), username=user, password=pw, tls=tls)
    return Target("server")


def is_cluster(config: RedisConfig, url: str) -> bool:
    return parse_target(url, config.cluster).kind == "cluster"


def shard_count(config: RedisConfig, url: str) -> int:
    """``redis.shards``, 0 (auto) being 64 on a cluster, so trees spread over its
    primaries, and 1 on one server (every shard costs the sweeper and committer a read)."""
    if config.shards:
        return config.shards
    return 64 if is_cluster(config, url) else 1


def replica_acks(config: RedisConfig, url: str) -> int:
    """``redis.replica_acks``, -1 (auto) being 1 on a cluster or under Sentinel."""
    if config.replica_acks >= 0:
        return config.replica_acks
    return 0 if parse_target(url, config.cluster).kind == "server" else 1


class _SentinelManaged(aioredis.Redis):
    """The primary's client; closing it closes the connections to the Sentinels too."""

    owning_sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.owning_sentinel is not None:
            for client in self.owning_sentinel.sentinels:
                await client.aclose()


def create_client(config: RedisConfig, url: str) -> RedisClient:
    """A client for the deployment ``url`` names.

    One server: redis-py's default pool raises MaxConnectionsError when more tasks
    want a connection than it has; under a burst of calls that would refuse calls
    for no reason, so the blocking pool is used. A cluster: redis-py's cluster client
    (slot map, MOVED/ASK, failover), ``max_connections`` per node; the hot path does
    not go through it (``balance.cluster_pipeliner``).
    """
    timeout = config.socket_timeout_s
    target = parse_target(url, config.cluster)
    client: RedisClient
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "ssl": target.tls,
        "max_connections": config.max_connections,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": False,
    }
    if target.kind == "cluster":
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            # Mid-failover a slot has no primary for a moment: keep serving the others.
            require_full_coverage=False,
            **common,
        )
    elif target.kind == "sentinel":
        auth: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if target.sentinel_password:
            auth["password"] = target.sentinel_password
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=auth)  # type: ignore[no-untyped-call]
        managed = sentinel.master_for(
            target.service, redis_class=_SentinelManaged, db=target.db, **common
        )
        managed.owning_sentinel = sentinel
        client = managed
    else:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=config.max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=False,
        )
        client = aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    log.info(
        "redis.client",
        extra={"url": mask_url(url), "kind": target.kind, "max": config.max_connections},
    )
    return client
