"""Money moves: PostgreSQL first, Redis mirrored, idempotent, never overdrawing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.balance.moves import MoneyMove, MoveRefused, Posting, move_money
from gateway.balance.service import Balance
from gateway.balance.store import SessionRef
from gateway.balance.types import Grant
from tests import factories


async def _pg_balance(pool: asyncpg.Pool, account: int) -> int:
    value: int = await pool.fetchval("SELECT balance_micros FROM accounts WHERE id = $1", account)
    return value


async def _redis_balance(balance: Balance, root: int, account: int) -> int | None:
    raw = await balance.pipeliner.client.hget(balance.store.keys.account(root, account), "bal")
    return None if raw is None else int(raw)


def _move(balance: Balance, db_pool: asyncpg.Pool, move: MoneyMove):  # type: ignore[no-untyped-def]
    return move_money(db_pool, balance.pipeliner, balance.store.keys, move)


async def test_refill_is_idempotent_and_mirrored(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode="transfer", balance=1_000_000)
    await balance.mirror.load([agent])
    refill = MoneyMove("refill", f"refill-{agent}", (Posting(agent, 2_500_000),))
    first = await _move(balance, db_pool, refill)
    again = await _move(balance, db_pool, refill)
    assert not first.duplicate and again.duplicate
    assert first.ledger_ids == again.ledger_ids
    assert await _pg_balance(db_pool, agent) == 3_500_000
    assert await _redis_balance(balance, agent, agent) == 3_500_000


async def test_transfer_never_exceeds_available(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode="transfer", balance=1_000_000)
        customer = await factories.account(conn, parent=agent)
    moves = [
        MoneyMove(
            "transfer", f"t-{agent}-{i}", (Posting(agent, -300_000), Posting(customer, 300_000))
        )
        for i in range(10)
    ]
    results = await asyncio.gather(
        *(_move(balance, db_pool, m) for m in moves), return_exceptions=True
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, MoveRefused)]
    assert len(done) == 3 and len(refused) == 7
    assert all(r.code == "INSUFFICIENT_FUNDS" and r.account_id == agent for r in refused)
    assert await _pg_balance(db_pool, agent) == 100_000
    assert await _pg_balance(db_pool, customer) == 900_000
    ledger = await db_pool.fetchval(
        "SELECT sum(amount_micros) FROM ledger_entries WHERE kind = 'transfer' "
        "AND account_id = ANY($1::bigint[])",
        [agent, customer],
    )
    assert ledger == 0


async def test_live_holds_cannot_be_transferred(balance: Balance, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn, customer_balance=10**9, sub_balance=10**9, top_balance=300_000
        )
        customer = await factories.account(conn, parent=tree.top)
    grant = await balance.reserve(
        SessionRef(tree.top, "held"), tree.chain(), factories.meta("held")
    )
    assert isinstance(grant, Grant) and grant.holds_micros[2] == 300_000
    with pytest.raises(MoveRefused, match="INSUFFICIENT_FUNDS"):
        await _move(
            balance,
            db_pool,
            MoneyMove(
                "transfer",
                f"t-held-{tree.top}",
                (Posting(tree.top, -1), Posting(customer, 1)),
            ),
        )


async def test_commission_withdraw_moves_between_pockets(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode="transfer", balance=0)
    await balance.mirror.load([agent])
    await _move(
        balance,
        db_pool,
        MoneyMove("commission", f"c-{agent}", (Posting(agent, 50_000, "commission"),)),
    )
    with pytest.raises(MoveRefused):
        await _move(
            balance,
            db_pool,
            MoneyMove(
                "commission_withdraw",
                f"w1-{agent}",
                (Posting(agent, -60_000, "commission"), Posting(agent, 60_000)),
            ),
        )
    await _move(
        balance,
        db_pool,
        MoneyMove(
            "commission_withdraw",
            f"w2-{agent}",
            (Posting(agent, -50_000, "commission"), Posting(agent, 50_000)),
        ),
    )
    row = await db_pool.fetchrow(
        "SELECT balance_micros, commission_balance_micros FROM accounts WHERE id = $1", agent
    )
    assert (row["balance_micros"], row["commission_balance_micros"]) == (50_000, 0)
    assert await _redis_balance(balance, agent, agent) == 50_000


async def test_moves_racing_a_first_load_are_counted_once(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    """However a first load and refills interleave, Redis ends equal to PostgreSQL."""
    for round_ in range(5):
        async with db_pool.acquire() as conn:
            account = await factories.account(
                conn, kind="agent", mode="transfer", balance=1_000_000
            )
        refills = [
            _move(
                balance,
                db_pool,
                MoneyMove("refill", f"race-{account}-{i}", (Posting(account, 1_000 + i),)),
            )
            for i in range(20)
        ]
        loads = [balance.mirror.load([account]) for _ in range(3)]
        await asyncio.gather(*refills[:10], *loads, *refills[10:])
        expected = 1_000_000 + sum(1_000 + i for i in range(20))
        assert await _pg_balance(db_pool, account) == expected, round_
        assert await _redis_balance(balance, account, account) == expected, round_


async def test_unknown_and_removed_accounts_are_refused(
    balance: Balance, db_pool: asyncpg.Pool
) -> None:
    with pytest.raises(MoveRefused, match="UNKNOWN_ACCOUNT"):
        await _move(balance, db_pool, MoneyMove("refill", "nobody", (Posting(10**12, 1),)))
    async with db_pool.acquire() as conn:
        gone = await factories.account(conn)
        await conn.execute(
            "UPDATE accounts SET status = 'removed', removed_at = now() WHERE id = $1", gone
        )
    with pytest.raises(MoveRefused, match="ACCOUNT_REMOVED"):
        await _move(balance, db_pool, MoneyMove("refill", f"gone-{gone}", (Posting(gone, 1),)))


def test_bad_moves_are_rejected_before_any_io() -> None:
    with pytest.raises(ValueError, match="kind"):
        MoneyMove("gift", "k", (Posting(1, 1),))
    with pytest.raises(ValueError, match="non-zero"):
        MoneyMove("refill", "k", (Posting(1, 0),))
    with pytest.raises(ValueError, match="at least one"):
        MoneyMove("refill", "k", ())
