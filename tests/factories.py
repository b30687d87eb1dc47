"""Test data builders on the real database: account trees and rate groups."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from gateway.balance.types import CallMeta
from gateway.db import Connection
from gateway.loadgen.population import create_rate_group
from gateway.rating.chain import Chain, Level
from gateway.rating.rates import Rate

_names = itertools.count(1)


async def rate_group(conn: Connection, rates: list[Rate]) -> int:
    return await create_rate_group(conn, f"test-group-{next(_names)}", rates, "test")


async def account(
    conn: Connection,
    *,
    kind: str = "customer",
    parent: int | None = None,
    mode: str | None = None,
    balance: int = 0,
    credit_limit: int = 0,
    max_calls: int | None = None,
    rate_group_id: int | None = None,
    status: str = "active",
) -> int:
    """An account with ``balance`` booked as an opening ledger refill."""
    account_id: int = await conn.fetchval(
        "INSERT INTO accounts (kind, name, parent_id, billing_mode, balance_micros, "
        "credit_limit_micros, max_concurrent_calls, rate_group_id, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        kind,
        f"test-{kind}-{next(_names)}",
        parent,
        mode if kind == "agent" else None,
        balance,
        credit_limit,
        max_calls,
        rate_group_id,
        status,
    )
    if balance:
        await conn.execute(
            "INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key) "
            "VALUES ($1, 'refill', $2, $3)",
            account_id,
            balance,
            f"test-opening-{account_id}",
        )
    return account_id


@dataclass(frozen=True)
class Tree:
    """customer -> sub-agent -> top agent, all wholesale, each with its own rate."""

    top: int
    sub: int
    customer: int
    rates: tuple[Rate, Rate, Rate]  # customer, sub, top

    def chain(self) -> Chain:
        return Chain(
            self.top,
            (
                Level(self.customer, True, self.rates[0]),
                Level(self.sub, True, self.rates[1]),
                Level(self.top, True, self.rates[2]),
            ),
        )


def rate(price: int, first: int = 60, nxt: int = 60, fee: int = 0, prefix: str = "44") -> Rate:
    return Rate(
        prefix=prefix,
        destination="test",
        price_per_min_micros=price,
        connect_fee_micros=fee,
        first_increment_s=first,
        next_increment_s=nxt,
    )


async def tree(
    conn: Connection,
    *,
    customer_balance: int,
    sub_balance: int,
    top_balance: int,
    prices: tuple[int, int, int] = (60_000, 40_000, 30_000),
    customer_max_calls: int | None = None,
    sub_mode: str = "wholesale",
) -> Tree:
    rates = (rate(prices[0]), rate(prices[1]), rate(prices[2]))
    top = await account(conn, kind="agent", mode="wholesale", balance=top_balance)
    sub = await account(conn, kind="agent", mode=sub_mode, parent=top, balance=sub_balance)
    customer = await account(
        conn, parent=sub, balance=customer_balance, max_calls=customer_max_calls
    )
    return Tree(top, sub, customer, rates)


def meta(session_id: str, nas: str = "10.0.0.1") -> CallMeta:
    return CallMeta(
        nas=nas,
        session_id=session_id,
        setup_at=round(time.time(), 3),
        caller="442071230001",
        called="4930901820",
        called_dialled="004930901820",
    )


def mirrored(balance: int) -> dict[str, int | str]:
    """An account hash as the mirror writes it to Redis: active, no credit limit, no
    call limit, nothing held; for tests that place accounts in Redis directly."""
    return {"bal": balance, "lim": 0, "held": 0, "calls": 0, "maxc": -1, "st": "active", "lver": 0}
