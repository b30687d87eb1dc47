"""The committer on a Redis Cluster: it reads every shard's stream on whichever primary
holds it, hears other committers' batches by sharded pub/sub (SSUBSCRIBE/SPUBLISH),
and shares the streams with another committer (another gateway), exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client
from gateway.config import CommitterConfig, RedisConfig
from gateway.settlement.committer import GROUP, Committer
from tests.integration.committer_support import Calls, Switch, Tree, assert_exactly_once, make_tree
from tests.redis_servers import Cluster

SHARDS = 6
FAST = CommitterConfig(batch_size=50, retry_delay_s=0.05, claim_idle_s=30.0)


@pytest.fixture
async def cluster_client(redis_cluster: Cluster) -> AsyncIterator[RedisClient]:
    config = RedisConfig(url=redis_cluster.url, max_connections=64)
    client = create_client(config, config.url)
    yield client
    await client.aclose()


@pytest.fixture
def sharded(keys: Keys) -> Keys:
    return Keys(keys.prefix, SHARDS)


def committer(
    redis: RedisClient,
    pool: asyncpg.Pool,
    keys: Keys,
    consumer: str,
    config: CommitterConfig = FAST,
) -> Committer:
    return Committer(config, redis, pool, keys, consumer, drain_timeout_s=10.0)


async def _trees(pool: asyncpg.Pool, keys: Keys, count: int) -> list[Tree]:
    trees = [await make_tree(pool, customers=1) for _ in range(count)]
    assert len({keys.shard_of(t.wholesale) for t in trees}) > 1
    return trees


async def test_every_shard_is_committed_once(
    db_pool: asyncpg.Pool, cluster_client: RedisClient, sharded: Keys, redis_cluster: Cluster
) -> None:
    trees = await _trees(db_pool, sharded, 4)
    switch = Switch(cluster_client, sharded)
    everything: list[tuple[Tree, Calls]] = []
    try:
        for i, tree in enumerate(trees):
            await switch.load(tree)
            everything.append((tree, await switch.many(tree, f"{sharded.prefix}-{i}", 40)))
    finally:
        await switch.pipeliner.close()
    homes = {redis_cluster.primary_of(sharded.settlements(s)).port for s in range(SHARDS)}
    assert len(homes) == 3  # the streams are spread over the three primaries
    worker = committer(cluster_client, db_pool, sharded, "c1")
    assert await worker.process_available() == 4 * 40
    await worker.stop()
    for tree, calls in everything:
        await assert_exactly_once(db_pool, tree, calls)


async def test_a_commit_elsewhere_is_heard_by_sharded_pubsub(
    db_pool: asyncpg.Pool, cluster_client: RedisClient, sharded: Keys
) -> None:
    tree = await make_tree(db_pool, customers=1)
    switch = Switch(cluster_client, sharded)
    await switch.load(tree)
    here = committer(cluster_client, db_pool, sharded, "here")  # never started
    here.waiters.fallback_s = 60.0  # no stream lookups while subscribed
    elsewhere = committer(cluster_client, db_pool, sharded, "elsewhere")
    calls = Calls(sharded.prefix)
    try:
        settled = await switch.call(
            tree, tree.customers[0], sharded.prefix, "m", 5, time.time(), calls
        )
        waiting = asyncio.create_task(here.wait_committed(settled.stream, settled.stream_id, 10.0))
        for _ in range(200):  # the subscriptions are made on the first wait
            await asyncio.sleep(0.02)
            if here.waiters._subscribed:
                break
        assert here.waiters._subscribed
        assert not waiting.done()
        await elsewhere.process_available()
        assert await asyncio.wait_for(waiting, 3.0)
        assert here.waiters.messages == 1
    finally:
        await here.stop()
        await elsewhere.stop()
        await switch.pipeliner.close()


async def test_two_gateways_committers_share_the_streams(
    db_pool: asyncpg.Pool, cluster_client: RedisClient, sharded: Keys, redis_cluster: Cluster
) -> None:
    """Each gateway has its own client and committer; they split every shard's stream
    through the consumer group, and when one dies with entries in hand, the other
    claims them once they are idle."""
    other_config = RedisConfig(url=redis_cluster.url, max_connections=64)
    other_client = create_client(other_config, other_config.url)
    trees = await _trees(db_pool, sharded, 3)
    switch = Switch(cluster_client, sharded)
    claiming = CommitterConfig(batch_size=25, retry_delay_s=0.05, claim_idle_s=1.0)
    a = committer(cluster_client, db_pool, sharded, "gw-a", claiming)
    b = committer(other_client, db_pool, sharded, "gw-b", claiming)
    everything: list[tuple[Tree, Calls]] = []
    try:
        for tree in trees:
            await switch.load(tree)
        await a.ensure_groups()
        # gateway C read some entries and died before committing them
        for i, tree in enumerate(trees):
            everything.append((tree, await switch.many(tree, f"{sharded.prefix}-{i}", 60)))
        stream = sharded.settlements(sharded.shard_of(trees[0].wholesale))
        taken = await cluster_client.xreadgroup(GROUP, "gw-c", {stream: ">"}, count=20)
        assert taken
        await a.start()
        await b.start()
        for i, tree in enumerate(trees):
            await switch.many(tree, f"{sharded.prefix}-{i}", 60, start=1000, calls=everything[i][1])
        for _tree, calls in everything:
            last = calls.settled[-1]
            assert await a.wait_committed(last.stream, last.stream_id, 10.0)
        await asyncio.sleep(1.5)  # past claim_idle_s: gw-c's entries are claimed
        for _ in range(100):
            if a.claimed + b.claimed >= 20:
                break
            await asyncio.sleep(0.1)
    finally:
        await a.stop()
        await b.stop()
        await switch.pipeliner.close()
        await other_client.aclose()
    assert a.rows > 0 and b.rows > 0
    assert a.claimed + b.claimed == 20
    assert a.rows + b.rows == 3 * 120
    for tree, calls in everything:
        await assert_exactly_once(db_pool, tree, calls)
    assert (await cluster_client.xpending(stream, GROUP))["pending"] == 0
