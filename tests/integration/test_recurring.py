"""The charge job against real PostgreSQL and Redis: two gateways never charge a period
twice, a charge cut off after the money moved is finished without moving it again,
and money held by calls in progress is not spent on a fee."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.agents.context import ManagementContext
from gateway.agents.recurring import charge_due, charge_key, today_utc
from gateway.balance.keys import Keys
from gateway.balance.moves import MoneyMove, Posting, move_money
from gateway.config import Config
from tests import factories

FEE = 70_000
BASE_FEE = 30_000


async def _subscribed(pool: asyncpg.Pool, customers: int) -> tuple[int, list[int], list[int]]:
    """A wholesale agent reselling an operator product to ``customers`` customers."""
    async with pool.acquire() as conn:
        group = await factories.rate_group(conn, [factories.rate(1_000)])
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=10**9, rate_group_id=group
        )
        base = await conn.fetchval(
            "INSERT INTO products (name, kind, price_micros) VALUES ($1, 'monthly', $2) "
            "RETURNING id",
            f"trunk-{agent}",
            BASE_FEE,
        )
        product = await conn.fetchval(
            "INSERT INTO products (owner_account_id, base_product_id, name, kind, price_micros) "
            "VALUES ($1, $2, 'trunk', 'monthly', $3) RETURNING id",
            agent,
            base,
            FEE,
        )
        ids, subs = [], []
        for _ in range(customers):
            c = await factories.account(conn, parent=agent, balance=1_000_000, rate_group_id=group)
            ids.append(c)
            subs.append(
                await conn.fetchval(
                    "INSERT INTO subscriptions (account_id, product_id, starts_on, bill_day) "
                    "VALUES ($1, $2, $3, 1) RETURNING id",
                    c,
                    product,
                    today_utc(),
                )
            )
    return agent, ids, subs


@pytest.fixture
async def second_gateway(
    config: Config, database_url: str, redis_url: str, keys: Keys
) -> AsyncIterator[ManagementContext]:
    """Another gateway's management side: its own pool and Redis connection."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    client = aioredis.Redis.from_url(redis_url)
    context = ManagementContext.create(config, pool, client, keys)
    await context.start()
    yield context
    await context.close()
    await client.aclose()
    await pool.close()


async def test_two_gateways_charge_each_period_once(
    ctx: ManagementContext, second_gateway: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent, customers, subs = await _subscribed(db_pool, 25)
    rounds = [charge_due(c) for _ in range(3) for c in (ctx, second_gateway)]
    outcomes = [o for batch in await asyncio.gather(*rounds) for o in batch]
    mine = [o for o in outcomes if o.subscription_id in subs and o.status == "charged"]
    assert sorted(o.subscription_id for o in mine) == sorted(subs)  # each exactly once
    rows = await db_pool.fetch(
        "SELECT account_id, count(*) AS n, sum(amount_micros) AS total FROM ledger_entries "
        "WHERE kind = 'recurring' AND account_id = ANY($1::bigint[]) GROUP BY account_id",
        [agent, *customers],
    )
    by_account = {r["account_id"]: (r["n"], r["total"]) for r in rows}
    assert by_account[agent] == (25, -25 * BASE_FEE)
    assert all(by_account[c] == (1, -FEE) for c in customers)
    statuses = await db_pool.fetch(
        "SELECT status, count(*) FROM recurring_charges WHERE subscription_id = ANY($1) "
        "GROUP BY status",
        subs,
    )
    assert [(r["status"], r["count"]) for r in statuses] == [("charged", 25)]
    balances = await db_pool.fetch(
        "SELECT balance_micros FROM accounts WHERE id = ANY($1::bigint[])", customers
    )
    assert {r["balance_micros"] for r in balances} == {1_000_000 - FEE}


async def test_a_charge_cut_off_after_the_money_moved_is_finished_once(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent, [customer], [sub] = await _subscribed(db_pool, 1)
    # A gateway booked the move, then died before recording it.
    move = MoneyMove(
        "recurring",
        charge_key(sub, today_utc()),
        (Posting(customer, -FEE), Posting(agent, -BASE_FEE)),
    )
    await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)
    [outcome] = [o for o in await charge_due(ctx) if o.subscription_id == sub]
    assert outcome.status == "charged" and outcome.amount_micros == FEE
    count = await db_pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE kind = 'recurring' AND account_id = $1",
        customer,
    )
    assert count == 1


async def test_money_held_by_calls_is_not_spent_on_a_fee(
    ctx: ManagementContext, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> None:
    _, [customer], [sub] = await _subscribed(db_pool, 1)
    root = await db_pool.fetchval("SELECT root_id FROM accounts WHERE id = $1", customer)
    # The mirror: 1.00 on the account, 0.95 of it held by a call in progress.
    await redis_client.hset(
        keys.account(root, customer), mapping={**factories.mirrored(1_000_000), "held": 950_000}
    )
    [outcome] = [o for o in await charge_due(ctx) if o.subscription_id == sub]
    assert outcome.status == "unpaid" and "INSUFFICIENT_FUNDS" in outcome.detail
    balance = await db_pool.fetchval("SELECT balance_micros FROM accounts WHERE id = $1", customer)
    assert balance == 1_000_000


async def _in_currencies(pool: asyncpg.Pool, agent: int, customer: int, pair: str) -> None:
    """The agent sells in ``Z{pair}U``, its customer holds ``Z{pair}E``."""
    await pool.execute("UPDATE accounts SET currency = $2 WHERE id = $1", agent, f"Z{pair}U")
    await pool.execute("UPDATE accounts SET currency = $2 WHERE id = $1", customer, f"Z{pair}E")


async def test_a_fee_priced_in_the_sellers_currency_is_converted_for_the_payer(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent, [customer], [sub] = await _subscribed(db_pool, 1)
    await _in_currencies(db_pool, agent, customer, "A")
    await db_pool.execute(
        "INSERT INTO exchange_rates (from_currency, to_currency, rate, effective_from) "
        "VALUES ('ZAU', 'ZAE', 0.333333, now() - interval '1 day')"
    )
    [outcome] = [o for o in await charge_due(ctx) if o.subscription_id == sub]
    # 0.07 ZAU at 0.333333 = 23333.31 ZAE micros: the payer rounds up to 23334. The
    # agent pays the operator's product in its own currency, unconverted.
    assert outcome.status == "charged" and outcome.amount_micros == 23_334
    rows = {
        r["account_id"]: r
        for r in await db_pool.fetch(
            "SELECT * FROM ledger_entries WHERE id = ANY($1::bigint[])", list(outcome.ledger_ids)
        )
    }
    paid = rows[customer]
    assert (paid["amount_micros"], paid["counter_amount_micros"]) == (-23_334, -FEE)
    assert (paid["counter_currency"], paid["exchange_quote"]) == ("ZAU", "ZAU/ZAE")
    assert rows[agent]["amount_micros"] == -BASE_FEE and rows[agent]["counter_currency"] is None


async def test_a_fee_with_no_rate_in_force_stays_unpaid_and_moves_nothing(
    ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent, [customer], [sub] = await _subscribed(db_pool, 1)
    await _in_currencies(db_pool, agent, customer, "B")
    [outcome] = [o for o in await charge_due(ctx) if o.subscription_id == sub]
    assert outcome.status == "unpaid" and outcome.detail.startswith("NO_EXCHANGE_RATE")
    moved = await db_pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE kind = 'recurring' "
        "AND account_id = ANY($1::bigint[])",
        [agent, customer],
    )
    assert moved == 0
