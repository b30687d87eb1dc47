"""Currencies over the API: accounts in another currency than their parent's, the
operator's exchange-rate table, and money moves converted at the rate in force.

The exchange-rate table is shared by the run's database, so every test takes currency
codes of its own (``XAA``, ``XAB``, ...), which no other test quotes.
"""

from __future__ import annotations

import itertools
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.world import World, headers

V1 = "/api/v1"
_codes = (f"X{a}{b}" for a, b in itertools.product(string.ascii_uppercase, repeat=2))
_keys = itertools.count(1)


def code() -> str:
    return next(_codes)


def key() -> str:
    return f"fx-{next(_keys)}"


async def quote(
    api: httpx.AsyncClient,
    admin: dict[str, str],
    pair: tuple[str, str],
    rate: str,
    at: datetime,
) -> dict[str, Any]:
    body = {
        "from_currency": pair[0],
        "to_currency": pair[1],
        "rate": rate,
        "effective_from": at.isoformat(),
    }
    reply = await api.post(f"{V1}/exchange-rates", json=body, headers=admin)
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


async def set_currency(db_pool: asyncpg.Pool, account: int, currency: str) -> None:
    """Give a world account another currency (the world is built in USD)."""
    await db_pool.execute("UPDATE accounts SET currency = $2 WHERE id = $1", account, currency)


