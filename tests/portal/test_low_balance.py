"""Low-balance care on the customer page, in a real browser: an agent in transfer mode
sets a threshold and an auto-refill, gets a refusal on the field, and after the watch
ran sees the customer below its threshold and the refill the watch made."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Page

from gateway.agents.context import ManagementContext
from gateway.agents.low_balance import run_round
from tests.api.world import World
from tests.portal.conftest import log_in, screenshot

UNIT = 1_000_000


async def test_an_agent_sets_low_balance_care_and_sees_what_the_watch_did(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool, ctx: ManagementContext
) -> None:
    await log_in(page, portal_url, world, "agent_b")
    await page.goto(f"{portal_url}/portal/customers/{world.b1}")
    assert "No threshold" in await page.locator("#low-balance-state").inner_text()
    await page.fill("input[name=lb_threshold]", "5")
    await page.fill("input[name=lb_refill]", "2")
    await page.fill("input[name=lb_limit]", "1")
    await page.click("#low-balance button[type=submit]")
    message = await page.locator(".field-error[data-field=lb_limit]").inner_text()
    assert "at least one refill" in message
    await page.fill("input[name=lb_limit]", "4")
    await page.click("#low-balance button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/customers/{world.b1}?*")
    assert "Low-balance care saved." in await page.locator("main").inner_text()
    row = await db_pool.fetchrow(
        "SELECT low_balance_threshold_micros, auto_refill_micros, "
        "auto_refill_monthly_limit_micros FROM accounts WHERE id = $1",
        world.b1,
    )
    assert tuple(row) == (5 * UNIT, 2 * UNIT, 4 * UNIT)
    assert await page.input_value("input[name=lb_threshold]") == "5"
    # b1 has 3.00: below 5. The watch notices and refills 2 from agent_b.
    await run_round(ctx)
    await page.reload()
    state = await page.locator("#low-balance-state").inner_text()
    assert "5.0000 USD" in state and "fell below at" in state and "1 crossing " in state
    refill = await page.locator("#lb-refill").inner_text()
    assert "2.0000 USD this month" in refill
    assert await page.locator("#lb-outcome").get_attribute("data-status") == "moved"
    assert "5.0000 USD" in await page.locator("#balance").inner_text()
    await screenshot(page, "low-balance")
