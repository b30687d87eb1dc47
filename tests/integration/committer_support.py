"""Real settlements for committer tests: accounts in PostgreSQL, calls through the Lua scripts."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from gateway.balance.cluster_pipeliner import pipeliner_for
from gateway.balance.keys import Keys
from gateway.balance.redisconn import RedisClient
from gateway.balance.store import BalanceStore, SessionRef
from gateway.balance.types import CallEnd, CallMeta, Settled
from gateway.config import BalanceConfig
from gateway.rating.chain import Chain, Level
from gateway.rating.rates import Rate

START_BALANCE = 10_000_000_000  # 10,000 currency units
CUSTOMER_RATE = Rate(
    "44", "UK", 60_000, connect_fee_micros=1_000, first_increment_s=30, next_increment_s=6
)
AGENT_RATE = Rate("44", "UK", 30_000, first_increment_s=60, next_increment_s=60)


@dataclass
class Tree:
    """A wholesale agent with customers, and a transfer agent with one customer."""

    wholesale: int
    transfer: int
    customers: list[int]  # under the wholesale agent
    transfer_customer: int

    @property
    def accounts(self) -> list[int]:
        return [self.wholesale, self.transfer, *self.customers, self.transfer_customer]

    def chain(self, customer: int) -> Chain:
        if customer == self.transfer_customer:
            levels = (Level(customer, True, CUSTOMER_RATE, 1), Level(self.transfer, False))
            return Chain(self.transfer, levels)
        return Chain(
            self.wholesale,
            (Level(customer, True, CUSTOMER_RATE, 1), Level(self.wholesale, True, AGENT_RATE, 2)),
        )


async def _account(
    conn: asyncpg.Connection, kind: str, parent: int | None, mode: str | None
) -> int:
    value: int = await conn.fetchval(
        "INSERT INTO accounts (kind, name, parent_id, billing_mode, balance_micros) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        kind,
        f"{kind}-{random.randrange(10**9)}",
        parent,
        mode,
        START_BALANCE,
    )
    return value


async def make_tree(pool: asyncpg.Pool, customers: int = 3) -> Tree:
    async with pool.acquire() as conn:
        wholesale = await _account(conn, "agent", None, "wholesale")
        transfer = await _account(conn, "agent", None, "transfer")
        ids = [await _account(conn, "customer", wholesale, None) for _ in range(customers)]
        tc = await _account(conn, "customer", transfer, None)
    return Tree(wholesale, transfer, ids, tc)


@dataclass
class Calls:
    """Settled calls and what they cost each account."""

    nas: str
    settled: list[Settled] = field(default_factory=list)
    spent: Counter[int] = field(default_factory=Counter)
    metas: list[CallMeta] = field(default_factory=list)


class Switch:
    """Places calls through the real balance scripts (BalanceStore)."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.keys = keys
        self.pipeliner = pipeliner_for(redis)
        self.store = BalanceStore(self.pipeliner, keys, BalanceConfig())

    async def load(self, tree: Tree) -> None:
        roots = {
            tree.wholesale: tree.wholesale,
            tree.transfer: tree.transfer,
            tree.transfer_customer: tree.transfer,
        }
        roots.update({c: tree.wholesale for c in tree.customers})
        for account, root in roots.items():
            await self.pipeliner.call(
                "load_account",
                (self.keys.account(root, account),),
                (START_BALANCE, 0, -1, "active", 0),
            )

    async def call(
        self,
        tree: Tree,
        customer: int,
        nas: str,
        session: str,
        duration: int,
        setup_at: float,
        calls: Calls,
    ) -> Settled:
        chain = tree.chain(customer)
        ref = SessionRef(chain.root_id, f"{nas}:{session}")
        meta = CallMeta(
            nas=nas,
            session_id=session,
            setup_at=setup_at,
            caller="4930123",
            called="447700900123",
            called_dialled="00447700900123",
            remote_addr="192.0.2.7",
            prefixes=("44", "44" if customer != tree.transfer_customer else ""),
            rate_groups=(1, 2 if customer != tree.transfer_customer else 0),
        )
        grant = await self.store.reserve(ref, chain, meta, now=setup_at)
        assert hasattr(grant, "granted_s"), grant
        if duration > 0:
            await self.store.answered(ref, setup_at + 2)
        settled = await self.store.settle(
            ref, duration, CallEnd(disconnect_at=setup_at + 2 + duration, cause="10", cause_q850=16)
        )
        calls.settled.append(settled)
        calls.metas.append(meta)
        for account, cost in zip(chain.account_ids, settled.costs_micros, strict=True):
            calls.spent[account] += cost
        return settled

    async def many(
        self,
        tree: Tree,
        nas: str,
        count: int,
        *,
        start: int = 0,
        calls: Calls | None = None,
        concurrency: int = 200,
    ) -> Calls:
        """``count`` calls spread over the tree's customers, placed concurrently."""
        calls = calls or Calls(nas)
        customers = [*tree.customers, tree.transfer_customer]
        base = time.time() - 3600
        rng = random.Random(start)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await self.call(
                    tree,
                    customers[i % len(customers)],
                    nas,
                    f"sess-{i}",
                    rng.choice((0, 1, 7, 31, 65, 600)),
                    base + i * 0.001,
                    calls,
                )

        await asyncio.gather(*(one(i) for i in range(start, start + count)))
        return calls


async def balances(pool: asyncpg.Pool, accounts: Sequence[int]) -> dict[int, int]:
    rows = await pool.fetch(
        "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])", list(accounts)
    )
    return {r["id"]: r["balance_micros"] for r in rows}


async def assert_exactly_once(pool: asyncpg.Pool, tree: Tree, calls: Calls) -> None:
    """Every settled call is one CDR, its ledger rows are there once, balances add up."""
    n = len(calls.settled)
    count = await pool.fetchval("SELECT count(*) FROM cdrs WHERE nas = $1", calls.nas)
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT session_id) FROM cdrs WHERE nas = $1", calls.nas
    )
    assert (count, distinct) == (n, n)
    expected_ledger = sum(1 for s in calls.settled for c in s.costs_micros if c > 0)
    ledger = await pool.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(amount_micros), 0) AS total FROM ledger_entries "
        "WHERE kind = 'call_debit' AND account_id = ANY($1::bigint[])",
        tree.accounts,
    )
    assert ledger["n"] == expected_ledger
    assert -ledger["total"] == sum(calls.spent.values())
    got = await balances(pool, tree.accounts)
    assert got == {a: START_BALANCE - calls.spent[a] for a in tree.accounts}
