"""The agent's day in the browser: a new customer, a caller-ID, a transfer, the billing
reports that show it, and another agent's customer out of reach; then the same on the
real demo seed (``gateway.runtime.demo``), in a database of its own.

Screenshots of the main pages land in ``test-artifacts/portal/``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import uvicorn
from playwright.async_api import Dialog, Page

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.api.server import _QuietServer
from gateway.balance.keys import Keys
from gateway.config import from_mapping
from gateway.db import migrate
from gateway.runtime import demo
from gateway.runtime.embedded import free_port
from tests.api.world import World
from tests.conftest import DatabaseFactory
from tests.portal.conftest import log_in, screenshot


def accept_confirms(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def balance_of(db_pool: asyncpg.Pool, account_id: int) -> int:
    async with db_pool.acquire() as conn:
        value: int = await conn.fetchval(
            "SELECT balance_micros FROM accounts WHERE id = $1", account_id
        )
    return value


async def test_agent_creates_a_customer_and_funds_it(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    accept_confirms(page)
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Customers")
    await screenshot(page, "customers")

    # A customer through the form, with a portal login and a first extension.
    name = f"Scenario Cafe {secrets.token_hex(3)}"
    await page.click("text=New customer")
    await page.fill("input[name=name]", name)
    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.fill("input[name=login]", f"cafe-{secrets.token_hex(4)}")
    await page.check("input[name=with_extension]")
    await page.click("main button[type=submit]")
    assert await text(page, "h1") == f"Customer {name} created"
    await page.click("text=Open the customer")
    customer_id = int(page.url.rsplit("/", 1)[1])
    assert await text(page, "#balance") == "0.0000 USD"

    # A caller-ID for it.
    number = "4420" + "".join(secrets.choice("0123456789") for _ in range(8))
    await page.fill("input[name=number]", f"+{number}")
    await page.click("text=Add caller-ID")
    assert number in await text(page, "#caller-ids")

    # A transfer from the agent's own balance (100 USD).
    await page.fill("input[name=amount]", "12.5")
    await page.fill("input[name=note]", "first top-up")
    await page.click("#money button[type=submit]")
    assert "Transfer of 12.5 booked." in await text(page, "[role=status]")
    assert await text(page, "#balance") == "12.5000 USD"
    assert await balance_of(db_pool, world.agent_a) == 87_500_000
    await screenshot(page, "customer-detail")

    # The transfer in the reports: received by the customer (customers' refills), and
    # both sides of it in the payment log.
    await page.click("header nav >> text=Billing")
    await page.click("nav.tabs >> text=Customers' refills")
    row = page.locator(f"#report tr[data-account='{customer_id}']")
    assert await row.count() == 1
    cells = await row.locator("td").all_inner_texts()
    assert cells[2:4] == ["transfer", "12.5000 USD"]
    assert cells[6] == "first top-up"
    await page.click("nav.tabs >> text=Payment log")
    ours = page.locator("#report tr:has-text('first top-up')")
    assert await ours.count() == 2
    sides = {
        int(await ours.nth(i).get_attribute("data-account") or 0): (
            await ours.nth(i).locator("td").all_inner_texts()
        )[3]
        for i in range(2)
    }
    assert sides == {customer_id: "12.5000 USD", world.agent_a: "-12.5000 USD"}
    await screenshot(page, "billing")
    await page.click("nav.tabs >> text=Balances")
    own = page.locator(f"#report tr[data-account='{world.agent_a}'] td.num >> nth=0")
    assert await own.inner_text() == "87.5000 USD"

    # A batch of three, with their credentials.
    await page.goto(f"{portal_url}/portal/customers/batch")
    await page.fill("input[name=count]", "3")
    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.click("text=Create and show credentials")
    assert await text(page, "h1") == "3 customers created"
    await screenshot(page, "customers-batch")

    # Agent B's customer is not reachable by URL: a 404 page, none of its data.
    async with db_pool.acquire() as conn:
        b1_name = await conn.fetchval("SELECT name FROM accounts WHERE id = $1", world.b1)
    for path in (f"/portal/customers/{world.b1}", f"/portal/customers/{world.b1}/edit"):
        reply = await page.goto(portal_url + path)
        assert reply is not None and reply.status == 404, path
        assert await text(page, "h1") == "Customer not found"
        assert b1_name not in await page.content()
    sent = await page.request.post(
        f"{portal_url}/portal/customers/{world.b1}/money",
        form={"move": "transfer", "amount": "1", "idempotency_key": secrets.token_hex(8)},
    )
    assert sent.status == 404
    assert await balance_of(db_pool, world.b1) == 3_000_000
    assert await balance_of(db_pool, world.agent_a) == 87_500_000


# -- the real demo seed ---------------------------------------------------------------


@pytest.fixture
async def demo_url(
    databases: DatabaseFactory,
    redis_client: aioredis.Redis,
    keys: Keys,
    tmp_path: Path,
    redis_url: str,
) -> AsyncIterator[str]:
    """The portal over a database of its own holding exactly the demo seed (its fixed
    logins and numbers would clash with other tests in the shared one)."""
    url = await databases.create()
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        await demo.seed(conn)
    finally:
        await conn.close()
    config = from_mapping(
        {
            "service": {"state_dir": str(tmp_path / "state"), "log_format": "text"},
            "redis": {"url": redis_url, "key_prefix": keys.prefix},
            "database": {"url": url},
        }
    )
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    ctx = ManagementContext.create(config, pool, redis_client, keys)
    await ctx.start()
    port = free_port()
    server = _QuietServer(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "portal server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await ctx.close()
        await pool.close()


async def demo_id(page: Page, name: str) -> int:
    href = await page.get_attribute(f"#customers a:text-is('{name}')", "href")
    assert href is not None
    return int(href.rsplit("/", 1)[1])


async def test_demo_agent_on_the_demo_seed(page: Page, demo_url: str) -> None:
    accept_confirms(page)
    await page.goto(f"{demo_url}/portal/login")
    await page.fill("input[name=login]", "acme")
    await page.fill("input[name=password]", "acme-demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{demo_url}/portal")
    await page.goto(f"{demo_url}/portal/customers")
    listed = await page.locator("#customers tr[data-id] td:nth-child(2)").all_inner_texts()
    # Acme's own customer and its sub-agent's; Carol belongs to Beta.
    assert sorted(listed) == ["Alice Cafe", "Bob Taxi"]
    await screenshot(page, "demo-customers")

    bob = await demo_id(page, "Bob Taxi")
    await page.click("#customers >> text=Bob Taxi")
    assert await text(page, "#balance") == "15.0000 USD"
    assert "12125550100" in await text(page, "#caller-ids")
    voip = await text(page, "[data-voip='1002']")
    assert "bob-sip" in voip and "127.0.0.1" in voip
    await page.fill("input[name=amount]", "5")
    await page.click("#money button[type=submit]")
    assert await text(page, "#balance") == "20.0000 USD"
    await screenshot(page, "demo-customer-detail")

    # Acme earns 5% commission on what goes into its own customer.
    await page.goto(f"{demo_url}/portal/billing/commissions")
    assert await text(page, "#earned") == "0.2500 USD"
    await page.goto(f"{demo_url}/portal/billing/customer-refills")
    row = page.locator(f"#report tr[data-account='{bob}']:has-text('transfer')")
    assert "5.0000 USD" in await row.inner_text()

    # Beta's customer Carol: not found for Acme, by id.
    carol_login = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await carol_login.new_page()
    await other.goto(f"{demo_url}/portal/login")
    await other.fill("input[name=login]", "beta")
    await other.fill("input[name=password]", "beta-demo")
    await other.click("button[type=submit]")
    await other.wait_for_url(f"{demo_url}/portal")
    await other.goto(f"{demo_url}/portal/customers")
    carol = await demo_id(other, "Carol Shop")
    await carol_login.close()
    reply = await page.goto(f"{demo_url}/portal/customers/{carol}")
    assert reply is not None and reply.status == 404
    assert "Carol" not in await page.content()
