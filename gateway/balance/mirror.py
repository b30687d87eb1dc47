"""The Redis mirror of PostgreSQL accounts: loaded on first use, synced on change.

A load reads the PostgreSQL row ``FOR SHARE`` and writes the Redis hash while the
row lock is held, so a money move (which updates the row) either committed before
the read (its version is in the snapshot, and apply_move.lua skips it) or runs
after the hash exists (and apply_move.lua applies it). No move is lost or doubled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from gateway.balance.keys import Keys
from gateway.balance.scripts import ScriptRunner
from gateway.db.pool import pg_errors

_RULES = (
    "r.max_spend_hour_micros, r.max_spend_day_micros, r.max_spend_call_micros, "
    "r.max_attempts_per_s, r.max_attempts_per_min"
)
_SELECT = f"""
SELECT a.id, a.root_id, a.balance_micros, a.credit_limit_micros, a.max_concurrent_calls,
       a.status, a.money_version, {_RULES}
FROM accounts a LEFT JOIN call_rules r ON r.account_id = a.id
WHERE a.id = ANY($1::bigint[]) ORDER BY a.id FOR SHARE OF a
"""
_RULE_COLUMNS = (
    "max_spend_hour_micros",
    "max_spend_day_micros",
    "max_spend_call_micros",
    "max_attempts_per_s",
    "max_attempts_per_min",
)


def _rule_args(row: asyncpg.Record) -> tuple[int, ...]:
    """The call-rule limits the scripts read (lib.lua), -1 for none."""
    return tuple(-1 if row[c] is None else row[c] for c in _RULE_COLUMNS)


class AccountMirror:
    """Copies accounts from PostgreSQL into Redis (money, limits, status)."""

    def __init__(self, pool: asyncpg.Pool, pipeliner: ScriptRunner, keys: Keys) -> None:
        self.pool = pool
        self.pipeliner = pipeliner
        self.keys = keys
        self.loads = 0
        self._inflight: dict[int, asyncio.Future[None]] = {}

    async def load(self, account_ids: Sequence[int]) -> int:
        """Mirror the accounts not mirrored yet; return how many this call loaded.

        Concurrent loads of the same account share one read (a burst of first calls
        of a new customer must not become a burst of PostgreSQL transactions).
        """
        waiting = [self._inflight[a] for a in account_ids if a in self._inflight]
        mine = [a for a in dict.fromkeys(account_ids) if a not in self._inflight]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for account_id in mine:
            self._inflight[account_id] = done
        try:
            loaded = await self._load(mine) if mine else 0
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved here: waiters re-raise it, none is required
            raise
        finally:
            for account_id in mine:
                self._inflight.pop(account_id, None)
        if waiting:
            await asyncio.gather(*waiting)
        return loaded

    async def _load(self, account_ids: list[int]) -> int:
        loaded = 0
        with pg_errors():
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_SELECT, account_ids)
                for row in rows:
                    max_calls = row["max_concurrent_calls"]
                    done = await self.pipeliner.call(
                        "load_account",
                        (self.keys.account(row["root_id"], row["id"]),),
                        (
                            row["balance_micros"],
                            row["credit_limit_micros"],
                            -1 if max_calls is None else max_calls,
                            row["status"],
                            row["money_version"],
                            *_rule_args(row),
                        ),
                    )
                    loaded += int(done)
        self.loads += loaded
        return loaded

    async def sync_many(self, account_ids: Sequence[int]) -> None:
        """``sync`` each account (the directory calls this when limits or status change)."""
        for account_id in account_ids:
            await self.sync(account_id)

    async def sync(self, account_id: int) -> bool:
        """Copy the account's credit limit, call limit, status and call-rule limits;
        False if not mirrored."""
        with pg_errors():
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT a.root_id, a.credit_limit_micros, a.max_concurrent_calls, a.status, "
                    f"{_RULES} FROM accounts a LEFT JOIN call_rules r ON r.account_id = a.id "
                    "WHERE a.id = $1",
                    account_id,
                )
        if row is None:
            return False
        max_calls = row["max_concurrent_calls"]
        done = await self.pipeliner.call(
            "sync_account",
            (self.keys.account(row["root_id"], account_id),),
            (
                row["credit_limit_micros"],
                -1 if max_calls is None else max_calls,
                row["status"],
                *_rule_args(row),
            ),
        )
        return int(done) == 1
