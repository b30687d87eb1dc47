"""Accounting-On/Off: the calls a switch still holds are found on every shard (on a
cluster, on every primary) and nothing of another switch is."""

from __future__ import annotations

import asyncpg

from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import Grant
from tests import factories


async def test_every_open_call_of_a_switch_is_found_on_every_shard(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    keys = balance.store.keys
    expected: dict[str, float | None] = {}
    roots = set()
    async with db_pool.acquire() as conn:
        for i in range(12):
            tree = await factories.tree(
                conn, customer_balance=10**9, sub_balance=10**9, top_balance=10**9
            )
            roots.add(tree.top)
            for nas in ("10.9.0.1", "10.9.0.2"):
                ref = SessionRef(tree.top, f"{nas}|call-{i}")
                grant = await balance.reserve(ref, tree.chain(), factories.meta(f"c{i}", nas))
                assert isinstance(grant, Grant)
                if i % 3 == 0:
                    await balance.store.answered(ref, answered_at=1_700_000_000 + i)
                if i % 4 == 1:
                    assert await balance.store.release(ref)  # ended: not open
                elif nas == "10.9.0.1":
                    expected[balance.store.session_key(ref)] = (
                        1_700_000_000 + i if i % 3 == 0 else None
                    )
    if keys.shards > 1:
        assert len({keys.shard_of(r) for r in roots}) > 1
    found = {s.session: s async for s in balance.store.open_sessions("10.9.0.1")}
    assert set(found) == set(expected)
    for key, open_call in found.items():
        assert open_call.answered_at == expected[key]
        assert open_call.shard == keys.shard_of_key(key)
