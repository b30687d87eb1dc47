"""Call rules in the browser: an agent reads what applies to its customer (its own
rules and the operator's above), sets rules, gets a refusal on the field, and unblocks
a customer a velocity check disabled, seeing why."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Page

from tests import factories
from tests.api.world import World
from tests.portal.conftest import log_in, screenshot
from tests.portal.test_customers import accept_confirms


async def test_an_agent_sets_and_reads_its_customers_call_rules(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "INSERT INTO call_rules (account_id, block_prefixes, max_price_per_min_micros) "
        "VALUES ($1, '{881,882}', 500000)",
        world.agent_a,
    )
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/customers/{world.a1}")
    await page.click("#rules-link")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a1}/rules")
    inherited = await page.locator(f"#inherited tr[data-id='{world.agent_a}']").inner_text()
    assert "881 882" in inherited and "0.5000 USD" in inherited
    await page.fill("input[name=block]", "4490, 4470")
    await page.fill("input[name=max_price]", "0.25")
    await page.select_option("select[name=negative_margin]", "refuse")
    await page.fill("input[name=spend_hour]", "5")
    await page.fill("input[name=cps]", "3")
    await page.click("#rules button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a1}/rules?*")
    assert "Call rules saved." in await page.locator("main").inner_text()
    row = await db_pool.fetchrow("SELECT * FROM call_rules WHERE account_id = $1", world.a1)
    assert row is not None
    assert list(row["block_prefixes"]) == ["4470", "4490"]
    assert (row["max_price_per_min_micros"], row["negative_margin"]) == (250_000, "refuse")
    assert (row["max_spend_hour_micros"], row["max_attempts_per_s"]) == (5_000_000, 3)
    assert await page.input_value("input[name=block]") == "4470 4490"
    # Above the operator's limit of 0.50/min: refused, said next to the field.
    await page.fill("input[name=max_price]", "0.75")
    await page.click("#rules button[type=submit]")
    message = await page.locator(".field-error[data-field=max_price]").inner_text()
    assert "500000" in message
    await page.fill("input[name=block]", "44x")
    await page.fill("input[name=max_price]", "0.25")
    await page.click("#rules button[type=submit]")
    assert "digits" in await page.locator(".field-error[data-field=block]").inner_text()
    await screenshot(page, "call-rules")


async def test_a_blocked_customer_shows_why_and_is_unblocked(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET status = 'disabled', disabled_reason = 'fraud', "
        "disabled_detail = 'new_countries: 6 new destination countries within an hour', "
        "disabled_at = now() WHERE id = $1",
        world.a2,
    )
    accept_confirms(page)
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/accounts/{world.a2}/rules")
    why = await page.locator("#blocked-why").inner_text()
    assert why.startswith("new_countries: 6 new destination countries")
    await page.click("#blocked button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a2}/rules?*")
    assert "Account active again." in await page.locator("main").inner_text()
    assert await page.locator("#blocked").count() == 0
    status = await db_pool.fetchval("SELECT status FROM accounts WHERE id = $1", world.a2)
    assert status == "active"


async def test_a_customer_sees_its_rules_but_cannot_change_them(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "a1")
    await page.goto(f"{portal_url}/portal/accounts/{world.a1}/rules")
    await page.fill("input[name=block]", "44")
    await page.click("#rules button[type=submit]")
    assert "set by the account above" in await page.locator("main").inner_text()


async def test_the_dashboard_warns_a_reseller_selling_below_its_cost(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        dearer = await factories.rate_group(conn, [factories.rate(70_000, prefix="44")])
        await conn.execute(
            "UPDATE accounts SET rate_group_id = $2 WHERE id = $1", world.agent_a, dearer
        )
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal")
    warning = await page.locator("#margin-warning").inner_text()
    assert "below your own cost" in warning
    row = await page.locator("#margins tr[data-prefix='44']").inner_text()
    assert "0.0600 USD" in row and "0.0700 USD" in row and "-0.0100 USD" in row
    await screenshot(page, "margin-warning")
    # A reseller selling above cost sees no warning.
    await log_in(page, portal_url, world, "agent_a1")
    await page.goto(f"{portal_url}/portal")
    assert await page.locator("#margin-warning").count() == 0