async def customer_in(
    api: httpx.AsyncClient, auth: dict[str, str], currency: str, parent: int | None = None
) -> int:
    """A customer created through the API in ``currency``, with a rate group in it."""
    group = await api.post(
        f"{V1}/rate-groups", json={"name": f"fx-{key()}", "currency": currency}, headers=auth
    )
    assert group.status_code == 201, group.text
    body: dict[str, Any] = {
        "name": f"fx customer {key()}",
        "rate_group_id": group.json()["id"],
        "currency": currency,
    }
    if parent is not None:
        body["parent_id"] = parent
    reply = await api.post(f"{V1}/customers", json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    assert reply.json()["currency"] == currency
    created: int = reply.json()["id"]
    return created


async def balance(db_pool: asyncpg.Pool, account: int) -> tuple[int, int]:
    row = await db_pool.fetchrow(
        "SELECT balance_micros, commission_balance_micros FROM accounts WHERE id = $1", account
    )
    return row["balance_micros"], row["commission_balance_micros"]


async def entries(db_pool: asyncpg.Pool, ledger_ids: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db_pool.fetch(
        "SELECT * FROM ledger_entries WHERE id = ANY($1::bigint[]) ORDER BY id", ledger_ids
    )
    return rows


async def test_transfer_to_a_customer_in_another_currency_keeps_both_amounts(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    usd, eur = code(), code()
    await set_currency(db_pool, world.agent_b, usd)
    admin, agent_b = await headers(api, world, "admin"), await headers(api, world, "agent_b")
    used = await quote(api, admin, (eur, usd), "1.085", datetime.now(UTC) - timedelta(hours=1))
    customer = await customer_in(api, agent_b, eur)

    body = {"to_account_id": customer, "amount_micros": 10_000_000, "idempotency_key": key()}
    reply = await api.post(f"{V1}/transfers", json=body, headers=agent_b)
    assert reply.status_code == 201, reply.text
    out = reply.json()
    assert out["balance_micros"] == 10_000_000  # credited exactly what was asked, in EUR
    assert out["payer_balance_micros"] == 80_000_000 - 10_850_000  # debited its value in USD
    assert await balance(db_pool, customer) == (10_000_000, 0)
    assert await balance(db_pool, world.agent_b) == (80_000_000 - 10_850_000, 0)
    rows = await entries(db_pool, out["ledger_ids"])
    seen = {
        r["account_id"]: (
            r["amount_micros"],
            r["counter_amount_micros"],
            r["counter_currency"],
            str(r["exchange_rate"].normalize()),
            r["exchange_quote"],
            r["exchange_rate_id"],
        )
        for r in rows
    }
    assert seen == {
        world.agent_b: (-10_850_000, -10_000_000, eur, "1.085", f"{eur}/{usd}", used["id"]),
        customer: (10_000_000, 10_850_000, usd, "1.085", f"{eur}/{usd}", used["id"]),
    }

    # The statement shows both sides: "10.00 EUR = 10.85 USD at EUR/USD 1.085".
    log = await api.get(
        f"{V1}/reports/payment-log", params={"account_id": customer}, headers=agent_b
    )
    assert log.status_code == 200, log.text
    [item] = log.json()["items"]
    assert (item["amount_micros"], item["currency"]) == (10_000_000, eur)
    assert (item["counter_amount_micros"], item["counter_currency"]) == (10_850_000, usd)
    assert (item["exchange_quote"], item["exchange_rate"]) == (f"{eur}/{usd}", "1.085")

    # A replay after the rate changed is the same move, not a new one.
    await quote(api, admin, (eur, usd), "2", datetime.now(UTC) - timedelta(seconds=1))
    again = await api.post(f"{V1}/transfers", json=body, headers=agent_b)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["ledger_ids"] == out["ledger_ids"]
    assert await balance(db_pool, world.agent_b) == (80_000_000 - 10_850_000, 0)


async def test_the_rate_in_force_is_the_latest_not_after_the_move_and_the_payer_rounds_up(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    usd, eur = code(), code()
    await set_currency(db_pool, world.agent_b, usd)
    admin, agent_b = await headers(api, world, "admin"), await headers(api, world, "agent_b")
    now = datetime.now(UTC)
    # Quoted the other way round (1 USD = x EUR): the move uses 1/x, exactly.
    await quote(api, admin, (usd, eur), "1.5", now - timedelta(days=2))
    in_force = await quote(api, admin, (usd, eur), "2", now - timedelta(minutes=1))
    await quote(api, admin, (usd, eur), "3", now + timedelta(hours=1))  # not yet
    customer = await customer_in(api, agent_b, eur)

    # A transfer-mode agent's refill is a transfer: 1.000001 EUR cost 0.5000005 USD,
    # rounded up to 0.500001 (the payer never pays less than the value it hands out).
    reply = await api.post(
        f"{V1}/accounts/{customer}/refills",
        json={"amount_micros": 1_000_001, "idempotency_key": key()},
        headers=agent_b,
    )
    assert reply.status_code == 201, reply.text
    assert await balance(db_pool, customer) == (1_000_001, 0)
    assert await balance(db_pool, world.agent_b) == (80_000_000 - 500_001, 0)
    rows = await entries(db_pool, reply.json()["ledger_ids"])
    assert {r["exchange_rate_id"] for r in rows} == {in_force["id"]}
    assert {r["exchange_quote"] for r in rows} == {f"{usd}/{eur}"}

    listed = await api.get(
        f"{V1}/exchange-rates", params={"currency": eur, "at": now.isoformat()}, headers=agent_b
    )
    assert listed.status_code == 200, listed.text
    assert [(i["id"], i["rate"]) for i in listed.json()["items"]] == [(in_force["id"], "2")]
    everything = await api.get(f"{V1}/exchange-rates", params={"currency": eur}, headers=agent_b)
    assert everything.json()["total"] == 3


async def test_no_rate_in_force_refuses_the_move_and_nothing_moves(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    usd, eur = code(), code()
    await set_currency(db_pool, world.agent_b, usd)
    admin, agent_b = await headers(api, world, "admin"), await headers(api, world, "agent_b")
    # Only a quote that starts tomorrow: none is in force now.
    await quote(api, admin, (eur, usd), "1.1", datetime.now(UTC) + timedelta(days=1))
    customer = await customer_in(api, agent_b, eur)
    before = await db_pool.fetchval("SELECT count(*) FROM ledger_entries")
    for path, body in (
        (f"{V1}/transfers", {"to_account_id": customer}),
        (f"{V1}/accounts/{customer}/refills", {}),
        (f"{V1}/accounts/{customer}/payments", {"reference": "INV-1"}),
    ):
        reply = await api.post(
            path,
            json={**body, "amount_micros": 1_000_000, "idempotency_key": key()},
            headers=agent_b,
        )
        assert reply.status_code == 409, reply.text
        assert reply.json()["detail"]["code"] == "NO_EXCHANGE_RATE", reply.text
    assert await balance(db_pool, customer) == (0, 0)
    assert await balance(db_pool, world.agent_b) == (80_000_000, 0)
    assert await db_pool.fetchval("SELECT count(*) FROM ledger_entries") == before

    # The operator's own refill needs no rate: nobody pays in another currency.
    reply = await api.post(
        f"{V1}/accounts/{customer}/refills",
        json={"amount_micros": 1_000_000, "idempotency_key": key()},
        headers=admin,
    )
    assert reply.status_code == 201, reply.text
    [entry] = await entries(db_pool, reply.json()["ledger_ids"])
    assert entry["counter_currency"] is None and entry["exchange_rate_id"] is None


async def test_commission_into_another_currency_is_converted_rounding_down(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    usd, eur = code(), code()
    await set_currency(db_pool, world.agent_a, usd)
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 1000 WHERE id = $1", world.agent_a
    )
    admin = await headers(api, world, "admin")
    await quote(api, admin, (eur, usd), "0.333333", datetime.now(UTC) - timedelta(hours=1))
    customer = await customer_in(api, admin, eur, parent=world.agent_a)
    reply = await api.post(
        f"{V1}/accounts/{customer}/refills",
        json={"amount_micros": 1_000_000, "idempotency_key": key()},
        headers=admin,
    )
    assert reply.status_code == 201, reply.text
    # 10% of 1 EUR = 100000 EUR micros = 33333.3 USD micros: the house pays 33333.
    assert await balance(db_pool, world.agent_a) == (100_000_000, 33_333)
    rows = await entries(db_pool, reply.json()["ledger_ids"])
    commission = next(r for r in rows if r["pocket"] == "commission")
    assert (commission["amount_micros"], commission["counter_amount_micros"]) == (33_333, 100_000)
    assert commission["counter_currency"] == eur


async def test_account_currency_is_chosen_at_creation_and_its_rate_group_must_match(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_b = await headers(api, world, "agent_b")
    eur = code()
    # The world's group is in USD: a customer in another currency cannot use it.
    reply = await api.post(
        f"{V1}/customers",
        json={"name": "fx wrong group", "rate_group_id": world.rate_group, "currency": eur},
        headers=agent_b,
    )
    assert reply.status_code == 422, reply.text
    assert [e["loc"] for e in reply.json()["detail"]] == [["body", "rate_group_id"]]
    customer = await customer_in(api, agent_b, eur)
    # Nor can it be given a rate group of another currency afterwards.
    reply = await api.patch(
        f"{V1}/customers/{customer}", json={"rate_group_id": world.rate_group}, headers=agent_b
    )
    assert reply.status_code == 422, reply.text
    shown = await api.get(f"{V1}/customers/{customer}", headers=agent_b)
    assert shown.json()["currency"] == eur


async def test_exchange_rate_table_rights_and_checks(api: httpx.AsyncClient, world: World) -> None:
    admin, agent = await headers(api, world, "admin"), await headers(api, world, "agent_a1")
    customer = await headers(api, world, "a1")
    one, two = code(), code()
    at = datetime.now(UTC).replace(microsecond=0)
    body = {
        "from_currency": one,
        "to_currency": two,
        "rate": "1.25",
        "effective_from": at.isoformat(),
    }
    assert (await api.post(f"{V1}/exchange-rates", json=body, headers=agent)).status_code == 403
    assert (await api.get(f"{V1}/exchange-rates", headers=customer)).status_code == 403
    created = await api.post(f"{V1}/exchange-rates", json=body, headers=admin)
    assert created.status_code == 201, created.text
    again = await api.post(f"{V1}/exchange-rates", json=body, headers=admin)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "EXCHANGE_RATE_EXISTS"
    for bad in (
        {"rate": "0"},
        {"rate": "1.0000000000001"},  # 13 places: not what the table holds
        {"to_currency": one},
        {"effective_from": at.replace(tzinfo=None).isoformat()},
    ):
        reply = await api.post(f"{V1}/exchange-rates", json={**body, **bad}, headers=admin)
        assert reply.status_code == 422, (bad, reply.text)
    listed = await api.get(f"{V1}/exchange-rates", params={"currency": one}, headers=agent)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["from_currency"], item["to_currency"], item["rate"]) == (one, two, "1.25")


async def test_margin_report_compares_a_group_in_another_currency_at_the_rate(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    usd, eur = code(), code()
    await set_currency(db_pool, world.agent_a, usd)
    await db_pool.execute(
        "UPDATE rate_groups SET currency = $2 WHERE id = $1", world.rate_group, usd
    )
    admin = await headers(api, world, "admin")
    customer = await customer_in(api, admin, eur, parent=world.agent_a)
    group = (await api.get(f"{V1}/customers/{customer}", headers=admin)).json()["rate_group_id"]
    rate = {"prefix": "44", "price_per_min_micros": 50_000}
    made = await api.post(f"{V1}/rate-groups/{group}/rates", json=rate, headers=admin)
    assert made.status_code == 201, made.text
    url = f"{V1}/accounts/{world.agent_a}/margin-report"

    refused = await api.get(url, headers=admin)  # 0.05 EUR against 0.06 USD: no rate
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "NO_EXCHANGE_RATE"
    now = datetime.now(UTC)
    await quote(api, admin, (eur, usd), "1.1", now - timedelta(hours=2))
    report = (await api.get(url, headers=admin)).json()
    [ours] = [g for g in report["groups"] if g["rate_group_id"] == group]
    # 0.05 EUR = 0.055 USD, under the agent's 0.06 USD.
    assert [(m["prefix"], m["sell_micros"], m["margin_micros"]) for m in ours["below"]] == [
        ("44", 55_000, -5_000)
    ]
    await quote(api, admin, (eur, usd), "1.3", now - timedelta(hours=1))
    report = (await api.get(url, headers=admin)).json()
    [ours] = [g for g in report["groups"] if g["rate_group_id"] == group]
    assert ours["below"] == [] and ours["compared"] == 1
