"""Reconcile: Redis against PostgreSQL, counting settlements not yet committed."""

from __future__ import annotations

import asyncpg

from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd
from gateway.settlement.reconcile import Drift, reconcile
from tests import factories


async def test_clean_mirror_has_no_drift_and_tampering_is_repaired(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=5_000_000, sub_balance=5_000_000, top_balance=5_000_000
        )
    chain = tree.chain()
    settled = SessionRef(tree.top, "rec-settled")
    live = SessionRef(tree.top, "rec-live")
    await balance.reserve(settled, chain, factories.meta("rec-settled"))
    await balance.store.settle(settled, 90, CallEnd(disconnect_at=90))
    await balance.reserve(live, chain, factories.meta("rec-live"))

    client = balance.pipeliner.client
    keys = balance.store.keys
    report = await reconcile(db_pool, client, keys, repair=False)
    assert report.drifts == ()
    assert report.pending_settlements >= 1 and report.live_sessions >= 1

    customer_key = keys.account(tree.top, tree.customer)
    await client.hincrby(customer_key, "bal", 777)
    await client.hincrby(keys.account(tree.top, tree.sub), "calls", 2)
    report = await reconcile(db_pool, client, keys, repair=False)
    assert set(report.drifts) == {
        Drift(tree.customer, "bal", 5_000_000 - 120_000 + 777, 5_000_000 - 120_000),
        Drift(tree.sub, "calls", 3, 1),
    }
    assert not report.repaired
    repaired = await reconcile(db_pool, client, keys, repair=True)
    assert repaired.repaired and len(repaired.drifts) == 2
    assert (await reconcile(db_pool, client, keys, repair=False)).drifts == ()
    assert int(await client.hget(customer_key, "bal")) == 5_000_000 - 120_000
