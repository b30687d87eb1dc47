"""Calls under Redis Sentinel (`redis+sentinel://`): the primary dies mid-load, the
Sentinels promote its replica, the gateway's connections find the new primary through
them, and money stays exact: each confirmed call settled once, no hold left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import create_client, replica_acks
from gateway.balance.store import BalanceStore
from gateway.config import BalanceConfig, RedisConfig
from gateway.settlement.entry import SettlementEntry
from tests.integration.balance.test_cluster_failover import OPENING, _one_call, _open_accounts
from tests.redis_servers import SentinelSet

ROOTS = (1, 2, 3)


@pytest.fixture
async def sentinels(tmp_path: Path) -> AsyncIterator[SentinelSet]:
    watched = SentinelSet(tmp_path / "sentinel")
    try:
        yield watched.start(3)
    finally:
        watched.stop()


async def test_the_primary_dies_and_calls_go_on_on_the_promoted_replica(
    sentinels: SentinelSet,
) -> None:
    config = RedisConfig(url=sentinels.url, socket_timeout_s=1.0, replica_ack_timeout_ms=1500)
    assert replica_acks(config, config.url) == 1  # auto: WAIT for the replica
    client = create_client(config, config.url)
    keys = Keys("gwtest:sentinel", 3)
    store = BalanceStore(pipeliner_for(client, config), keys, BalanceConfig(max_call_s=60))
    first = sentinels.current_primary_port()
    try:
        await store.pipeliner.load()
        await _open_accounts(client, keys, ROOTS)
        spent = dict.fromkeys(ROOTS, 0)
        calls = dict.fromkeys(ROOTS, 0)
        stop = asyncio.Event()

        async def caller(root: int, lane: int) -> None:
            i = 0
            while not stop.is_set():
                cost = await _one_call(store, root, f"{root}-{lane}-{i}", 30 + i % 90)
                spent[root] += cost
                calls[root] += 1
                i += 1

        load = asyncio.gather(*(caller(root, lane) for root in ROOTS for lane in range(3)))
        await asyncio.sleep(0.5)
        before = sum(calls.values())
        assert sentinels.primary is not None
        sentinels.primary.kill()
        for _ in range(300):  # the Sentinels agree the primary is down, then promote
            await asyncio.sleep(0.1)
            if sentinels.current_primary_port() != first:
                break
        assert sentinels.current_primary_port() != first
        after_promotion = sum(calls.values())
        await asyncio.sleep(1.0)
        stop.set()
        await load
        assert before > 0 and sum(calls.values()) > after_promotion

        for root in ROOTS:
            account = await client.hgetall(keys.account(root, root))
            assert int(account[b"bal"]) == OPENING - spent[root], root
            assert (int(account[b"held"]), int(account[b"calls"])) == (0, 0), root
            entries = await client.xrange(keys.settlements(keys.shard_of(root)))
            settled = [SettlementEntry.from_json(f[b"s"]) for _id, f in entries]
            assert len({e.session for e in settled}) == len(settled) == calls[root], root
    finally:
        await store.pipeliner.close()
        await client.aclose()
