"""The hot path on a Redis Cluster: one pipeline lane per primary, routed by slot.

A call's first key names its slot (every key of a script shares it: the tree's hash
tag), the slot its primary, the primary a lane: a ``Pipeliner`` of its own on its own
connection, so calls to one node still share round trips and nodes work in parallel.
redis-py's cluster pipeline does the same grouping, at several times the client CPU
per command (see ``tests/bench/test_cluster_bench.py``), so it carries only the
cold commands.

When a node answers MOVED (the slot map changed), CLUSTERDOWN/TRYAGAIN, or cannot be
reached (a primary died, its replica is taking over), the map is read again and the
call is sent again, for up to ``redis.socket_timeout_s``: every balance script is
idempotent by session, so sending a call twice charges it once. ASK (a slot being
migrated) goes through redis-py, which sends the ASKING the move needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from gateway.balance.redisconn import RedisClient, redis_errors, replica_acks
from gateway.balance.scripts import Pipeliner, Replication, Script, ScriptRunner, load_scripts
from gateway.config import RedisConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.1  # between two tries while a failover is going on
REFRESH_EVERY_S = 0.1  # the slot map is read at most this often


class _Lane(Pipeliner):
    """The pipeline lane of one cluster node, on connections of its own."""

    def __init__(self, node: ClusterNode, scripts: dict[str, Script], replication: Replication):
        self.node = node
        super().__init__(node, scripts, replication=replication)  # type: ignore[arg-type]

    def _batch_timeout(self) -> float | None:
        timeout = self.node.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout else None

    async def load(self) -> None:
        with redis_errors():
            connection = await self._connection()
            try:
                for script in self.scripts.values():
                    await connection.send_command("SCRIPT", "LOAD", script.source)
                    await connection.read_response()
            finally:
                self._connections.append(connection)

    async def _connection(self) -> Any:
        if self._connections:
            return self._connections.pop()
        kwargs = dict(self.node.connection_kwargs)
        kwargs["socket_timeout"] = None  # one timeout per batch (Pipeliner._execute)
        return self.node.connection_class(**kwargs)

    async def close(self) -> None:
        self._closed = True
        if self._senders:
            await asyncio.gather(*list(self._senders), return_exceptions=True)
        while self._connections:
            await self._connections.pop().disconnect()


class ClusterPipeliner:
    """``Pipeliner``'s interface over a cluster: ``call``, ``load``, ``close``."""

    def __init__(
        self,
        client: RedisCluster,
        scripts: dict[str, Script],
        replication: Replication | None = None,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.replication = replication or Replication()
        self._lanes: dict[str, _Lane] = {}
        self._closed = False
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._mapped = False
        timeout = client.get_connection_kwargs().get("socket_timeout")
        self._budget_s = float(timeout) if timeout else 2.0

    @property
    def pipelines_sent(self) -> int:
        return sum(lane.pipelines_sent for lane in self._lanes.values())

    @property
    def calls_sent(self) -> int:
        return sum(lane.calls_sent for lane in self._lanes.values())

    async def call(
        self, name: str, keys: tuple[str, ...], args: tuple[str | int | float, ...]
    ) -> Any:
        """Run script ``name`` on the primary of its keys' slot; return its reply."""
        if self._closed:
            raise BackendUnavailable("redis", "the balance service is stopping")
        slot = key_slot(keys[0].encode())
        if not self._mapped:
            await self._map_once()
        try:
            return await self._lane(slot).call(name, keys, args)
        except redis.exceptions.AskError as exc:
            if not isinstance(exc, redis.exceptions.MovedError):
                metrics.REDIS_REROUTES.labels("ask").inc()
                return await self._through_redis_py(name, keys, args)
            metrics.REDIS_REROUTES.labels("moved").inc()
            first: BaseException = exc
        except (
            BackendUnavailable,
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
        ) as exc:
            if self._closed:
                raise
            metrics.REDIS_REROUTES.labels("failover").inc()
            first = exc
        return await self._again(name, keys, args, slot, first)

    async def _again(
        self,
        name: str,
        keys: tuple[str, ...],
        args: tuple[str | int | float, ...],
        slot: int,
        error: BaseException,
    ) -> Any:
        """Read the slot map again and resend, until the call lands or the budget ends."""
        deadline = time.monotonic() + self._budget_s
        while True:
            if not isinstance(error, redis.exceptions.MovedError):
                await asyncio.sleep(RETRY_PAUSE_S)
            try:
                await self._refresh()
                return await self._lane(slot).call(name, keys, args)
            except redis.exceptions.AskError as exc:
                if not isinstance(exc, redis.exceptions.MovedError):
                    return await self._through_redis_py(name, keys, args)
                error = exc
            except (
                BackendUnavailable,
                redis.exceptions.ClusterDownError,
                redis.exceptions.TryAgainError,
            ) as exc:
                error = exc
            if self._closed or time.monotonic() >= deadline:
                if isinstance(error, BackendUnavailable):
                    raise error
                metrics.BACKEND_ERRORS.labels("redis").inc()
                raise BackendUnavailable("redis", f"{type(error).__name__}: {error}") from error

    async def _map_once(self) -> None:
        """The slot map, read the first time a call needs it (``load`` reads it too)."""
        with redis_errors():
            await self.client.initialize()
        self._mapped = True

    def _lane(self, slot: int) -> _Lane:
        with redis_errors():
            try:
                node = self.client.nodes_manager.get_node_from_slot(slot)
            except KeyError:  # no primary known for it (mid-failover map): read it again
                raise redis.exceptions.ClusterDownError(f"slot {slot} has no primary") from None
        lane = self._lanes.get(node.name)  # by address: each map read makes new node objects
        if lane is None:
            lane = self._lanes[node.name] = _Lane(node, self.scripts, self.replication)
        return lane

    async def _refresh(self) -> None:
        """Read the slot map once for every caller that asks at the same time."""
        if self._refreshing is None:
            if time.monotonic() - self._refreshed_at < REFRESH_EVERY_S:
                return
            self._refreshing = asyncio.create_task(self._read_map())
        task = self._refreshing
        await asyncio.shield(task)

    async def _read_map(self) -> None:
        try:
            with redis_errors():
                await self.client.nodes_manager.initialize()
        finally:
            self._refreshed_at = time.monotonic()
            self._refreshing = None

    async def _through_redis_py(
        self, name: str, keys: tuple[str, ...], args: tuple[str | int | float, ...]
    ) -> Any:
        script = self.scripts[name]
        with redis_errors():
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    async def load(self) -> None:
        """SCRIPT LOAD every script on every primary."""
        await self._map_once()
        with redis_errors():
            for source in {s.source for s in self.scripts.values()}:
                await self.client.script_load(source)

    async def close(self) -> None:
        self._closed = True
        lanes, self._lanes = list(self._lanes.values()), {}
        await asyncio.gather(*(lane.close() for lane in lanes), return_exceptions=True)


def pipeliner_for(client: RedisClient, config: RedisConfig | None = None) -> ScriptRunner:
    """The pipeliner that fits the client (per-node lanes on a cluster, else one),
    waiting for the replicas ``config`` asks for."""
    replication = None
    if config is not None:
        replication = Replication(replica_acks(config, config.url), config.replica_ack_timeout_ms)
    if isinstance(client, RedisCluster):
        return ClusterPipeliner(client, load_scripts(), replication)
    return Pipeliner(client, load_scripts(), replication=replication)
