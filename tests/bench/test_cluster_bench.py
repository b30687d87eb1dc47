"""Benchmark: one Redis against a 6-node Redis Cluster (3 primaries + 3 replicas) on
this machine. Run with `make bench`; prints figures, asserts only that money adds up.

1. In one process, reserve+settle pairs through each way of reaching Redis: the
   single-server pipeliner; on the cluster, the per-node pipeliner (gateway's own)
   with and without WAIT for a replica, and redis-py's `ClusterPipeline` batching the
   same scripts. Shows pairs/s and CPU µs per pair of this process and of Redis.
2. Whole calls through `gateway run --workers 2` with `gateway loadgen`, one Redis
   vs the cluster: calls/s and CPU µs per call by role.

On two cores the cluster can only cost (six servers and the replication share the
cores the gateway needs); what it buys is primaries on more machines. The µs of Redis
per call is the figure the README's capacity model is built on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client
from gateway.balance.scripts import Script, load_scripts
from gateway.balance.store import BalanceStore, SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig, RedisConfig
from gateway.rating.billing import cost
from gateway.rating.chain import Chain, Level
from tests import factories
from tests.bench.cpu import by_role
from tests.bench.test_calls_bench import _bench
from tests.e2e.test_loadgen import free_port, write_config
from tests.redis_servers import Cluster

PAIRS = int(os.environ.get("BENCH_CLUSTER_PAIRS", "20000"))
CONCURRENCY = 200
TREES = 60
RATES = tuple(int(r) for r in os.environ.get("BENCH_CLUSTER_RATES", "1000,2000").split(","))


class ClusterPipelineRunner:
    """The scripts through redis-py's ``ClusterPipeline``: every call queued while a
    batch is out goes in the next one (the same batching as the gateway's pipeliner)."""

    def __init__(self, client: RedisCluster, scripts: dict[str, Script]) -> None:
        self.client = client
        self.scripts = scripts
        self.pipelines_sent = 0
        self.calls_sent = 0
        self._queue: deque[tuple[Script, tuple[str, ...], tuple[Any, ...], asyncio.Future[Any]]]
        self._queue = deque()
        self._sender: asyncio.Task[None] | None = None

    async def call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((self.scripts[name], keys, args, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await done

    async def _send(self) -> None:
        try:
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                pipe = self.client.pipeline(transaction=False)
                for script, keys, args, _ in batch:
                    # its evalsha() refuses to be pipelined on a cluster; the raw command
                    # is routed by the key it names
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                self.pipelines_sent += 1
                self.calls_sent += len(batch)
                try:
                    replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    for *_, done in batch:
                        done.set_exception(exc)
                    raise
                for (_, _, _, done), reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):
                        done.set_exception(reply)
                    else:
                        done.set_result(reply)
        finally:
            self._sender = None

    async def load(self) -> None:
        for script in self.scripts.values():
            await self.client.script_load(script.source)

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def bench_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("bench-cluster"))
    try:
        yield nodes.start(6)  # type: ignore[misc]
    finally:
        nodes.stop()


async def _pairs(store: BalanceStore, client: RedisClient, keys: Keys) -> dict[str, float]:
    roots = list(range(1, TREES + 1))
    for root in roots:
        await client.hset(
            keys.account(root, root),
            mapping=factories.mirrored(10**15),
        )
    chains = [Chain(r, (Level(r, True, factories.rate(60_000)),)) for r in roots]
    queue = iter(range(PAIRS))

    async def worker() -> int:
        done = 0
        for i in queue:
            chain = chains[i % TREES]
            ref = SessionRef(chain.root_id, f"bench-{i}")
            grant = await store.reserve(ref, chain, factories.meta(f"bench-{i}"))
            assert isinstance(grant, Grant)
            await store.settle(ref, 61, CallEnd(disconnect_at=time.time()))
            done += 1
        return done

    redis0 = by_role(os.getpid())["redis"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    redis_cpu = by_role(os.getpid())["redis"] - redis0
    assert sum(counts) == PAIRS
    spent = 0
    for root in roots:
        spent += 10**15 - int(await client.hget(keys.account(root, root), "bal"))
    assert spent == PAIRS * cost(factories.rate(60_000), 61)
    return {
        "pairs_s": PAIRS / wall,
        "cpu_us": cpu / PAIRS * 1e6,
        "redis_us": redis_cpu / PAIRS * 1e6,
        "per_pipeline": store.pipeliner.calls_sent / max(store.pipeliner.pipelines_sent, 1),
    }


async def test_pipeliners_single_redis_vs_cluster(
    bench_cluster: Cluster, redis_url: str, keys: Keys
) -> None:
    rows: list[tuple[str, dict[str, float]]] = []
    ways: list[tuple[str, str, int, bool]] = [
        ("one Redis, gateway pipeliner", redis_url, 0, False),
        ("cluster, per-node pipeliner, no WAIT", bench_cluster.url, 0, False),
        ("cluster, per-node pipeliner, WAIT 1", bench_cluster.url, 1, False),
        ("cluster, redis-py ClusterPipeline", bench_cluster.url, 0, True),
    ]
    for n, (title, url, acks, redis_py) in enumerate(ways):
        config = RedisConfig(url=url, replica_acks=acks, max_connections=64)
        client = create_client(config, url)
        shards = 64 if "cluster" in url else 1
        run_keys = Keys(f"{keys.prefix}:bench{n}", shards)
        runner: Any
        if redis_py:
            assert isinstance(client, RedisCluster)
            runner = ClusterPipelineRunner(client, load_scripts())
        else:
            runner = pipeliner_for(client, config)
        store = BalanceStore(runner, run_keys, BalanceConfig(max_call_s=600))
        try:
            await runner.load()
            rows.append((title, await _pairs(store, client, run_keys)))
        except redis.exceptions.RedisError as exc:  # pragma: no cover - printed, not hidden
            pytest.fail(f"{title}: {exc}")
        finally:
            await runner.close()
            if "cluster" not in url:
                async for key in client.scan_iter(match=f"{run_keys.prefix}:*", count=1000):
                    await client.delete(key)
            await client.aclose()
    print(f"\nreserve+settle pairs, {PAIRS} per way, {CONCURRENCY} concurrent, {TREES} trees")
    print(f"{'':40} {'pairs/s':>8} {'CPU µs':>7} {'Redis µs':>8} {'per pipe':>8}")
    for title, r in rows:
        print(
            f"{title:40} {r['pairs_s']:>8,.0f} {r['cpu_us']:>7.1f} {r['redis_us']:>8.1f} "
            f"{r['per_pipeline']:>8.1f}"
        )


@pytest.mark.slow
def test_calls_single_redis_vs_cluster(
    bench_cluster: Cluster,
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    db_pool: asyncpg.Pool,
) -> None:
    for name, url in (("one Redis", redis_url), ("Redis Cluster, 3 primaries", bench_cluster.url)):
        folder = tmp_path / name.split()[0].lower()
        folder.mkdir()
        config = write_config(
            folder,
            database_url=database_url,
            redis_url=url,
            key_prefix=f"{keys.prefix}:{folder.name}",
            auth_port=free_port(),
            acct_port=free_port(),
        )
        _bench(f"whole calls, {name}", config, embedded=False, rates=RATES)
