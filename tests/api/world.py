"""A small reseller world for API tests: two agent trees and their users.

A (wholesale) -> A1 (wholesale sub-agent); customers a1, a2 under A, a11 under A1.
B (transfer); customer b1 under B. Users: an admin, one user per agent and one per
customer, all with ``PASSWORD``. Names carry a per-world suffix so tests sharing
the run's database never collide.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

from gateway.agents.passwords import hash_password
from gateway.db import Connection
from tests import factories

PASSWORD = "correct horse 1"
_HASH = hash_password(PASSWORD)
_worlds = itertools.count(1)


@dataclass(frozen=True, slots=True)
class World:
    suffix: str
    rate_group: int
    agent_a: int
    agent_a1: int
    agent_b: int
    a1: int
    a2: int
    a11: int
    b1: int
    users: dict[str, int]  # login -> user id

    def login(self, who: str) -> str:
        """The login name of ``who`` (admin, agent_a, agent_a1, agent_b, a1, b1, ...)."""
        return f"{who}-{self.suffix}"


async def user(
    conn: Connection, login: str, role: str, account_id: int | None, password_hash: str = _HASH
) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (login, password_hash, role, account_id) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        login,
        password_hash,
        role,
        account_id,
    )
    return user_id


async def build(conn: Connection) -> World:
    suffix = f"w{next(_worlds)}x{id(conn) % 10_000}"
    group = await factories.rate_group(conn, [factories.rate(60_000, prefix="44")])
    a = await factories.account(
        conn, kind="agent", mode="wholesale", balance=100_000_000, rate_group_id=group
    )
    a1 = await factories.account(
        conn, kind="agent", mode="wholesale", parent=a, balance=50_000_000, rate_group_id=group
    )
    b = await factories.account(
        conn, kind="agent", mode="transfer", balance=80_000_000, rate_group_id=group
    )
    c_a1 = await factories.account(conn, parent=a, balance=5_000_000, rate_group_id=group)
    c_a2 = await factories.account(conn, parent=a, balance=1_000_000, rate_group_id=group)
    c_a11 = await factories.account(conn, parent=a1, balance=2_000_000, rate_group_id=group)
    c_b1 = await factories.account(conn, parent=b, balance=3_000_000, rate_group_id=group)
    users: dict[str, int] = {}
    for who, role, account in (
        ("admin", "admin", None),
        ("agent_a", "agent", a),
        ("agent_a1", "agent", a1),
        ("agent_b", "agent", b),
        ("a1", "customer", c_a1),
        ("b1", "customer", c_b1),
    ):
        login = f"{who}-{suffix}"
        users[login] = await user(conn, login, role, account)
    return World(suffix, group, a, a1, b, c_a1, c_a2, c_a11, c_b1, users)


async def headers(api: httpx.AsyncClient, world: World, who: str) -> dict[str, str]:
    """Authorization headers of a fresh login as ``who``."""
    reply = await api.post(
        "/api/v1/auth/login", json={"login": world.login(who), "password": PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}
