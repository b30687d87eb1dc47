"""Calls on a Redis Cluster whose primary dies mid-load: its replica takes over, the
per-node pipeliner follows the new slot map, and money stays exact: every call the
gateway confirmed settled is in its shard's stream once, no hold is left, and each
balance is its opening less what was settled.

Each test starts a 6-node cluster of its own (it kills nodes of it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from gateway.balance.cluster_pipeliner import ClusterPipeliner, pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, create_client
from gateway.balance.store import BalanceStore, SessionRef
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig, RedisConfig
from gateway.core.errors import BackendUnavailable
from gateway.rating.chain import Chain, Level
from gateway.settlement.entry import SettlementEntry
from tests import factories
from tests.redis_servers import Cluster

SHARDS = 6
ROOTS = tuple(range(1, SHARDS + 1))  # one tree per shard
PRICE = 60_000  # per minute
OPENING = 10**9


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path / "cluster")
    try:
        yield nodes.start(6)
    finally:
        nodes.stop()


def _reroutes() -> float:
    return sum(
        REGISTRY.get_sample_value("gateway_redis_reroutes_total", {"cause": cause}) or 0.0
        for cause in ("moved", "ask", "failover")
    )


def _unreplicated() -> float:
    return REGISTRY.get_sample_value("gateway_redis_unreplicated_total") or 0.0


async def _client(cluster: Cluster) -> tuple[RedisClient, RedisConfig]:
    # a generous WAIT: on this small machine a replica may lag past the default 100 ms,
    # and a write it missed is one a failover may lose (counted, and checked below)
    config = RedisConfig(
        url=cluster.url, socket_timeout_s=2.0, max_connections=32, replica_ack_timeout_ms=1500
    )
    return create_client(config, config.url), config


async def _open_accounts(client: RedisClient, keys: Keys, roots: tuple[int, ...] = ROOTS) -> None:
    for root in roots:
        await client.hset(
            keys.account(root, root),
            mapping=factories.mirrored(OPENING),
        )


async def _retry(what: str, attempt: object, budget_s: float = 20.0) -> object:
    """Call ``attempt`` until Redis answers: the verbs are idempotent, so a call the
    gateway did not hear back from is safely sent again (as the switch would)."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return await attempt()  # type: ignore[operator]
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: Redis did not come back") from None
            await asyncio.sleep(0.1)


async def _one_call(store: BalanceStore, root: int, name: str, seconds: int) -> int:
    """One whole call; returns what it cost the customer (0 if refused)."""
    ref = SessionRef(root, name)
    chain = Chain(root, (Level(root, True, factories.rate(PRICE)),))
    grant = await _retry(
        name, lambda: store.reserve(ref, chain, factories.meta(name), slice_mode=False)
    )
    if not isinstance(grant, Grant):
        return 0
    await _retry(name, lambda: store.answered(ref, time.time()))
    settled = await _retry(
        name, lambda: store.settle(ref, seconds, CallEnd(disconnect_at=time.time()))
    )
    return int(settled.costs_micros[0])  # type: ignore[attr-defined]


async def test_scripts_go_to_the_primary_of_their_slot(cluster: Cluster) -> None:
    client, config = await _client(cluster)
    keys = Keys("gwtest:route", SHARDS)
    store = BalanceStore(pipeliner_for(client, config), keys, BalanceConfig(max_call_s=60))
    try:
        assert isinstance(store.pipeliner, ClusterPipeliner)
        await store.pipeliner.load()
        await _open_accounts(client, keys)
        costs = await asyncio.gather(
            *(_one_call(store, root, f"c{root}-{i}", 60) for root in ROOTS for i in range(20))
        )
        assert costs == [PRICE] * len(costs)
        # the trees sit on all three primaries, and each settled where it lives
        homes = {cluster.primary_of(keys.tag(keys.shard_of(r))).port for r in ROOTS}
        assert len(homes) == 3
        for root in ROOTS:
            stream = keys.settlements(keys.shard_of(root))
            primary = cluster.primary_of(stream)
            assert int(primary.command("XLEN", stream)) == 20
        assert store.pipeliner.calls_sent >= len(costs) * 3
    finally:
        await store.pipeliner.close()
        await client.aclose()


async def test_a_primary_dies_mid_load_and_nothing_is_lost_or_doubled(cluster: Cluster) -> None:
    client, config = await _client(cluster)
    assert config.url.startswith("redis+cluster://")
    keys = Keys("gwtest:failover", SHARDS)
    store = BalanceStore(pipeliner_for(client, config), keys, BalanceConfig(max_call_s=60))
    reroutes_before = _reroutes()
    unreplicated_before = _unreplicated()
    try:
        await store.pipeliner.load()
        await _open_accounts(client, keys)
        victim = cluster.primary_of(keys.tag(keys.shard_of(ROOTS[0])))
        spent: dict[int, int] = dict.fromkeys(ROOTS, 0)
        calls: dict[int, int] = dict.fromkeys(ROOTS, 0)

        stop = asyncio.Event()

        async def caller(root: int, lane: int) -> None:
            i = 0
            while not stop.is_set():
                cost = await _one_call(store, root, f"{root}-{lane}-{i}", 30 + i % 90)
                spent[root] += cost  # not `+= await`: that reads the total before it waits
                calls[root] += 1
                i += 1

        load = asyncio.gather(*(caller(root, lane) for root in ROOTS for lane in range(4)))
        await asyncio.sleep(0.5)
        before_kill = sum(calls.values())
        # every call confirmed so far is on a replica too (after the kill, the new
        # primary has none: its writes are counted unreplicated, and not lost here)
        assert _unreplicated() == unreplicated_before, "a write went unreplicated"
        victim.kill()
        await asyncio.to_thread(cluster.wait_ok)
        successor = cluster.primary_of(keys.tag(keys.shard_of(ROOTS[0])))
        assert successor.port != victim.port
        await asyncio.sleep(0.5)  # calls go on on the new primary
        stop.set()
        await load
        assert before_kill > 0 and sum(calls.values()) > before_kill

        assert _unreplicated() > unreplicated_before
        for root in ROOTS:
            account = await client.hgetall(keys.account(root, root))
            assert int(account[b"bal"]) == OPENING - spent[root], root
            assert (int(account[b"held"]), int(account[b"calls"])) == (0, 0), root
        for root in ROOTS:
            entries = await client.xrange(keys.settlements(keys.shard_of(root)))
            settled = [SettlementEntry.from_json(fields[b"s"]) for _id, fields in entries]
            assert len({e.session for e in settled}) == len(settled), "a call settled twice"
            assert len(settled) == calls[root], root
            assert sum(e.costs_micros[0] for e in settled) == spent[root], root
        assert _reroutes() > reroutes_before
    finally:
        await store.pipeliner.close()
        await client.aclose()
