"""Shared by the call-lifecycle tests: a customer under a wholesale agent, with an
extension and a caller-ID, and the Calls service over real PostgreSQL and Redis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from gateway.authz.directory import Directory
from gateway.authz.identify import Credentials
from gateway.balance.service import Balance
from gateway.calls.lifecycle import Calls
from gateway.calls.types import Party, Policy
from gateway.config import BalanceConfig
from gateway.db.rates import load_index
from gateway.rating.numbers import NumberPlan
from gateway.rating.prefix_index import RatingIndex
from tests import factories
from tests.conftest import MakeBalance

_seq = itertools.count(1)
UK = Policy(plan=NumberPlan(country_code="44", international_prefixes=("00",)))


@dataclass
class StaticRates:
    index: RatingIndex


@dataclass
class World:
    calls: Calls
    balance: Balance
    directory: Directory
    customer: int
    agent: int
    extension: str
    caller_id: str


@pytest.fixture
async def world(
    db_pool: asyncpg.Pool, database_url: str, make_balance: MakeBalance
) -> AsyncIterator[World]:
    n = next(_seq)
    async with db_pool.acquire() as conn:
        group = await factories.rate_group(
            conn,
            [
                factories.rate(60_000, prefix="49"),
                factories.rate(120_000, 30, 6, prefix="4915"),
            ],
        )
        agent_group = await factories.rate_group(conn, [factories.rate(30_000, prefix="49")])
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=50_000_000, rate_group_id=agent_group
        )
        customer = await factories.account(
            conn, parent=agent, balance=1_000_000, rate_group_id=group
        )
        extension = f"ext{n}-{customer}"
        caller_id = f"4420712{customer:05d}"
        await conn.execute(
            "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, 'sesame')",
            customer,
            extension,
        )
        await conn.execute(
            "INSERT INTO caller_ids (account_id, number) VALUES ($1, $2)", customer, caller_id
        )
        index = await load_index(conn)
    balance = await make_balance(BalanceConfig(max_call_s=3600))
    directory = Directory(db_pool, database_url)
    await directory.start()
    try:
        yield World(
            Calls(directory, StaticRates(index), balance),
            balance,
            directory,
            customer,
            agent,
            extension,
            caller_id,
        )
    finally:
        await directory.stop()


def party_of(w: World, **kw: object) -> Party:
    base: dict[str, object] = {
        "username": w.extension,
        "calling": "0" + w.caller_id[2:],
        "called": "0049301234567",
        "credentials": Credentials(password="sesame"),
    }
    base.update(kw)
    return Party(**base)  # type: ignore[arg-type]
