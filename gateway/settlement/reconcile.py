"""Compare the Redis mirror with PostgreSQL, the truth; report drift, optionally repair.

For every mirrored account:
- ``bal`` must equal the PostgreSQL balance less the settlements still in the
  stream (the committer deletes an entry once PostgreSQL has it);
- ``held`` and ``calls`` must equal the sums over the account's live sessions.

Live traffic moves these numbers while they are read, so a drift is reported only
when a second read finds the same difference. Repairs are applied as increments,
so a call settled meanwhile is not overwritten.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from gateway.balance import fields
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient, redis_errors
from gateway.settlement.entry import SettlementEntry

_FIELDS = (fields.BALANCE, fields.HELD_MICROS, fields.CALLS)


@dataclass(frozen=True, slots=True)
class Drift:
    account_id: int
    field: str  # bal, held or calls
    redis_value: int
    expected: int

    @property
    def difference(self) -> int:
        return self.redis_value - self.expected


@dataclass(frozen=True, slots=True)
class Report:
    accounts_checked: int
    pending_settlements: int
    live_sessions: int
    drifts: tuple[Drift, ...]
    repaired: bool
    dead_letters: int = 0  # settlements the committer could not store: see the :dead streams


@dataclass
class _Snapshot:
    pending_costs: dict[int, int]
    pending: int
    held: dict[str, int]
    calls: dict[str, int]
    live: int


async def _snapshot(client: RedisClient, keys: Keys) -> _Snapshot:
    costs: dict[int, int] = defaultdict(int)
    held: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    pending = live = 0
    for shard in range(keys.shards):
        for _entry_id, entry_fields in await client.xrange(keys.settlements(shard)) or []:
            raw = (entry_fields or {}).get(b"s")
            try:
                entry = SettlementEntry.from_json(raw or b"")
            except (KeyError, ValueError, TypeError):
                continue  # the committer dead-letters it; it moved no committed money
            pending += 1
            for account_id, cost in zip(entry.account_ids, entry.costs_micros, strict=True):
                costs[account_id] += cost
    async for session in client.scan_iter(match=keys.sessions_pattern(), count=1000):
        state, holds, accounts = await client.hmget(
            session, [fields.STATE, fields.HOLDS, fields.ACCOUNTS]
        )
        if state not in fields.LIVE_STATES or holds is None or accounts is None:
            continue
        live += 1
        for key, hold in zip(json.loads(accounts), json.loads(holds), strict=True):
            held[key] += int(hold)
            calls[key] += 1
    return _Snapshot(costs, pending, held, calls, live)


async def _compare(
    client: RedisClient, keys: Keys, rows: list[asyncpg.Record], snap: _Snapshot
) -> list[Drift]:
    drifts: list[Drift] = []
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.hmget(keys.account(row["root_id"], row["id"]), list(_FIELDS))
    for row, values in zip(rows, await pipe.execute(), strict=True):
        if values[0] is None:
            continue  # not mirrored: loaded from PostgreSQL on first use
        key = keys.account(row["root_id"], row["id"])
        expected = (
            row["balance_micros"] - snap.pending_costs.get(row["id"], 0),
            snap.held.get(key, 0),
            snap.calls.get(key, 0),
        )
        for field, value, want in zip(_FIELDS, values, expected, strict=True):
            if int(value) != want:
                drifts.append(Drift(row["id"], field, int(value), want))
    return drifts


async def reconcile(pool: asyncpg.Pool, client: RedisClient, keys: Keys, *, repair: bool) -> Report:
    """Check every mirrored account; with ``repair``, bring Redis to PostgreSQL's values."""
    sql = "SELECT id, root_id, balance_micros FROM accounts ORDER BY id"
    with redis_errors():
        async with pool.acquire() as conn:
            rows = await conn.fetch(sql)
        first = await _compare(client, keys, rows, await _snapshot(client, keys))
        if first:
            async with pool.acquire() as conn:
                rows = await conn.fetch(sql)
            snap = await _snapshot(client, keys)
            second = set(await _compare(client, keys, rows, snap))
            drifts = tuple(d for d in first if d in second)
        else:
            snap = await _snapshot(client, keys)
            drifts = ()
        roots = {row["id"]: row["root_id"] for row in rows}
        if repair and drifts:
            pipe = client.pipeline(transaction=False)
            for d in drifts:
                pipe.hincrby(
                    keys.account(roots[d.account_id], d.account_id), d.field, -d.difference
                )
            await pipe.execute()
        dead = 0
        for shard in range(keys.shards):
            dead += int(await client.xlen(keys.dead_settlements(shard)))
    return Report(
        len(rows),
        snap.pending,
        snap.live,
        drifts,
        repaired=repair and bool(drifts),
        dead_letters=dead,
    )
