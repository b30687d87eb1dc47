"""Billing pages in the browser: balances and the ledger reports, their date filters,
sorting and CSV downloads; customers see only their own entries.

The world's opening balances are booked as refills: A 100, A1 50, a1 5, a2 1, a11 2,
B 80, b1 3 (USD).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Page

from tests.api.world import PASSWORD, World
from tests.portal.conftest import log_in, screenshot

AGENT_TABS = [
    "Balances",
    "Own refills",
    "Own payments",
    "Customers' refills",
    "Customers' payments",
    "Payment log",
    "Commission",
]


async def tabs(page: Page) -> list[str]:
    return [t.strip() for t in await page.locator("nav.tabs a").all_inner_texts()]


async def entry_accounts(page: Page) -> list[int]:
    found = await page.locator("#report tr[data-account]").evaluate_all(
        "rows => rows.map(r => r.dataset.account)"
    )
    return [int(a) for a in found]


async def amounts(page: Page) -> list[str]:
    return [
        t.strip() for t in await page.locator("#report tr[data-account] td.num").all_inner_texts()
    ]


async def test_agent_balances_and_refills_with_dates_sort_and_csv(
    page: Page, portal_url: str, world: World, tmp_path: Path
) -> None:
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Billing")
    assert await tabs(page) == AGENT_TABS
    # Balances: A, its sub-agent A1 and the three customers below them; not B's.
    assert sorted(await entry_accounts(page)) == sorted(
        [world.agent_a, world.agent_a1, world.a1, world.a2, world.a11]
    )
    assert await page.locator("#sum").inner_text() == "158.0000 USD"
    await screenshot(page, "billing-balances")

    await page.click("nav.tabs >> text=Customers' refills")
    await page.wait_for_url(f"{portal_url}/portal/billing/customer-refills")
    assert sorted(await entry_accounts(page)) == sorted(
        [world.agent_a1, world.a1, world.a2, world.a11]
    )
    assert await page.locator("#credit").inner_text() == "58.0000 USD"
    # Sorted by amount with a click on the header.
    await page.click("#report th >> text=Amount")
    assert await amounts(page) == ["1.0000 USD", "2.0000 USD", "5.0000 USD", "50.0000 USD"]

    # "To" is inclusive: today's entries are in up to today, none up to yesterday.
    today = datetime.now(UTC).date()
    await page.fill("input[name=to]", today.isoformat())
    await page.click("form.filters button[type=submit]")
    assert await page.locator("#count").inner_text() == "4"
    await page.fill("input[name=to]", (today - timedelta(days=1)).isoformat())
    await page.click("form.filters button[type=submit]")
    assert await page.locator("#count").inner_text() == "0"
    assert "Nothing in this period" in await page.locator("#report").inner_text()

    # The CSV is the API's, for the same filter: the whole period's rows.
    await page.fill("input[name=to]", "")
    await page.fill("input[name=from]", today.isoformat())
    await page.click("form.filters button[type=submit]")
    async with page.expect_download() as wait:
        await page.click("#csv")
    download = await wait.value
    assert download.suggested_filename == f"customer-refills-{today.isoformat()}.csv"
    saved = tmp_path / "refills.csv"
    await download.save_as(saved)
    with saved.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["account_id"]) for r in rows) == sorted(
        [world.agent_a1, world.a1, world.a2, world.a11]
    )
    assert sum(int(r["amount_micros"]) for r in rows) == 58_000_000

    await page.click("nav.tabs >> text=Own refills")
    assert await entry_accounts(page) == [world.agent_a]
    assert await amounts(page) == ["100.0000 USD"]


async def test_bad_date_is_named_next_to_its_field(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_b")
    reply = await page.goto(f"{portal_url}/portal/billing/payment-log?from=2024-13-45")
    assert reply is not None and reply.status == 422
    assert await page.locator("[data-field=from]").count() == 1


async def test_customer_sees_only_its_own_entries(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "a1")
    await page.click("header nav >> text=Billing")
    assert await tabs(page) == ["Balances", "Own refills", "Own payments", "Payment log"]
    assert await entry_accounts(page) == [world.a1]
    await page.click("nav.tabs >> text=Payment log")
    assert set(await entry_accounts(page)) == {world.a1}
    reply = await page.goto(f"{portal_url}/portal/billing/customer-refills")
    assert reply is not None and reply.status == 404
    reply = await page.goto(f"{portal_url}/portal/billing/payment-log?account_id={world.b1}")
    assert reply is not None and reply.status == 404
    download = await page.request.get(f"{portal_url}/portal/billing/payment-log.csv")
    lines = (await download.text()).splitlines()
    assert len(lines) == 2 and lines[1].split(",")[2] == str(world.a1)


async def test_payment_log_shows_both_amounts_of_a_move_between_currencies(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    # agent_b sells in "YUS" to a customer in "YEU" at 1 YEU = 1.085 YUS (codes of this
    # test's own: the exchange-rate table is the run's).
    usd, eur = "YUS", "YEU"
    await db_pool.execute("UPDATE accounts SET currency = $2 WHERE id = $1", world.agent_b, usd)
    await db_pool.execute("UPDATE accounts SET currency = $2 WHERE id = $1", world.b1, eur)
    await db_pool.execute(
        "INSERT INTO exchange_rates (from_currency, to_currency, rate, effective_from) "
        "VALUES ($1, $2, 1.085, now() - interval '1 hour') ON CONFLICT DO NOTHING",
        eur,
        usd,
    )
    async with httpx.AsyncClient(base_url=portal_url) as api:
        login = {"login": world.login("agent_b"), "password": PASSWORD}
        token = (await api.post("/api/v1/auth/login", json=login)).json()["token"]
        move = {"to_account_id": world.b1, "amount_micros": 10_000_000, "idempotency_key": "fx"}
        reply = await api.post(
            "/api/v1/transfers", json=move, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 201, reply.text
    await log_in(page, portal_url, world, "agent_b")
    await page.goto(f"{portal_url}/portal/billing/payment-log?account_id={world.b1}")
    row = page.locator("#report tr[data-account]").first
    cell = row.locator("td.num")
    assert " ".join((await cell.inner_text()).split()) == (
        f"10.0000 {eur} = 10.8500 {usd} at {eur}/{usd} 1.085"
    )
    await page.goto(f"{portal_url}/portal/billing/payment-log?account_id={world.agent_b}")
    assert " ".join((await page.locator("#report td.num").first.inner_text()).split()) == (
        f"-10.8500 {usd} = -10.0000 {eur} at {eur}/{usd} 1.085"
    )
    await screenshot(page, "billing-payment-log-currencies")
