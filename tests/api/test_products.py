"""Recurring charges over the API: products down the reseller chain, subscriptions,
the charge job (once per period whatever runs it), unpaid rules, DIDs."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx

from gateway.agents.context import ManagementContext
from gateway.agents.periods import period_starts
from gateway.agents.recurring import ChargeOutcome, charge_due, today_utc
from tests.api.world import World, headers

V1 = "/api/v1"


async def _product(
    api: httpx.AsyncClient, auth: dict[str, str], name: str, price: int, **more: Any
) -> dict[str, Any]:
    body = {"name": name, "kind": "monthly", "price_micros": price, **more}
    r = await api.post(f"{V1}/products", json=body, headers=auth)
    assert r.status_code == 201, r.text
    product: dict[str, Any] = r.json()
    return product


async def _subscribe(
    api: httpx.AsyncClient, auth: dict[str, str], account: int, product: int, **more: Any
) -> httpx.Response:
    return await api.post(
        f"{V1}/accounts/{account}/subscriptions",
        json={"product_id": product, **more},
        headers=auth,
    )


async def _round(ctx: ManagementContext, account: int) -> list[ChargeOutcome]:
    """One round of the charge job; what it did to ``account`` (tests share the database)."""
    return [o for o in await charge_due(ctx) if o.account_id == account]


def _field(r: httpx.Response) -> str:
    """The field a 422 names."""
    field: str = r.json()["detail"][0]["loc"][-1]
    return field


async def _balance(pool: asyncpg.Pool, account: int) -> int:
    value: int = await pool.fetchval("SELECT balance_micros FROM accounts WHERE id = $1", account)
    return value


async def _recurring(pool: asyncpg.Pool, account: int) -> list[int]:
    rows = await pool.fetch(
        "SELECT amount_micros FROM ledger_entries WHERE account_id = $1 AND kind = 'recurring' "
        "ORDER BY id",
        account,
    )
    return [r["amount_micros"] for r in rows]


async def test_a_fee_is_charged_at_every_wholesale_level_at_its_own_price_once(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    agent_a1 = await headers(api, world, "agent_a1")
    base = await _product(api, admin, f"PBX {world.suffix}", 500_000)
    resold = await _product(api, agent_a, "PBX", 800_000, base_product_id=base["id"])
    assert resold["base_price_micros"] == 500_000 and resold["owner_account_id"] == world.agent_a
    resold2 = await _product(api, agent_a1, "PBX", 1_200_000, base_product_id=resold["id"])
    r = await _subscribe(api, agent_a1, world.a11, resold2["id"])
    assert r.status_code == 201, r.text
    before = {a: await _balance(db_pool, a) for a in (world.a11, world.agent_a1, world.agent_a)}

    # Two gateways' rounds at once, then a third: one charge.
    first = await asyncio.gather(_round(ctx, world.a11), _round(ctx, world.a11))
    again = await _round(ctx, world.a11)
    charged = [o for o in (*first[0], *first[1], *again) if o.status == "charged"]
    assert len(charged) == 1 and charged[0].amount_micros == 1_200_000
    assert await _recurring(db_pool, world.a11) == [-1_200_000]
    assert await _recurring(db_pool, world.agent_a1) == [-800_000]
    assert await _recurring(db_pool, world.agent_a) == [-500_000]
    assert await _balance(db_pool, world.a11) == before[world.a11] - 1_200_000
    assert await _balance(db_pool, world.agent_a1) == before[world.agent_a1] - 800_000
    assert await _balance(db_pool, world.agent_a) == before[world.agent_a] - 500_000

    charges = await api.get(f"{V1}/accounts/{world.a11}/charges", headers=agent_a)
    assert charges.status_code == 200
    [c] = charges.json()
    assert c["status"] == "charged" and c["period_start"] == today_utc().isoformat()
    assert len(c["ledger_ids"]) == 3
    log = await api.get(f"{V1}/reports/payment-log?kind=recurring", headers=agent_a1)
    assert log.status_code == 200, log.text


async def test_a_transfer_mode_agent_is_not_charged_its_customer_is(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    admin = await headers(api, world, "admin")
    agent_b = await headers(api, world, "agent_b")
    base = await _product(api, admin, f"Fax {world.suffix}", 1_000_000)
    resold = await _product(api, agent_b, "Fax", 1_500_000, base_product_id=base["id"])
    assert (await _subscribe(api, agent_b, world.b1, resold["id"])).status_code == 201
    agent_before = await _balance(db_pool, world.agent_b)
    await charge_due(ctx)
    assert await _recurring(db_pool, world.b1) == [-1_500_000]
    assert await _recurring(db_pool, world.agent_b) == []
    assert await _balance(db_pool, world.agent_b) == agent_before


async def test_a_backdated_subscription_is_charged_for_each_period_begun(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    product = await _product(api, agent_a, "Line", 100_000)
    start = today_utc() - timedelta(days=70)
    r = await _subscribe(api, agent_a, world.a1, product["id"], starts_on=start.isoformat())
    assert r.status_code == 201, r.text
    assert r.json()["bill_day"] == min(start.day, 28)
    await charge_due(ctx)
    periods = period_starts("monthly", start, min(start.day, 28), None, today_utc())
    assert len(periods) in (3, 4)  # 70 days back: two or three bill days since
    assert await _recurring(db_pool, world.a1) == [-100_000] * len(periods)
    got = await api.get(f"{V1}/accounts/{world.a1}/charges", headers=agent_a)
    assert [c["period_start"] for c in got.json()] == [p.isoformat() for p in reversed(periods)]


async def test_a_setup_fee_is_charged_once_and_an_ended_subscription_stops(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    setup = await _product(api, agent_a, "Install", 250_000, kind="setup")
    start = (today_utc() - timedelta(days=40)).isoformat()
    assert (await _subscribe(api, agent_a, world.a2, setup["id"], starts_on=start)).is_success
    monthly = await _product(api, agent_a, "Seat", 10_000)
    sub = (await _subscribe(api, agent_a, world.a2, monthly["id"])).json()
    ended = await api.post(f"{V1}/subscriptions/{sub['id']}/end", json={}, headers=agent_a)
    assert ended.status_code == 200 and ended.json()["ends_on"] == today_utc().isoformat()
    await charge_due(ctx)
    await charge_due(ctx)
    assert await _recurring(db_pool, world.a2) == [-250_000]  # the ended seat: nothing


async def _due_unpaid(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, rule: str
) -> tuple[dict[str, str], dict[str, Any]]:
    agent_a = await headers(api, world, "agent_a")
    # a2 has 1.00; the fee is 5.00.
    product = await _product(api, agent_a, f"Big {rule}", 5_000_000, on_unpaid=rule)
    assert (await _subscribe(api, agent_a, world.a2, product["id"])).status_code == 201
    [outcome] = await _round(ctx, world.a2)
    [charge] = (await api.get(f"{V1}/accounts/{world.a2}/charges", headers=agent_a)).json()
    assert outcome.status == charge["status"]
    return agent_a, charge


async def _refill(api: httpx.AsyncClient, auth: dict[str, str], account: int, key: str) -> None:
    r = await api.post(
        f"{V1}/accounts/{account}/refills",
        json={"amount_micros": 10_000_000, "idempotency_key": key},
        headers=auth,
    )
    assert r.status_code == 201, r.text


async def test_unpaid_with_retry_stays_active_and_is_paid_after_a_refill(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent_a, charge = await _due_unpaid(api, world, ctx, "retry")
    assert charge["status"] == "unpaid" and "INSUFFICIENT_FUNDS" in charge["detail"]
    assert charge["next_attempt_at"] is not None
    status = await db_pool.fetchval("SELECT status FROM accounts WHERE id = $1", world.a2)
    assert status == "active" and await _recurring(db_pool, world.a2) == []
    assert await _round(ctx, world.a2) == []  # not due again before retry_interval_s
    await _refill(api, agent_a, world.a2, f"retry-{world.suffix}")
    a2 = await headers(api, world, "a1")  # a customer may only ask for its own account
    assert (
        await api.post(f"{V1}/accounts/{world.a2}/charges/retry", headers=a2)
    ).status_code == 404
    r = await api.post(f"{V1}/accounts/{world.a2}/charges/retry", headers=agent_a)
    assert r.status_code == 200 and r.json() == {"due_now": 1}
    [paid] = await _round(ctx, world.a2)
    assert paid.status == "charged" and await _recurring(db_pool, world.a2) == [-5_000_000]


async def test_unpaid_with_suspend_disables_until_paid(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent_a, charge = await _due_unpaid(api, world, ctx, "suspend")
    assert charge["status"] == "unpaid"
    row = await db_pool.fetchrow(
        "SELECT status, disabled_reason, disabled_detail FROM accounts WHERE id = $1", world.a2
    )
    assert row is not None and (row["status"], row["disabled_reason"]) == ("disabled", "unpaid")
    assert "Big suspend" in row["disabled_detail"]
    await _refill(api, agent_a, world.a2, f"suspend-{world.suffix}")
    await api.post(f"{V1}/accounts/{world.a2}/charges/retry", headers=agent_a)
    [paid] = await _round(ctx, world.a2)
    assert paid.status == "charged"
    row = await db_pool.fetchrow(
        "SELECT status, disabled_reason FROM accounts WHERE id = $1", world.a2
    )
    assert row is not None and (row["status"], row["disabled_reason"]) == ("active", "")


async def test_unpaid_with_negative_charges_into_the_credit_limit_only(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET credit_limit_micros = 10000000 WHERE id = $1", world.a2
    )
    _, charge = await _due_unpaid(api, world, ctx, "negative")
    assert charge["status"] == "charged"
    assert await _balance(db_pool, world.a2) == 1_000_000 - 5_000_000
    # Beyond the limit it waits like retry.
    agent_a = await headers(api, world, "agent_a")
    huge = await _product(api, agent_a, "Huge", 50_000_000, on_unpaid="negative")
    assert (await _subscribe(api, agent_a, world.a2, huge["id"])).status_code == 201
    [late] = await _round(ctx, world.a2)
    assert late.status == "unpaid" and await _balance(db_pool, world.a2) == -4_000_000


async def test_who_may_sell_and_subscribe_what(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    agent_b = await headers(api, world, "agent_b")
    a1 = await headers(api, world, "a1")
    theirs = await _product(api, agent_b, "B only", 1_000)
    mine = await _product(api, agent_a, "A only", 1_000)
    # A customer sells nothing; an agent cannot resell what its parent does not sell it.
    r = await api.post(
        f"{V1}/products", json={"name": "x", "kind": "monthly", "price_micros": 1}, headers=a1
    )
    assert r.status_code == 403
    bad_base = {"name": "x", "kind": "monthly", "price_micros": 1, "base_product_id": theirs["id"]}
    r = await api.post(f"{V1}/products", json=bad_base, headers=agent_a)
    assert r.status_code == 422 and _field(r) == "base_product_id", r.text
    dup = {"name": "A only", "kind": "monthly", "price_micros": 1}
    r = await api.post(f"{V1}/products", json=dup, headers=agent_a)
    assert r.status_code == 409 and r.json()["detail"]["code"] == "NAME_TAKEN"
    # Subscribing: only a product of the account's parent, only by its managers.
    r = await _subscribe(api, agent_a, world.a1, theirs["id"])
    assert r.status_code == 422 and _field(r) == "product_id"
    assert (await _subscribe(api, agent_a, world.b1, mine["id"])).status_code == 404
    assert (await _subscribe(api, a1, world.a1, mine["id"])).status_code == 403
    assert (await _subscribe(api, admin, world.a11, mine["id"])).status_code == 422
    far = (today_utc() - timedelta(days=400)).isoformat()
    r = await _subscribe(api, agent_a, world.a1, mine["id"], starts_on=far)
    assert r.status_code == 422 and _field(r) == "starts_on"
    listed = await api.get(f"{V1}/products", headers=agent_a)
    names = {p["name"] for p in listed.json()["items"]}
    assert "A only" in names and "B only" not in names
    retired = await api.patch(
        f"{V1}/products/{mine['id']}", json={"status": "retired"}, headers=agent_a
    )
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    assert (await _subscribe(api, agent_a, world.a1, mine["id"])).status_code == 422
    r = await api.patch(f"{V1}/products/{theirs['id']}", json={"price_micros": 1}, headers=agent_a)
    assert r.status_code == 404


async def test_a_did_with_its_rental(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    base = await _product(api, admin, f"DID UK {world.suffix}", 500_000, kind="did_rental")
    rental = await _product(
        api, agent_a, "DID UK", 900_000, kind="did_rental", base_product_id=base["id"]
    )
    number = f"+44 20 {world.a1 % 10_000:04d} {world.agent_a % 10_000:04d}"
    r = await api.post(
        f"{V1}/customers/{world.a1}/dids",
        json={"number": number, "rental_product_id": rental["id"]},
        headers=agent_a,
    )
    assert r.status_code == 201, r.text
    did = r.json()
    assert did["number"] == number.replace(" ", "").lstrip("+")
    assert did["subscription_id"] is not None
    taken = await api.post(
        f"{V1}/customers/{world.a2}/dids", json={"number": number}, headers=agent_a
    )
    assert taken.status_code == 409 and taken.json()["detail"]["code"] == "DID_TAKEN"
    not_rental = await api.post(
        f"{V1}/customers/{world.a2}/dids",
        json={
            "number": "441110000",
            "rental_product_id": (await _product(api, agent_a, "m", 1))["id"],
        },
        headers=agent_a,
    )
    assert not_rental.status_code == 422
    assert await db_pool.fetchval("SELECT count(*) FROM dids WHERE number = '441110000'") == 0
    await charge_due(ctx)
    assert await _recurring(db_pool, world.a1) == [-900_000]
    assert await _recurring(db_pool, world.agent_a) == [-500_000]
    subs = (await api.get(f"{V1}/accounts/{world.a1}/subscriptions", headers=agent_a)).json()
    assert [s["did_number"] for s in subs] == [did["number"]]
    assert (await api.delete(f"{V1}/dids/{did['id']}", headers=agent_a)).status_code == 204
    subs = (await api.get(f"{V1}/accounts/{world.a1}/subscriptions", headers=agent_a)).json()
    assert subs[0]["ends_on"] == date.today().isoformat() or subs[0]["ends_on"] is not None
    assert (await api.get(f"{V1}/customers/{world.a1}/dids", headers=agent_a)).json() == []


async def test_agents_inbound_rate_group_and_tax_are_set_from_above(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    agent_a1 = await headers(api, world, "agent_a1")
    body = {"inbound_rate_group_id": world.rate_group, "tax_rate_bp": 2000}
    r = await api.patch(f"{V1}/agents/{world.agent_a1}", json=body, headers=agent_a)
    assert r.status_code == 200, r.text
    assert r.json()["inbound_rate_group_id"] == world.rate_group
    assert r.json()["tax_rate_bp"] == 2000
    own = await api.patch(f"{V1}/agents/{world.agent_a1}", json=body, headers=agent_a1)
    assert own.status_code == 403
    r = await api.patch(
        f"{V1}/agents/{world.agent_a}", json={"inbound_rate_group_id": None}, headers=admin
    )
    assert r.status_code == 200 and r.json()["inbound_rate_group_id"] is None
    # A customer id is no agent.
    assert (await api.patch(f"{V1}/agents/{world.a1}", json={}, headers=admin)).status_code == 404
