"""Property: whatever the interleaving, money is conserved to the micro-unit.

Random interleavings of reserve / start / extend / settle / release / refill /
transfer over a 3-level wholesale chain with many concurrent sessions, in either
grant mode (whole holds, or slices extended while calls run). Throughout, no level's
available money (balance + credit limit - held) goes below zero, so no balance goes
below minus its credit limit. At the end, after the committer drained the streams,
PostgreSQL balances equal opening - settled costs + credits, the ledger sums to
them, and Redis agrees.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.balance.keys import Keys
from gateway.balance.moves import MoneyMove, MoveRefused, Posting, move_money
from gateway.balance.service import Balance
from gateway.balance.store import SessionEnded, SessionRef, UnknownSession
from gateway.balance.types import CallEnd, Grant
from gateway.config import BalanceConfig, CommitterConfig
from gateway.core.reasons import Refusal
from gateway.settlement.committer import Committer
from tests import factories

_examples = itertools.count()

op = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 5)),
    st.tuples(st.just("start"), st.integers(0, 5)),
    st.tuples(st.just("extend"), st.integers(0, 5), st.integers(0, 400)),
    st.tuples(st.just("settle"), st.integers(0, 5), st.integers(0, 400)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("refill"), st.integers(0, 2), st.integers(1, 300_000)),
    st.tuples(st.just("transfer"), st.integers(1, 400_000)),
)
# Operations in rounds; each round's operations run concurrently.
rounds = st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def money_keys(redis_namespace: str) -> Keys:
    return Keys(f"{redis_namespace}:money-property", shards=2)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=rounds,
    opening=st.tuples(st.integers(0, 600_000), st.integers(0, 900_000), st.integers(0, 1_200_000)),
    limits=st.tuples(st.integers(0, 100_000), st.integers(0, 100_000), st.integers(0, 100_000)),
    final_seconds=st.lists(st.integers(0, 400), min_size=6, max_size=6),
    slice_mode=st.booleans(),
)
async def test_money_is_conserved(
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    money_keys: Keys,
    plan: list[list[tuple[object, ...]]],
    opening: tuple[int, int, int],
    limits: tuple[int, int, int],
    final_seconds: list[int],
    slice_mode: bool,
) -> None:
    example = next(_examples)
    keys = money_keys
    config = BalanceConfig(max_call_s=300, slice_min_s=60, slice_s=120)
    balance = Balance(config, redis_client, db_pool, keys)
    try:
        await balance.pipeliner.load()
        await _run_example(
            balance,
            redis_client,
            db_pool,
            keys,
            example,
            plan,
            opening,
            limits,
            final_seconds,
            slice_mode,
        )
    finally:
        await balance.stop()  # the shared client's pool is bounded


async def _run_example(
    balance: Balance,
    redis_client: aioredis.Redis,
    db_pool: asyncpg.Pool,
    keys: Keys,
    example: int,
    plan: list[list[tuple[object, ...]]],
    opening: tuple[int, int, int],
    limits: tuple[int, int, int],
    final_seconds: list[int],
    slice_mode: bool,
) -> None:
    async with db_pool.acquire() as conn:
        tree = await factories.tree(
            conn,
            customer_balance=opening[0],
            sub_balance=opening[1],
            top_balance=opening[2],
            prices=(60_000, 45_000, 30_000),
        )
        levels = (tree.customer, tree.sub, tree.top)
        for account, limit in zip(levels, limits, strict=True):
            await conn.execute(
                "UPDATE accounts SET credit_limit_micros = $2 WHERE id = $1", account, limit
            )
    chain = tree.chain()
    expected = dict(zip(levels, opening, strict=True))
    granted: dict[int, int] = {}
    seq = itertools.count()

    def ref(session: int) -> SessionRef:
        return SessionRef(tree.top, f"prop-{example}-{session}")

    async def run(operation: tuple[object, ...]) -> None:
        kind = operation[0]
        if kind == "reserve":
            s = int(operation[1])  # type: ignore[call-overload]
            result = await balance.reserve(
                ref(s), chain, factories.meta(f"p{example}-{s}"), slice_mode=slice_mode
            )
            if isinstance(result, Grant):
                granted[s] = result.granted_s
            else:
                assert isinstance(result, Refusal)
        elif kind == "start":
            with _maybe():
                await balance.store.answered(ref(int(operation[1])), time.time())  # type: ignore[call-overload]
        elif kind == "extend":
            s, elapsed = int(operation[1]), int(operation[2])  # type: ignore[call-overload]
            with _maybe():
                await balance.store.extend(ref(s), True, elapsed_s=elapsed)
        elif kind == "settle":
            s, seconds = int(operation[1]), int(operation[2])  # type: ignore[call-overload]
            if s not in granted:
                return
            with _maybe():
                done = await balance.store.settle(
                    ref(s), min(seconds, granted[s]), CallEnd(disconnect_at=time.time())
                )
                if not done.duplicate:
                    for account, cost in zip(levels, done.costs_micros, strict=True):
                        expected[account] -= cost
        elif kind == "release":
            with _maybe():
                await balance.store.release(ref(int(operation[1])))  # type: ignore[call-overload]
        elif kind == "refill":
            account = levels[int(operation[1])]  # type: ignore[call-overload]
            amount = int(operation[2])  # type: ignore[call-overload]
            await move_money(
                db_pool,
                balance.pipeliner,
                keys,
                MoneyMove(
                    "refill", f"prop-{example}-{next(seq)}-{account}", (Posting(account, amount),)
                ),
            )
            expected[account] += amount
        elif kind == "transfer":
            amount = int(operation[1])  # type: ignore[call-overload]
            try:
                await move_money(
                    db_pool,
                    balance.pipeliner,
                    keys,
                    MoneyMove(
                        "transfer",
                        f"prop-{example}-{next(seq)}-t",
                        (Posting(tree.sub, -amount), Posting(tree.customer, amount)),
                    ),
                )
            except MoveRefused:
                return
            expected[tree.sub] -= amount
            expected[tree.customer] += amount

    await balance.mirror.load(levels)
    for round_ in plan:
        await asyncio.gather(*(run(o) for o in round_))
        for account, limit in zip(levels, limits, strict=True):
            state = await redis_client.hgetall(keys.account(tree.top, account))
            available = int(state[b"bal"]) + limit - int(state[b"held"])
            assert available >= 0, (account, state)
            assert int(state[b"bal"]) >= -limit

    # End what is still up: settle what was granted (at a drawn length), release the rest.
    for s, seconds in zip(range(6), final_seconds, strict=True):
        if s in granted:
            await run(("settle", s, seconds))
        with _maybe():
            await balance.store.release(ref(s))
    committer = Committer(
        CommitterConfig(), redis_client, db_pool, keys, consumer=f"prop-{example}"
    )
    await committer.process_available()

    rows = await db_pool.fetch(
        "SELECT a.id, a.balance_micros, (SELECT coalesce(sum(amount_micros), 0) "
        "FROM ledger_entries l WHERE l.account_id = a.id AND l.pocket = 'main') AS ledger "
        "FROM accounts a WHERE a.id = ANY($1::bigint[])",
        list(levels),
    )
    for row in rows:
        assert row["balance_micros"] == expected[row["id"]], row
        assert row["ledger"] == row["balance_micros"], row
        mirrored = await redis_client.hget(keys.account(tree.top, row["id"]), "bal")
        assert int(mirrored) == row["balance_micros"]
        state = await redis_client.hgetall(keys.account(tree.top, row["id"]))
        assert (state[b"held"], state[b"calls"]) == (b"0", b"0")


class _maybe:
    """Swallow the two outcomes a racing verb may legitimately meet."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, UnknownSession | SessionEnded)
