"""Products, subscriptions, charges and DIDs in the browser: an agent creates a product
reselling the operator's, subscribes its customer, sees the charge, adds a DID with its
rental and is told on the field when the number is taken."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Page

from gateway.agents.context import ManagementContext
from gateway.agents.recurring import charge_due
from tests.api.world import World
from tests.portal.conftest import log_in, screenshot


async def test_an_agent_sells_a_fee_and_a_did_to_its_customer(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool, ctx: ManagementContext
) -> None:
    base = await db_pool.fetchval(
        "INSERT INTO products (name, kind, price_micros) VALUES ($1, 'monthly', 1000000) "
        "RETURNING id",
        f"Hosted PBX {world.suffix}",
    )
    rental = await db_pool.fetchval(
        "INSERT INTO products (owner_account_id, name, kind, price_micros) "
        "VALUES ($1, 'London DID', 'did_rental', 750000) RETURNING id",
        world.agent_a,
    )
    await log_in(page, portal_url, world, "agent_a")
    await page.click("nav >> text=Products")
    await page.fill("#new-product input[name=name]", "PBX seat")
    await page.fill("#new-product input[name=price]", "abc")
    await page.click("#new-product button[type=submit]")
    assert await page.locator(".field-error[data-field=price]").count() == 1
    await page.fill("#new-product input[name=price]", "2.50")
    await page.select_option("#new-product select[name=base]", str(base))
    await page.click("#new-product button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/products?*")
    row = await page.locator("#own-products tr", has_text="PBX seat").inner_text()
    assert "2.5000" in row and "1.0000" in row  # its price, and what agent_a pays

    await page.goto(f"{portal_url}/portal/customers/{world.a1}")
    await page.click("#services-link")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a1}/services")
    await page.select_option(
        "#subscribe select[name=product]", label="PBX seat (monthly, 2.5000 USD)"
    )
    await page.click("#subscribe button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a1}/services?*")
    assert "PBX seat" in await page.locator("#subscriptions").inner_text()

    number = f"44207{world.a1 % 100_000:05d}{world.agent_a % 1000:03d}"
    await page.fill("#add-did input[name=number]", "+" + number)
    await page.select_option("#add-did select[name=rental]", str(rental))
    await page.click("#add-did button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/accounts/{world.a1}/services?*")
    assert number in await page.locator("#dids").inner_text()
    await page.fill("#add-did input[name=number]", number)
    await page.click("#add-did button[type=submit]")
    assert await page.locator(".field-error[data-field=number]").count() == 1

    await charge_due(ctx)
    await page.goto(f"{portal_url}/portal/accounts/{world.a1}/services")
    charges = await page.locator("#charges tbody").inner_text()
    assert charges.count("charged") == 2, charges
    assert "2.5000" in charges and "0.7500" in charges
    await screenshot(page, "services")
