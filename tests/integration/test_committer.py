"""The committer on real Redis and PostgreSQL: exactly once, through outages and crashes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.balance.keys import Keys
from gateway.config import CommitterConfig
from gateway.settlement.cdr_writer import METHODS, Method
from gateway.settlement.committer import GROUP, Committer
from tests.integration.committer_support import (
    START_BALANCE,
    Calls,
    Switch,
    Tree,
    assert_exactly_once,
    balances,
    make_tree,
)
from tests.integration.tcp_proxy import TcpProxy

FAST = CommitterConfig(batch_size=50, retry_delay_s=0.05, claim_idle_s=30.0)


@pytest.fixture
async def tree(db_pool: asyncpg.Pool) -> Tree:
    return await make_tree(db_pool)


@pytest.fixture
async def switch(redis_client: aioredis.Redis, keys: Keys, tree: Tree) -> AsyncIterator[Switch]:
    s = Switch(redis_client, keys)
    await s.load(tree)
    yield s
    await s.pipeliner.close()  # the shared client's pool is bounded


def committer(
    redis: aioredis.Redis,
    pool: asyncpg.Pool,
    keys: Keys,
    consumer: str = "c1",
    config: CommitterConfig = FAST,
    method: Method = "unnest",
) -> Committer:
    return Committer(config, redis, pool, keys, consumer, method=method, drain_timeout_s=10.0)


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(10_000):
        if predicate():
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def stream_len(redis: aioredis.Redis, keys: Keys) -> int:
    return int(await redis.xlen(keys.settlements(0)))


@pytest.mark.parametrize("method", METHODS)
async def test_settlements_land_as_cdrs_ledger_and_balances(
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
    tree: Tree,
    switch: Switch,
    method: Method,
) -> None:
    calls = await switch.many(tree, keys.prefix, 120)
    # One call looked at column by column: 65 s answered by the first customer.
    setup = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
    settled = await switch.call(tree, tree.customers[0], keys.prefix, "one", 65, setup, calls)
    worker = committer(redis_client, db_pool, keys, method=method)
    assert await worker.process_available() == 121
    assert (worker.rows, worker.duplicates, worker.dead_lettered) == (121, 0, 0)
    assert await stream_len(redis_client, keys) == 0
    await assert_exactly_once(db_pool, tree, calls)

    row = await db_pool.fetchrow(
        "SELECT *, tableoid::regclass::text AS part FROM cdrs "
        "WHERE nas = $1 AND session_id = 'one'",
        keys.prefix,
    )
    assert row["part"] == "cdrs_202601"
    assert row["setup_at"] == datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert row["connect_at"] == datetime.fromtimestamp(int(setup + 2), UTC)
    assert row["disconnect_at"] == datetime.fromtimestamp(setup + 67, UTC)
    assert row["account_id"] == tree.customers[0]
    assert list(row["chain"]) == [tree.customers[0], tree.wholesale]
    texts = (row["caller"], row["called"], row["called_dialled"], row["remote_addr"])
    assert texts == ("4930123", "447700900123", "00447700900123", "192.0.2.7")
    assert list(row["rate_group_per_level"]) == [1, 2]
    assert list(row["prefix_per_level"]) == ["44", "44"]
    assert list(row["price_per_level_micros"]) == [60_000, 30_000]
    assert row["duration_s"] == 65
    assert list(row["billed_s_per_level"]) == [66, 120]
    assert settled.costs_micros == (1_000 + 66_000, 60_000)
    assert list(row["cost_per_level_micros"]) == [67_000, 60_000]
    assert row["cost_micros"] == 67_000
    # The cause as a Cisco switch wrote it (hex) and as Q.850.
    cause = (row["status"], row["disconnect_cause"], row["disconnect_cause_raw"])
    assert cause == ("answered", 16, "10")

    reference = f"cdr:{keys.prefix.replace(':', '%3A')}:one::1767225600250000"
    ledger = await db_pool.fetch(
        "SELECT account_id, amount_micros, kind, idempotency_key FROM ledger_entries "
        "WHERE reference = $1 ORDER BY amount_micros",
        reference,
    )
    assert [(r["account_id"], r["amount_micros"], r["kind"]) for r in ledger] == [
        (tree.customers[0], -67_000, "call_debit"),
        (tree.wholesale, -60_000, "call_debit"),
    ]
    assert ledger[0]["idempotency_key"] == f"call{reference[3:]}:{tree.customers[0]}"
    # last_call_at follows the latest disconnect on every level, charged or not.
    last = await db_pool.fetch(
        "SELECT id, last_call_at FROM accounts WHERE id = ANY($1::bigint[])", tree.accounts
    )
    assert all(r["last_call_at"] is not None for r in last)


async def test_failed_call_and_uncharged_level(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    calls = Calls(keys.prefix)
    await switch.call(tree, tree.transfer_customer, keys.prefix, "f", 0, time.time(), calls)
    await switch.call(tree, tree.transfer_customer, keys.prefix, "a", 10, time.time(), calls)
    await committer(redis_client, db_pool, keys).process_available()
    await assert_exactly_once(db_pool, tree, calls)
    rows = {
        r["session_id"]: r
        for r in await db_pool.fetch("SELECT * FROM cdrs WHERE nas = $1", keys.prefix)
    }
    failed, answered = rows["f"], rows["a"]
    assert (failed["status"], failed["connect_at"], failed["cost_micros"]) == ("failed", None, 0)
    assert list(failed["cost_per_level_micros"]) == [0, 0]
    assert answered["status"] == "answered" and answered["connect_at"] is not None
    assert list(answered["prefix_per_level"]) == ["44", ""]
    assert list(answered["cost_per_level_micros"])[1] == 0
    # The transfer agent pays nothing, but its subtree made a call.
    agent = await db_pool.fetchrow("SELECT * FROM accounts WHERE id = $1", tree.transfer)
    assert agent["balance_micros"] == START_BALANCE
    assert agent["last_call_at"] == answered["disconnect_at"]


async def test_replayed_entries_change_nothing(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    calls = await switch.many(tree, keys.prefix, 40)
    stream = keys.settlements(0)
    originals = [fields for _, fields in await redis_client.xrange(stream)]
    # The same entry twice in one batch counts once.
    await redis_client.xadd(stream, originals[0])
    worker = committer(redis_client, db_pool, keys)
    await worker.process_available()
    assert (worker.rows, worker.duplicates) == (40, 1)
    before = await balances(db_pool, tree.accounts)
    for fields in originals:
        await redis_client.xadd(stream, fields)
    again = committer(redis_client, db_pool, keys, consumer="c2")
    assert await again.process_available() == 40
    assert (again.rows, again.ledger_rows, again.duplicates) == (0, 0, 40)
    assert await balances(db_pool, tree.accounts) == before
    assert await stream_len(redis_client, keys) == 0
    await assert_exactly_once(db_pool, tree, calls)


async def test_wait_committed(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    worker = committer(redis_client, db_pool, keys)
    calls = Calls(keys.prefix)
    # Nobody commits: the wait times out.
    early = await switch.call(tree, tree.customers[0], keys.prefix, "early", 5, time.time(), calls)
    assert not await worker.wait_committed(early.stream, early.stream_id, 0.2)
    await worker.start()
    try:
        settled = await switch.call(
            tree, tree.customers[1], keys.prefix, "w", 5, time.time(), calls
        )
        assert await worker.wait_committed(settled.stream, settled.stream_id, 5.0)
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM cdrs WHERE nas = $1 AND session_id = 'w'", keys.prefix
            )
            == 1
        )
        # Asked after the commit: answered at once.
        started = time.monotonic()
        assert await worker.wait_committed(settled.stream, settled.stream_id, 5.0)
        assert await worker.wait_committed(early.stream, early.stream_id, 5.0)
        assert time.monotonic() - started < 0.5
        # Many waiters at once, each resolved by its batch's commit.
        placed = [
            await switch.call(tree, tree.customers[2], keys.prefix, f"g{i}", 3, time.time(), calls)
            for i in range(30)
        ]
        waits = [worker.wait_committed(s.stream, s.stream_id, 5.0) for s in placed]
        assert all(await asyncio.gather(*waits))
    finally:
        await worker.stop()
    await assert_exactly_once(db_pool, tree, calls)


async def test_wait_sees_commits_of_another_committer(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    here = committer(redis_client, db_pool, keys, consumer="here")  # never started
    elsewhere = committer(redis_client, db_pool, keys, consumer="elsewhere")
    calls = Calls(keys.prefix)
    settled = await switch.call(tree, tree.customers[0], keys.prefix, "x", 5, time.time(), calls)
    waiting = asyncio.create_task(here.wait_committed(settled.stream, settled.stream_id, 5.0))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await elsewhere.process_available()
    assert await waiting
    await here.stop()


async def test_another_committers_commit_is_heard_not_polled(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    """The committer publishes each batch: a waiter in another process learns of it at
    once, without looking the entry up in the stream."""
    here = committer(redis_client, db_pool, keys, consumer="here")  # never started
    here.waiters.fallback_s = 60.0  # no stream lookups while subscribed
    elsewhere = committer(redis_client, db_pool, keys, consumer="elsewhere")
    calls = Calls(keys.prefix)
    settled = await switch.call(tree, tree.customers[0], keys.prefix, "m", 5, time.time(), calls)
    waiting = asyncio.create_task(here.wait_committed(settled.stream, settled.stream_id, 10.0))
    for _ in range(100):  # the subscription is made on the first wait
        await asyncio.sleep(0.02)
        if here.waiters._subscribed:
            break
    assert not waiting.done()
    await elsewhere.process_available()
    assert await asyncio.wait_for(waiting, 2.0)
    assert here.waiters.messages == 1
    await here.stop()


async def test_without_messages_the_stream_tells(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    here = committer(redis_client, db_pool, keys, consumer="here")
    here.waiters.channels = ()  # as if the subscription were down
    elsewhere = committer(redis_client, db_pool, keys, consumer="elsewhere")
    calls = Calls(keys.prefix)
    settled = await switch.call(tree, tree.customers[0], keys.prefix, "p", 5, time.time(), calls)
    waiting = asyncio.create_task(here.wait_committed(settled.stream, settled.stream_id, 5.0))
    await elsewhere.process_available()
    assert await asyncio.wait_for(waiting, 2.0)
    assert here.waiters.messages == 0
    await here.stop()


async def test_malformed_entries_go_to_dead_letters(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    stream = keys.settlements(0)
    calls = await switch.many(tree, keys.prefix, 10)
    good = json.loads((await redis_client.xrange(stream, count=1))[0][1][b"s"])
    missing_meta = {k: v for k, v in good.items() if k != "meta"}
    wrong_type = {**good, "meta": {**good["meta"], "nas": 7, "session_id": "t"}}
    bad = [
        {"s": "{not json"},
        {"x": "no s field"},
        {"s": json.dumps(missing_meta)},
        {"s": json.dumps(wrong_type)},
    ]
    bad_ids = [(await redis_client.xadd(stream, fields)).decode() for fields in bad]
    calls = await switch.many(tree, keys.prefix, 10, start=10, calls=calls)
    worker = committer(redis_client, db_pool, keys)
    assert await worker.process_available() == 24
    assert (worker.rows, worker.dead_lettered) == (20, 4)
    await assert_exactly_once(db_pool, tree, calls)
    assert await stream_len(redis_client, keys) == 0
    assert await redis_client.xpending(stream, GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    dead = await redis_client.xrange(keys.dead_settlements(0))
    assert [fields[b"id"].decode() for _, fields in dead] == bad_ids
    errors = [fields[b"error"].decode() for _, fields in dead]
    assert errors[0].startswith("JSONDecodeError")
    assert errors[1] == "no field 's'"
    assert "meta" in errors[2]
    assert "meta.nas must be a string" in errors[3]
    assert dead[0][1][b"s"] == b"{not json"
    assert json.loads(dead[1][1][b"fields"]) == {"x": "no s field"}


async def test_a_row_postgresql_refuses_is_isolated(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    stream = keys.settlements(0)
    calls = await switch.many(tree, keys.prefix, 15)
    entry = json.loads((await redis_client.xrange(stream, count=1))[0][1][b"s"])
    # A settlement for an account PostgreSQL does not know: the CDR's foreign key fails.
    entry["accounts"] = [f"{keys.tag(0)}:acct:999999999"]
    entry["levels"], entry["billed"], entry["costs"] = entry["levels"][:1], [6], [100]
    entry["meta"]["session_id"] = "orphan"
    orphan_id = (await redis_client.xadd(stream, {"s": json.dumps(entry)})).decode()
    # A session id too long for the CDR key's index (random, so it does not compress).
    huge = json.loads((await redis_client.xrange(stream, count=1))[0][1][b"s"])
    huge["meta"]["session_id"] = secrets.token_hex(4000)
    huge_id = (await redis_client.xadd(stream, {"s": json.dumps(huge)})).decode()
    calls = await switch.many(tree, keys.prefix, 15, start=15, calls=calls)
    worker = committer(redis_client, db_pool, keys, config=CommitterConfig(batch_size=500))
    await worker.process_available()
    assert (worker.rows, worker.dead_lettered) == (30, 2)
    await assert_exactly_once(db_pool, tree, calls)
    dead = await redis_client.xrange(keys.dead_settlements(0))
    assert [d[1][b"id"].decode() for d in dead] == [orphan_id, huge_id]
    assert b"ForeignKeyViolation" in dead[0][1][b"error"]
    assert b"ProgramLimitExceeded" in dead[1][1][b"error"]
    assert await stream_len(redis_client, keys) == 0


def _url_via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_url)
    p = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await p.start()
    yield p
    await p.close()


async def test_postgresql_outage_keeps_entries_pending_then_commits(
    database_url: str,
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
    tree: Tree,
    switch: Switch,
    proxy: TcpProxy,
) -> None:
    pool = await asyncpg.create_pool(
        _url_via(database_url, proxy.port), min_size=1, max_size=2, timeout=2.0
    )
    worker = committer(redis_client, pool, keys)
    try:
        await worker.start()
        calls = await switch.many(tree, keys.prefix, 20)
        first = calls.settled[-1]
        assert await worker.wait_committed(first.stream, first.stream_id, 5.0)
        await proxy.cut()
        calls = await switch.many(tree, keys.prefix, 30, start=20, calls=calls)
        last = calls.settled[-1]
        assert not await worker.wait_committed(last.stream, last.stream_id, 0.5)
        await eventually(lambda: worker.retries >= 3)
        # The batch in hand stays pending, the rest waits in the stream: all 30 kept.
        pending = await redis_client.xpending(keys.settlements(0), GROUP)
        assert 1 <= pending["pending"] <= 30
        assert await stream_len(redis_client, keys) == 30
        assert await db_pool.fetchval("SELECT count(*) FROM cdrs WHERE nas = $1", keys.prefix) == 20
        await proxy.restore()
        assert await worker.wait_committed(last.stream, last.stream_id, 10.0)
    finally:
        await worker.stop()
        await pool.close()
    await assert_exactly_once(db_pool, tree, calls)
    assert await stream_len(redis_client, keys) == 0


async def test_restarted_committer_resumes_its_pending_entries(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    calls = await switch.many(tree, keys.prefix, 25)
    first = committer(redis_client, db_pool, keys, consumer="node-1")
    await first.ensure_groups()
    # The first life read the entries and died before committing them.
    stream = keys.settlements(0)
    read = await redis_client.xreadgroup(GROUP, "node-1", {stream: ">"}, count=100)
    assert len(read[0][1]) == 25
    calls = await switch.many(tree, keys.prefix, 5, start=25, calls=calls)
    second = committer(redis_client, db_pool, keys, consumer="node-1")
    await second.start()
    try:
        last = calls.settled[-1]
        assert await second.wait_committed(last.stream, last.stream_id, 5.0)
        assert await second.wait_committed(calls.settled[0].stream, calls.settled[0].stream_id, 5.0)
    finally:
        await second.stop()
    assert second.claimed == 0
    await assert_exactly_once(db_pool, tree, calls)
    assert (await redis_client.xpending(stream, GROUP))["pending"] == 0


async def test_idle_entries_of_a_dead_consumer_are_claimed(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    calls = await switch.many(tree, keys.prefix, 30)
    stream = keys.settlements(0)
    alive = committer(
        redis_client,
        db_pool,
        keys,
        consumer="alive",
        config=CommitterConfig(batch_size=50, retry_delay_s=0.05, claim_idle_s=1.0),
    )
    await alive.ensure_groups()
    await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=100)
    # Not idle long enough yet: nothing is taken.
    assert await alive.claim_idle() == 0
    await asyncio.sleep(1.1)
    await alive.start()
    try:
        last = calls.settled[-1]
        assert await alive.wait_committed(last.stream, last.stream_id, 5.0)
    finally:
        await alive.stop()
    assert alive.claimed == 30
    await assert_exactly_once(db_pool, tree, calls)
    assert (await redis_client.xpending(stream, GROUP))["pending"] == 0


async def test_every_shard_is_drained(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> None:
    sharded = Keys(keys.prefix, shards=3)
    trees = [await make_tree(db_pool, customers=1) for _ in range(4)]
    switch = Switch(redis_client, sharded)
    everything: list[tuple[Tree, Calls]] = []
    try:
        for i, tree in enumerate(trees):
            await switch.load(tree)
            everything.append((tree, await switch.many(tree, f"{keys.prefix}-{i}", 40)))
    finally:
        await switch.pipeliner.close()
    assert len({sharded.shard_of(t.wholesale) for t in trees}) > 1
    worker = committer(redis_client, db_pool, sharded, config=CommitterConfig(batch_size=64))
    assert await worker.process_available() == 4 * 40
    for tree, calls in everything:
        await assert_exactly_once(db_pool, tree, calls)


async def test_stop_drains_what_is_there(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    worker = committer(redis_client, db_pool, keys, config=CommitterConfig(batch_size=20))
    await worker.start()
    calls = await switch.many(tree, keys.prefix, 300)
    await worker.stop()
    await assert_exactly_once(db_pool, tree, calls)
    assert await stream_len(redis_client, keys) == 0


async def test_missing_month_partition_is_created(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    calls = Calls(keys.prefix)
    setup = datetime(2037, 9, 17, 12, tzinfo=UTC).timestamp()  # no other test uses it
    await switch.call(tree, tree.customers[0], keys.prefix, "far-month", 30, setup, calls)
    await committer(redis_client, db_pool, keys).process_available()
    part = await db_pool.fetchval(
        "SELECT tableoid::regclass::text FROM cdrs WHERE nas = $1", keys.prefix
    )
    assert part == "cdrs_203709"
    await assert_exactly_once(db_pool, tree, calls)


async def test_two_committers_share_the_work(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys, tree: Tree, switch: Switch
) -> None:
    config = CommitterConfig(batch_size=25, retry_delay_s=0.05)
    workers = [committer(redis_client, db_pool, keys, f"w{i}", config) for i in range(2)]
    for worker in workers:
        await worker.start()
    try:
        calls = await switch.many(tree, keys.prefix, 400)
        last = calls.settled[-1]
        # Either committer may hold the last entry; both see it committed.
        for worker in workers:
            assert await worker.wait_committed(last.stream, last.stream_id, 10.0)
    finally:
        for worker in workers:
            await worker.stop()
    assert all(w.rows > 0 for w in workers)
    assert sum(w.rows for w in workers) == 400
    await assert_exactly_once(db_pool, tree, calls)


async def test_stop_is_bounded_when_postgresql_is_down(
    database_url: str,
    redis_client: aioredis.Redis,
    keys: Keys,
    tree: Tree,
    switch: Switch,
    proxy: TcpProxy,
) -> None:
    pool = await asyncpg.create_pool(
        _url_via(database_url, proxy.port), min_size=1, max_size=2, timeout=2.0
    )
    worker = Committer(FAST, redis_client, pool, keys, "c1", drain_timeout_s=0.5)
    try:
        await worker.start()
        await proxy.cut()
        await switch.many(tree, keys.prefix, 10)
        await eventually(lambda: worker.retries >= 1)
        started = time.monotonic()
        await worker.stop()
        assert time.monotonic() - started < 2.0
    finally:
        await pool.close()
    # Nothing was lost: the entries wait in the stream for the next committer.
    assert await stream_len(redis_client, keys) == 10
