"""Billing reports: sums, scopes, visibility, CSV, and input checks."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.world import World, headers

_keys = itertools.count(1)
R = "/api/v1/reports"


async def move(
    api: httpx.AsyncClient, auth: dict[str, str], url: str, **body: Any
) -> dict[str, Any]:
    body.setdefault("idempotency_key", f"rep-{next(_keys)}")
    reply = await api.post(url, json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def report(
    api: httpx.AsyncClient, auth: dict[str, str], path: str, **params: Any
) -> dict[str, Any]:
    reply = await api.get(f"{R}/{path}", params=params, headers=auth)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def csv_rows(reply: httpx.Response) -> list[dict[str, str]]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(reply.text)))


async def test_refills_sum_and_csv_has_the_same_rows(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    await move(api, admin, f"/api/v1/accounts/{world.a1}/refills", amount_micros=1_000)
    await move(api, agent_a, f"/api/v1/accounts/{world.a1}/refills", amount_micros=2_000)
    await move(api, agent_a, f"/api/v1/accounts/{world.a11}/refills", amount_micros=4_000)
    await move(api, admin, f"/api/v1/accounts/{world.agent_a}/refills", amount_micros=8_000)
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    customers = await report(api, agent_a, "refills", scope="customers", **{"from": since})
    # The world's opening balances are refills too (booked by no user): leave them out.
    made = [i for i in customers["items"] if i["created_by"] is not None]
    assert sorted(i["amount_micros"] for i in made) == [1_000, 2_000, 4_000]
    assert customers["sum_micros"] == sum(i["amount_micros"] for i in customers["items"])
    assert customers["total"] == len(customers["items"])
    assert {i["account_id"] for i in customers["items"]} <= {
        world.a1,
        world.a2,
        world.a11,
        world.agent_a1,
    }
    own = await report(api, agent_a, "refills", scope="own")
    assert [i["amount_micros"] for i in own["items"] if i["created_by"]] == [8_000]
    assert own["items"][0]["created_by"] == world.login("admin")

    one = await report(api, agent_a, "refills", account_id=world.a1, sort="amount_micros")
    assert [i["amount_micros"] for i in one["items"]] == [5_000_000, 2_000, 1_000]
    assert one["sum_micros"] == 5_003_000

    reply = await api.get(
        f"{R}/refills",
        params={"account_id": world.a1, "sort": "amount_micros", "format": "csv", "limit": 1},
        headers=agent_a,
    )
    rows = csv_rows(reply)
    assert [int(r["id"]) for r in rows] == [i["id"] for i in one["items"]]
    assert sum(int(r["amount_micros"]) for r in rows) == one["sum_micros"]
    assert set(rows[0]) == set(one["items"][0])


async def test_transfer_mode_refills_payment_log_and_commissions(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 1000 WHERE id = $1", world.agent_b
    )
    agent_b = await headers(api, world, "agent_b")
    admin = await headers(api, world, "admin")
    await move(api, agent_b, f"/api/v1/accounts/{world.b1}/refills", amount_micros=300_000)
    await move(api, agent_b, "/api/v1/transfers", to_account_id=world.b1, amount_micros=200_000)
    await move(
        api, admin, f"/api/v1/accounts/{world.b1}/payments", amount_micros=7, reference="INV-9"
    )
    await move(api, agent_b, "/api/v1/me/commission/withdraw", amount_micros=30_000)

    log = await report(api, agent_b, "payment-log", account_id=world.b1)
    newest_first = [i["id"] for i in log["items"]]
    assert newest_first == sorted(newest_first, reverse=True)
    by_kind = [(i["kind"], i["amount_micros"], i["counterparty_account_id"]) for i in log["items"]]
    assert by_kind[:3] == [
        ("payment", 7, None),
        ("transfer", 200_000, world.agent_b),
        ("transfer", 300_000, world.agent_b),
    ]
    assert log["items"][1]["created_by"] == world.login("agent_b")
    assert log["items"][0]["reference"] == "INV-9"

    payments = await report(api, agent_b, "payments", scope="customers")
    assert [(i["account_id"], i["amount_micros"]) for i in payments["items"]] == [(world.b1, 7)]
    assert payments["sum_micros"] == 7

    commissions = await report(api, agent_b, "commissions")
    assert [(i["kind"], i["amount_micros"]) for i in commissions["items"]] == [
        ("commission_withdraw", -30_000),
        ("commission", 20_000),
        ("commission", 30_000),
    ]
    assert commissions["earned_micros"] == 50_000
    assert commissions["withdrawn_micros"] == 30_000
    assert commissions["sum_micros"] == 20_000
    assert commissions["items"][1]["counterparty_account_id"] == world.b1
    only = await report(api, agent_b, "payment-log", kind="commission", scope="own")
    assert [i["amount_micros"] for i in only["items"]] == [20_000, 30_000]
    # The operator reaches any agent's remittance history by account.
    seen = await report(api, admin, "commissions", account_id=world.agent_b)
    assert seen["total"] == 3
    # The customer sees its own entries; its agent's debit is not its business.
    b1 = await headers(api, world, "b1")
    mine = await report(api, b1, "payment-log")
    assert {i["account_id"] for i in mine["items"]} == {world.b1}
    assert all(i["counterparty_account_id"] is None for i in mine["items"])
    assert all(i["created_by"] in (None, world.login("admin")) for i in mine["items"])


async def test_balances(api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool) -> None:
    agent_a = await headers(api, world, "agent_a")
    body = await report(api, agent_a, "balances", sort="balance_micros", order="desc")
    ids = [i["account_id"] for i in body["items"]]
    assert ids == [world.agent_a, world.agent_a1, world.a1, world.a11, world.a2]
    assert body["sum_micros"] == 100_000_000 + 50_000_000 + 5_000_000 + 2_000_000 + 1_000_000
    assert body["total"] == 5
    first = body["items"][0]
    assert first["kind"] == "agent" and first["billing_mode"] == "wholesale"
    assert first["period_in_micros"] == 100_000_000  # the opening refill
    later = await report(api, agent_a, "balances", account_id=world.a1, **{"from": "2999-01-01"})
    assert [(i["balance_micros"], i["period_in_micros"]) for i in later["items"]] == [
        (5_000_000, 0)
    ]
    a1 = await headers(api, world, "a1")
    assert [i["account_id"] for i in (await report(api, a1, "balances"))["items"]] == [world.a1]
    reply = await api.get(f"{R}/balances", params={"format": "csv"}, headers=agent_a)
    assert sorted(int(r["account_id"]) for r in csv_rows(reply)) == sorted(ids)
    customers = await report(api, agent_a, "balances", kind="customer")
    assert customers["total"] == 3


async def test_reports_isolation(api: httpx.AsyncClient, world: World) -> None:
    agent_a1 = await headers(api, world, "agent_a1")
    agent_a = await headers(api, world, "agent_a")
    for path in ("balances", "refills", "payments", "payment-log", "commissions"):
        for who, target in ((agent_a1, world.a1), (agent_a1, world.agent_a), (agent_a, world.b1)):
            reply = await api.get(f"{R}/{path}", params={"account_id": target}, headers=who)
            assert reply.status_code == 404, (path, target)
    log = await report(api, agent_a1, "payment-log", limit=500)
    assert {i["account_id"] for i in log["items"]} <= {world.agent_a1, world.a11}
    balances = await report(api, agent_a1, "balances")
    assert {i["account_id"] for i in balances["items"]} == {world.agent_a1, world.a11}
    # An agent reaches its own history by filtering on its own account.
    own = await report(api, agent_a1, "refills", account_id=world.agent_a1)
    assert [i["amount_micros"] for i in own["items"]] == [50_000_000]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("refills", {"from": "2024-02-01", "to": "2024-01-01"}, "to"),
        ("balances", {"from": "2024-02-01T00:00:00Z", "to": "2024-01-31"}, "to"),
        ("payments", {"from": "yesterday"}, "from"),
        ("payment-log", {"to": "2024-13-01"}, "to"),
        ("refills", {"scope": "everyone"}, "scope"),
        ("payment-log", {"kind": "call_debit"}, "kind"),
        ("commissions", {"sort": "note"}, "sort"),
        ("balances", {"sort": "created_by"}, "sort"),
        ("balances", {"kind": "robot"}, "kind"),
        ("refills", {"format": "xml"}, "format"),
        ("refills", {"account_id": 0}, "account_id"),
        ("refills", {"account_id": 2**63}, "account_id"),
        ("payments", {"limit": 100_000}, "limit"),
        ("payments", {"offset": -1}, "offset"),
        ("payments", {"order": "sideways"}, "order"),
    ],
)
async def test_report_input_is_validated(
    api: httpx.AsyncClient, world: World, path: str, params: dict[str, Any], field: str
) -> None:
    agent_a = await headers(api, world, "agent_a")
    reply = await api.get(f"{R}/{path}", params=params, headers=agent_a)
    assert reply.status_code == 422, reply.text
    assert any(e["loc"][-1] == field for e in reply.json()["detail"]), reply.json()


async def test_operator_has_no_own_scope_and_reports_need_login(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    reply = await api.get(f"{R}/refills", params={"scope": "own"}, headers=admin)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][-1] == "scope"
    assert (await api.get(f"{R}/balances")).status_code == 401
    everything = await report(api, admin, "refills", account_id=world.b1)
    assert everything["total"] == 1
