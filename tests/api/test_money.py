"""Money moves over the API: refills, payments, transfers, commission, add-funds."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.agents.context import ManagementContext
from gateway.balance.mirror import AccountMirror
from tests.api.world import World, headers

_keys = itertools.count(1)


def key(tag: str = "k") -> str:
    return f"{tag}-{next(_keys)}"


async def pg(db_pool: asyncpg.Pool, account: int) -> tuple[int, int]:
    row = await db_pool.fetchrow(
        "SELECT balance_micros, commission_balance_micros FROM accounts WHERE id = $1", account
    )
    return row["balance_micros"], row["commission_balance_micros"]


async def entries(db_pool: asyncpg.Pool, user_id: int, client_key: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db_pool.fetch(
        "SELECT * FROM ledger_entries WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
        f"api:{user_id}:{client_key}#%",
    )
    return rows


def refill_url(account: int) -> str:
    return f"/api/v1/accounts/{account}/refills"


def payment_url(account: int) -> str:
    return f"/api/v1/accounts/{account}/payments"


def fields(reply: httpx.Response) -> set[tuple[Any, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(e["loc"]) for e in reply.json()["detail"]}


async def test_admin_refill_is_idempotent(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    admin = await headers(api, world, "admin")
    body = {"amount_micros": 1_000_000, "idempotency_key": key(), "note": "top-up"}
    first = await api.post(refill_url(world.a1), json=body, headers=admin)
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["duplicate"] is False and out["mirrored"] is True
    assert out["balance_micros"] == 6_000_000 and out["payer_account_id"] is None
    again = await api.post(refill_url(world.a1), json=body, headers=admin)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["ledger_ids"] == out["ledger_ids"]
    assert await pg(db_pool, world.a1) == (6_000_000, 0)
    rows = await entries(db_pool, world.users[world.login("admin")], body["idempotency_key"])
    assert [(r["kind"], r["amount_micros"], r["note"]) for r in rows] == [
        ("refill", 1_000_000, "top-up")
    ]


async def test_key_reused_for_another_move_is_409(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    admin = await headers(api, world, "admin")
    k = key()
    ok = await api.post(
        refill_url(world.a1), json={"amount_micros": 100, "idempotency_key": k}, headers=admin
    )
    assert ok.status_code == 201
    for url, body in (
        (refill_url(world.a1), {"amount_micros": 101, "idempotency_key": k}),
        (refill_url(world.a2), {"amount_micros": 100, "idempotency_key": k}),
        (payment_url(world.a1), {"amount_micros": 100, "idempotency_key": k, "reference": "r"}),
    ):
        reply = await api.post(url, json=body, headers=admin)
        assert reply.status_code == 409, (url, reply.text)
        assert reply.json()["detail"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await pg(db_pool, world.a1) == (5_000_100, 0)
    assert await pg(db_pool, world.a2) == (1_000_000, 0)


async def test_wholesale_agent_refill_does_not_debit_the_agent(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    reply = await api.post(
        refill_url(world.a11),
        json={"amount_micros": 500_000, "idempotency_key": key()},
        headers=agent_a,
    )
    assert reply.status_code == 201, reply.text
    assert await pg(db_pool, world.a11) == (2_500_000, 0)
    assert await pg(db_pool, world.agent_a) == (100_000_000, 0)


async def test_transfer_mode_refill_is_a_transfer_with_commission(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 250 WHERE id = $1", world.agent_b
    )
    agent_b = await headers(api, world, "agent_b")
    k = key()
    reply = await api.post(
        refill_url(world.b1),
        json={"amount_micros": 2_000_001, "idempotency_key": k},
        headers=agent_b,
    )
    assert reply.status_code == 201, reply.text
    out = reply.json()
    assert out["payer_account_id"] == world.agent_b
    assert out["payer_balance_micros"] == 80_000_000 - 2_000_001
    assert len(out["ledger_ids"]) == 3
    assert await pg(db_pool, world.b1) == (5_000_001, 0)
    # floor(2_000_001 * 250 / 10_000) = 50_000
    assert await pg(db_pool, world.agent_b) == (80_000_000 - 2_000_001, 50_000)
    rows = await entries(db_pool, world.users[world.login("agent_b")], k)
    assert [(r["account_id"], r["pocket"], r["amount_micros"], r["kind"]) for r in rows] == [
        (world.agent_b, "main", -2_000_001, "transfer"),
        (world.b1, "main", 2_000_001, "transfer"),
        (world.agent_b, "commission", 50_000, "commission"),
    ]


async def test_admin_refill_credits_the_parent_commission(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 1000 WHERE id = $1", world.agent_a
    )
    admin = await headers(api, world, "admin")
    for account, amount in ((world.a2, 1_000_000), (world.agent_a1, 10_000)):
        reply = await api.post(
            refill_url(account),
            json={"amount_micros": amount, "idempotency_key": key()},
            headers=admin,
        )
        assert reply.status_code == 201
    assert await pg(db_pool, world.agent_a) == (100_000_000, 101_000)
    # A payment is no refill: no commission.
    reply = await api.post(
        payment_url(world.a2),
        json={"amount_micros": 1_000_000, "idempotency_key": key(), "reference": "INV-1"},
        headers=admin,
    )
    assert reply.status_code == 201
    assert await pg(db_pool, world.agent_a) == (100_000_000, 101_000)
    assert await pg(db_pool, world.a2) == (3_000_000, 0)


async def test_transfer_beyond_available_moves_nothing(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_b = await headers(api, world, "agent_b")
    k = key()
    reply = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.b1, "amount_micros": 80_000_001, "idempotency_key": k},
        headers=agent_b,
    )
    assert reply.status_code == 409
    assert reply.json()["detail"]["code"] == "INSUFFICIENT_FUNDS"
    assert await pg(db_pool, world.agent_b) == (80_000_000, 0)
    assert await pg(db_pool, world.b1) == (3_000_000, 0)
    assert await entries(db_pool, world.users[world.login("agent_b")], k) == []
    # The whole balance may go, not a micro more.
    whole = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.b1, "amount_micros": 80_000_000, "idempotency_key": k},
        headers=agent_b,
    )
    assert whole.status_code == 201, whole.text
    assert await pg(db_pool, world.agent_b) == (0, 0)


async def test_wholesale_agent_transfers_from_its_balance(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    reply = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.agent_a1, "amount_micros": 7, "idempotency_key": key()},
        headers=agent_a,
    )
    assert reply.status_code == 201
    assert await pg(db_pool, world.agent_a) == (100_000_000 - 7, 0)
    assert await pg(db_pool, world.agent_a1) == (50_000_007, 0)


async def test_transfer_is_mirrored_in_redis(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext
) -> None:
    mirror = AccountMirror(ctx.pool, ctx.pipeliner, ctx.keys)
    await mirror.load([world.agent_b, world.b1])
    agent_b = await headers(api, world, "agent_b")
    reply = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.b1, "amount_micros": 1_500_000, "idempotency_key": key()},
        headers=agent_b,
    )
    assert reply.status_code == 201
    assert reply.json()["mirrored"] is True

    async def redis_balance(account: int) -> int:
        raw = await ctx.redis.hget(ctx.keys.account(world.agent_b, account), "bal")
        return int(raw)

    assert await redis_balance(world.agent_b) == 78_500_000
    assert await redis_balance(world.b1) == 4_500_000


async def test_concurrent_replays_move_money_once(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_b = await headers(api, world, "agent_b")
    body = {"to_account_id": world.b1, "amount_micros": 1_000, "idempotency_key": key()}
    replies = await asyncio.gather(
        *(api.post("/api/v1/transfers", json=body, headers=agent_b) for _ in range(6))
    )
    assert sorted(r.status_code for r in replies) == [200] * 5 + [201]
    assert len({tuple(r.json()["ledger_ids"]) for r in replies}) == 1
    assert await pg(db_pool, world.b1) == (3_001_000, 0)


async def test_payments(api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool) -> None:
    admin = await headers(api, world, "admin")
    reply = await api.post(
        payment_url(world.agent_b),
        json={"amount_micros": 5, "idempotency_key": key(), "reference": "BANK-77"},
        headers=admin,
    )
    assert reply.status_code == 201
    row = await db_pool.fetchrow(
        "SELECT kind, reference FROM ledger_entries WHERE id = $1", reply.json()["ledger_ids"][0]
    )
    assert (row["kind"], row["reference"]) == ("payment", "BANK-77")
    # A transfer-mode agent pays for the credit it records.
    agent_b = await headers(api, world, "agent_b")
    reply = await api.post(
        payment_url(world.b1),
        json={"amount_micros": 1_000_000, "idempotency_key": key(), "reference": "cash"},
        headers=agent_b,
    )
    assert reply.status_code == 201
    assert await pg(db_pool, world.agent_b) == (80_000_005 - 1_000_000, 0)
    assert await pg(db_pool, world.b1) == (4_000_000, 0)
    missing = await api.post(
        payment_url(world.b1),
        json={"amount_micros": 1, "idempotency_key": key()},
        headers=agent_b,
    )
    assert ("body", "reference") in fields(missing)
    blank = await api.post(
        payment_url(world.b1),
        json={"amount_micros": 1, "idempotency_key": key(), "reference": "  "},
        headers=agent_b,
    )
    assert ("body", "reference") in fields(blank)


async def test_withdraw_commission(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 10000 WHERE id = $1", world.agent_b
    )
    agent_b = await headers(api, world, "agent_b")
    reply = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.b1, "amount_micros": 40_000, "idempotency_key": key()},
        headers=agent_b,
    )
    assert reply.status_code == 201
    assert await pg(db_pool, world.agent_b) == (80_000_000 - 40_000, 40_000)
    url = "/api/v1/me/commission/withdraw"
    too_much = await api.post(
        url, json={"amount_micros": 40_001, "idempotency_key": key()}, headers=agent_b
    )
    assert too_much.status_code == 409
    assert too_much.json()["detail"]["code"] == "INSUFFICIENT_FUNDS"
    k = key()
    done = await api.post(
        url, json={"amount_micros": 40_000, "idempotency_key": k}, headers=agent_b
    )
    assert done.status_code == 201
    assert done.json()["balance_micros"] == 80_000_000
    assert done.json()["commission_balance_micros"] == 0
    again = await api.post(
        url, json={"amount_micros": 40_000, "idempotency_key": k}, headers=agent_b
    )
    assert again.status_code == 200 and again.json()["duplicate"]
    assert await pg(db_pool, world.agent_b) == (80_000_000, 0)
    for who in ("admin", "b1"):
        other = await api.post(
            url,
            json={"amount_micros": 1, "idempotency_key": key()},
            headers=await headers(api, world, who),
        )
        assert other.status_code == 403, who


async def test_move_bodies_are_validated(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    agent_b = await headers(api, world, "agent_b")
    bad_amounts: list[Any] = [0, -1, 10**15 + 1, "x", None, 1.5]
    for amount in bad_amounts:
        for url, extra, who in (
            (refill_url(world.b1), {}, admin),
            (payment_url(world.b1), {"reference": "r"}, admin),
            ("/api/v1/transfers", {"to_account_id": world.b1}, agent_b),
            ("/api/v1/me/commission/withdraw", {}, agent_b),
            ("/api/v1/me/add-funds-requests", {}, agent_b),
        ):
            body = {"amount_micros": amount, "idempotency_key": key(), **extra}
            reply = await api.post(url, json=body, headers=who)
            assert ("body", "amount_micros") in fields(reply), (url, amount)
    for bad_key in ("", "k" * 101, None):
        reply = await api.post(
            refill_url(world.b1),
            json={"amount_micros": 1, "idempotency_key": bad_key},
            headers=admin,
        )
        assert ("body", "idempotency_key") in fields(reply)
    long_note = await api.post(
        refill_url(world.b1),
        json={"amount_micros": 1, "idempotency_key": key(), "note": "n" * 2001},
        headers=admin,
    )
    assert ("body", "note") in fields(long_note)
    nul = await api.post(
        refill_url(world.b1),
        json={"amount_micros": 1, "idempotency_key": "a\x00b"},
        headers=admin,
    )
    assert ("body", "idempotency_key") in fields(nul)
    for to in (0, 2**63, "b1"):
        reply = await api.post(
            "/api/v1/transfers",
            json={"to_account_id": to, "amount_micros": 1, "idempotency_key": key()},
            headers=agent_b,
        )
        assert ("body", "to_account_id") in fields(reply)
    huge = await api.post(
        refill_url(2**63), json={"amount_micros": 1, "idempotency_key": key()}, headers=admin
    )
    assert ("path", "account_id") in fields(huge)


async def test_isolation_every_verb_is_404(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    cases = [
        ("agent_a", world.b1),
        ("agent_a", world.agent_b),
        ("agent_b", world.a1),
        ("agent_a1", world.a1),  # a sibling's customer, under A
        ("agent_a1", world.agent_a),  # its own parent
        ("admin", 10**15),  # nobody
    ]
    for who, target in cases:
        auth = await headers(api, world, who)
        for url, body in (
            (refill_url(target), {"amount_micros": 1, "idempotency_key": key()}),
            (
                payment_url(target),
                {"amount_micros": 1, "idempotency_key": key(), "reference": "r"},
            ),
            (
                "/api/v1/transfers",
                {"to_account_id": target, "amount_micros": 1, "idempotency_key": key()},
            ),
        ):
            if who == "admin" and url == "/api/v1/transfers":
                continue
            reply = await api.post(url, json=body, headers=auth)
            assert reply.status_code == 404, (who, target, url, reply.text)
            assert reply.json()["detail"]["code"] == "NOT_FOUND"
    balances = await db_pool.fetch(
        "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id",
        [world.agent_a, world.agent_a1, world.agent_b, world.a1, world.b1],
    )
    assert [r["balance_micros"] for r in balances] == [
        100_000_000,
        50_000_000,
        80_000_000,
        5_000_000,
        3_000_000,
    ]
    # a11 is below A (through A1): agent_a may refill it.
    agent_a = await headers(api, world, "agent_a")
    ok = await api.post(
        refill_url(world.a11), json={"amount_micros": 1, "idempotency_key": key()}, headers=agent_a
    )
    assert ok.status_code == 201


async def test_role_and_own_account_rules_are_403(api: httpx.AsyncClient, world: World) -> None:
    customer = await headers(api, world, "a1")
    for url, body in (
        (refill_url(world.a1), {"amount_micros": 1, "idempotency_key": key()}),
        (payment_url(world.a1), {"amount_micros": 1, "idempotency_key": key(), "reference": "r"}),
        (
            "/api/v1/transfers",
            {"to_account_id": world.a1, "amount_micros": 1, "idempotency_key": key()},
        ),
    ):
        assert (await api.post(url, json=body, headers=customer)).status_code == 403, url
    agent_a = await headers(api, world, "agent_a")
    own = await api.post(
        refill_url(world.agent_a),
        json={"amount_micros": 1, "idempotency_key": key()},
        headers=agent_a,
    )
    assert own.status_code == 403
    to_self = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.agent_a, "amount_micros": 1, "idempotency_key": key()},
        headers=agent_a,
    )
    assert to_self.status_code == 403
    admin = await headers(api, world, "admin")
    no_own = await api.post(
        "/api/v1/transfers",
        json={"to_account_id": world.a1, "amount_micros": 1, "idempotency_key": key()},
        headers=admin,
    )
    assert no_own.status_code == 403
    assert (await api.post(refill_url(world.a1), json={})).status_code in (401, 422)


async def test_add_funds_approve_twice_books_one_refill(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a1 = await headers(api, world, "agent_a1")
    created = await api.post(
        "/api/v1/me/add-funds-requests",
        json={"amount_micros": 3_000_000, "note": "please"},
        headers=agent_a1,
    )
    assert created.status_code == 201, created.text
    request = created.json()
    assert request["status"] == "pending" and request["account_id"] == world.agent_a1
    assert request["requested_by_login"] == world.login("agent_a1")
    mine = await api.get("/api/v1/me/add-funds-requests", headers=agent_a1)
    assert [r["id"] for r in mine.json()["items"]] == [request["id"]]

    url = f"/api/v1/add-funds-requests/{request['id']}"
    # The parent agent sees it; another tree does not.
    agent_a = await headers(api, world, "agent_a")
    assert (await api.get(url, headers=agent_a)).status_code == 200
    listed = await api.get(
        "/api/v1/add-funds-requests", params={"account_id": world.agent_a1}, headers=agent_a
    )
    assert listed.json()["total"] == 1
    agent_b = await headers(api, world, "agent_b")
    assert (await api.get(url, headers=agent_b)).status_code == 404
    assert (await api.post(url + "/approve", headers=agent_a1)).status_code == 403

    admin = await headers(api, world, "admin")
    first, second = await asyncio.gather(
        api.post(url + "/approve", json={"note": "ok"}, headers=admin),
        api.post(url + "/approve", headers=admin),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["move"]["ledger_ids"] == second.json()["move"]["ledger_ids"]
    assert sorted([first.json()["move"]["duplicate"], second.json()["move"]["duplicate"]]) == [
        False,
        True,
    ]
    approved = first.json()["request"]
    assert approved["status"] == "approved"
    assert approved["ledger_entry_id"] == first.json()["move"]["ledger_ids"][0]
    assert await pg(db_pool, world.agent_a1) == (53_000_000, 0)
    refills = await db_pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE $1",
        f"add-funds:{request['id']}#%",
    )
    assert refills == 1
    rejected = await api.post(url + "/reject", json={"note": "late"}, headers=admin)
    assert rejected.status_code == 409
    assert rejected.json()["detail"]["code"] == "REQUEST_APPROVED"


async def test_add_funds_reject(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    customer = await headers(api, world, "b1")
    created = await api.post(
        "/api/v1/me/add-funds-requests", json={"amount_micros": 10}, headers=customer
    )
    assert created.status_code == 201
    url = f"/api/v1/add-funds-requests/{created.json()['id']}"
    admin = await headers(api, world, "admin")
    pending = await api.get(
        "/api/v1/add-funds-requests",
        params={"status": "pending", "account_id": world.b1},
        headers=admin,
    )
    assert [r["id"] for r in pending.json()["items"]] == [created.json()["id"]]
    reply = await api.post(url + "/reject", json={"note": "no"}, headers=admin)
    assert reply.status_code == 200
    assert reply.json()["status"] == "rejected" and reply.json()["decision_note"] == "no"
    again = await api.post(url + "/reject", json={"note": "no"}, headers=admin)
    assert again.status_code == 200
    late = await api.post(url + "/approve", headers=admin)
    assert late.status_code == 409 and late.json()["detail"]["code"] == "REQUEST_REJECTED"
    assert await pg(db_pool, world.b1) == (3_000_000, 0)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "maybe"}, "status"), ({"sort": "password"}, "sort"), ({"limit": 0}, "limit")],
)
async def test_add_funds_list_is_validated(
    api: httpx.AsyncClient, world: World, params: dict[str, Any], field: str
) -> None:
    admin = await headers(api, world, "admin")
    reply = await api.get("/api/v1/add-funds-requests", params=params, headers=admin)
    assert reply.status_code == 422
    assert any(e["loc"][-1] == field for e in reply.json()["detail"])


async def test_add_funds_by_the_operator_or_missing_is_refused(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    mine = await api.post("/api/v1/me/add-funds-requests", json={"amount_micros": 1}, headers=admin)
    assert mine.status_code == 403
    for verb in ("approve", "reject"):
        gone = await api.post(
            f"/api/v1/add-funds-requests/{10**15}/{verb}", json={"note": ""}, headers=admin
        )
        assert gone.status_code == 404
    assert (await api.get(f"/api/v1/add-funds-requests/{10**15}", headers=admin)).status_code == 404
