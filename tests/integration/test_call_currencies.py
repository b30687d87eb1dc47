"""A call whose chain spans currencies: a EUR customer under a USD wholesale agent.

Each level pays in its own rate group, which is in its own currency, so no exchange
rate is involved in a call: the customer is held and debited in EUR at its rate, the
agent in USD at its rate, and the committer books each debit in its account's currency.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.authz.directory import Directory
from gateway.authz.identify import Credentials
from gateway.balance.keys import Keys
from gateway.balance.service import Balance
from gateway.balance.types import CallEnd
from gateway.calls.lifecycle import Calls
from gateway.calls.types import Authorized, CallKey, Party
from gateway.config import BalanceConfig, CommitterConfig
from gateway.db.rates import load_index
from gateway.settlement.committer import Committer
from tests import factories
from tests.conftest import MakeBalance
from tests.integration.conftest import UK, StaticRates


@pytest.fixture
async def chain(
    db_pool: asyncpg.Pool, database_url: str, make_balance: MakeBalance
) -> AsyncIterator[tuple[Calls, Balance, int, int, str]]:
    async with db_pool.acquire() as conn:
        eur_group = await factories.rate_group(conn, [factories.rate(60_000, prefix="49")])
        usd_group = await factories.rate_group(conn, [factories.rate(30_000, prefix="49")])
        await conn.execute("UPDATE rate_groups SET currency = 'EUR' WHERE id = $1", eur_group)
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=50_000_000, rate_group_id=usd_group
        )
        customer = await factories.account(
            conn, parent=agent, balance=1_000_000, rate_group_id=eur_group
        )
        await conn.execute("UPDATE accounts SET currency = 'EUR' WHERE id = $1", customer)
        extension = f"fx-{customer}"
        await conn.execute(
            "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, 'sesame')",
            customer,
            extension,
        )
        index = await load_index(conn)
    balance = await make_balance(BalanceConfig(max_call_s=3600))
    directory = Directory(db_pool, database_url)
    await directory.start()
    try:
        yield Calls(directory, StaticRates(index), balance), balance, agent, customer, extension
    finally:
        await directory.stop()


async def test_each_level_pays_in_its_own_currency_end_to_end(
    chain: tuple[Calls, Balance, int, int, str],
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    keys: Keys,
) -> None:
    calls, _, agent, customer, extension = chain
    party = Party(
        username=extension,
        calling="02071234567",
        called="0049301234567",
        credentials=Credentials(password="sesame"),
    )
    key = CallKey("kamailio", f"fx-{time.monotonic_ns()}")
    decision = await calls.authorize(key, party, UK)
    assert isinstance(decision, Authorized)
    # The switch is told the customer's currency (h323-currency); 1.00 EUR at 0.06/min.
    assert (decision.currency, decision.granted_s, decision.hold_micros) == ("EUR", 960, 960_000)
    ended = await calls.ended(key, party, UK, 125, CallEnd(disconnect_at=time.time(), cause="16"))
    assert ended.settled is not None and ended.settled.costs_micros == (180_000, 90_000)

    committer = Committer(
        CommitterConfig(batch_size=50, retry_delay_s=0.05, claim_idle_s=30.0),
        redis_client,
        db_pool,
        keys,
        "fx",
        drain_timeout_s=10.0,
    )
    await committer.process_available()
    rows = await db_pool.fetch(
        "SELECT e.account_id, e.amount_micros, a.currency, e.counter_currency "
        "FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
        "WHERE e.kind = 'call_debit' AND e.account_id = ANY($1::bigint[]) ORDER BY e.id",
        [customer, agent],
    )
    assert {(r["account_id"], r["amount_micros"], r["currency"]) for r in rows} == {
        (customer, -180_000, "EUR"),
        (agent, -90_000, "USD"),
    }
    assert all(r["counter_currency"] is None for r in rows)  # no conversion in a call
    got = dict(
        await db_pool.fetch(
            "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])",
            [customer, agent],
        )
    )
    assert got == {customer: 1_000_000 - 180_000, agent: 50_000_000 - 90_000}
    cdr = await db_pool.fetchrow(
        "SELECT cost_micros, cost_per_level_micros FROM cdrs WHERE session_id = $1",
        key.session_id,
    )
    assert cdr is not None and list(cdr["cost_per_level_micros"]) == [180_000, 90_000]
