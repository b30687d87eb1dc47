"""Customer pages in the browser: list (search, sort, paging), create one or a batch,
edit, remove, money in, caller-IDs and extensions."""

from __future__ import annotations

import base64
import csv
import io
import secrets

import asyncpg
from playwright.async_api import Dialog, Page

from tests.api.world import World
from tests.portal.conftest import log_in, screenshot


def accept_confirms(page: Page) -> None:
    """Say yes to every ``data-confirm`` question (Playwright says no by default)."""

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def names(db_pool: asyncpg.Pool, *ids: int) -> list[str]:
    async with db_pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, name FROM accounts WHERE id = ANY($1)", list(ids))
    by_id = {r["id"]: r["name"] for r in rows}
    return [by_id[i] for i in ids]


async def row_ids(page: Page) -> list[int]:
    ids = await page.locator("#customers tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return [int(i) for i in ids]


async def cell(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def test_list_searches_sorts_and_hides_other_agents(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    a1_name, a2_name = await names(db_pool, world.a1, world.a2)
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Customers")
    await page.wait_for_url(f"{portal_url}/portal/customers")
    shown = await row_ids(page)
    # A's customers and its sub-agent's, not B's.
    assert set(shown) == {world.a1, world.a2, world.a11}
    a1_row = page.locator(f"#customers tr[data-id='{world.a1}']")
    assert "5.0000 USD" in await a1_row.inner_text()
    # Sort by balance (a click on the header), then the other way round.
    await page.click("#customers th >> text=Balance")
    assert await row_ids(page) == [world.a2, world.a11, world.a1]
    await page.click("#customers th >> text=Balance")
    assert await row_ids(page) == [world.a1, world.a11, world.a2]
    assert await page.get_attribute("#customers th[aria-sort]", "aria-sort") == "descending"
    # Search by name.
    await page.fill("input[name=q]", a2_name)
    await page.click("form.filters button[type=submit]")
    assert await row_ids(page) == [world.a2]
    await page.fill("input[name=q]", "no such customer anywhere")
    await page.click("form.filters button[type=submit]")
    assert "No customer matches" in await page.locator("#customers").inner_text()
    assert a1_name not in await page.content()


async def test_customer_user_has_no_customer_list(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "a1")
    reply = await page.goto(f"{portal_url}/portal/customers")
    assert reply is not None and reply.status == 403
    assert "agents and the operator only" in await page.locator("main").inner_text()


async def test_create_shows_field_errors_then_the_credentials_once(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/customers/new")
    login = f"cafe-{secrets.token_hex(4)}"
    await page.fill("input[name=name]", "Cafe Bad Input")
    await page.fill("input[name=credit_limit]", "lots")
    await page.fill("input[name=login]", "has spaces!")
    await page.click("main button[type=submit]")
    # The API's reasons, each next to its field; what was typed stays.
    assert "integer" in await cell(page, "[data-field=rate_group_id]")
    assert await page.locator("[data-field=credit_limit]").count() == 1
    assert "pattern" in await cell(page, "[data-field=login]")
    assert await page.input_value("input[name=name]") == "Cafe Bad Input"
    await screenshot(page, "customer-new-errors")

    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.fill("input[name=credit_limit]", "2.5")
    await page.fill("input[name=login]", login)
    await page.check("input[name=with_extension]")
    await page.click("main button[type=submit]")
    assert (await cell(page, "h1")) == "Customer Cafe Bad Input created"
    assert await cell(page, "#new-login") == login
    password = await cell(page, "#new-password")
    assert len(password) >= 8
    secret = await cell(page, "#credentials code.secret >> nth=1")
    assert secret
    await screenshot(page, "customer-created")
    await page.click("text=Open the customer")
    assert "Cafe Bad Input" in await cell(page, "#customer-name")
    assert "2.5000 USD" in await cell(page, "#available")

    # The generated password works: the new customer logs in with it.
    context = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await context.new_page()
    await other.goto(f"{portal_url}/portal/login")
    await other.fill("input[name=login]", login)
    await other.fill("input[name=password]", password)
    await other.click("button[type=submit]")
    await other.wait_for_url(f"{portal_url}/portal")
    await context.close()

    # The same login again: refused next to the login field.
    await page.goto(f"{portal_url}/portal/customers/new")
    await page.fill("input[name=name]", "Cafe Twin")
    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.fill("input[name=login]", login)
    await page.click("main button[type=submit]")
    assert "already in use" in await cell(page, "[data-field=login]")


async def test_batch_shows_credentials_with_a_download_and_pages_the_list(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_a1")
    await page.goto(f"{portal_url}/portal/customers/batch")
    prefix = f"bulk-{secrets.token_hex(3)}-"
    await page.fill("input[name=count]", "0")
    await page.fill("input[name=name_prefix]", prefix)
    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.click("text=Create and show credentials")
    assert "greater than or equal to 1" in await cell(page, "[data-field=count]")
    await page.fill("input[name=count]", "30")
    await page.click("text=Create and show credentials")
    assert await cell(page, "h1") == "30 customers created"
    rows = page.locator("#batch tr:has(td)")
    assert await rows.count() == 30
    first = await rows.nth(0).locator("td").all_inner_texts()
    assert first[1] == f"{prefix}01"
    # The download link carries the API's CSV: the same rows, passwords included.
    href = await page.get_attribute("#download", "href")
    assert href is not None and href.startswith("data:text/csv;base64,")
    table = list(csv.DictReader(io.StringIO(base64.b64decode(href.split(",", 1)[1]).decode())))
    assert len(table) == 30
    assert [table[0][k] for k in ("account_id", "name", "login", "password")] == first[:4]
    async with page.expect_download() as wait:
        await page.click("#download")
    download = await wait.value
    assert download.suggested_filename == "customers-batch.csv"
    await screenshot(page, "customers-batch-result")

    # 31 customers now (a11 and the batch): two pages of 25.
    await page.goto(f"{portal_url}/portal/customers?sort=id")
    pager = page.locator(".pager")
    assert "1–25 of 31" in await pager.inner_text()
    await page.click(".pager >> text=next")
    assert "26–31 of 31" in await pager.inner_text()
    assert len(await row_ids(page)) == 6


async def test_batch_csv_rows_errors_name_the_line(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/customers/batch")
    await page.select_option("select[name=rate_group_id]", str(world.rate_group))
    await page.click("details summary")
    await page.fill("textarea[name=csv]", "name,credit_limit_micros\nok one,0\n,5\n")
    await page.click("text=Create and show credentials")
    assert "line 3" in await cell(page, "[data-field=csv]")


async def test_edit_then_remove(page: Page, portal_url: str, world: World) -> None:
    accept_confirms(page)
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/customers/{world.a2}/edit")
    await page.fill("input[name=max_calls]", "-1")
    await page.click("main button[type=submit]")
    assert "greater than or equal to 0" in await cell(page, "[data-field=max_calls]")
    await page.fill("input[name=name]", "Renamed Shop")
    await page.fill("input[name=credit_limit]", "7")
    await page.fill("input[name=max_calls]", "3")
    await page.select_option("select[name=status]", "disabled")
    await page.click("main button[type=submit]")
    await page.wait_for_url(f"{portal_url}/portal/customers/{world.a2}?done=*")
    assert await cell(page, "#customer-name") == f"Renamed Shop #{world.a2} · disabled"
    assert "credit limit 7.0000 USD" in await page.locator("main").inner_text()
    assert "at most 3 at once" in await page.locator("main").inner_text()

    await page.click("button.danger >> text=Remove")
    await page.wait_for_url(f"{portal_url}/portal/customers?done=*")
    assert world.a2 not in await row_ids(page)
    await page.select_option("select[name=status]", "removed")
    await page.click("form.filters button[type=submit]")
    assert await row_ids(page) == [world.a2]


async def test_caller_ids_and_extensions(page: Page, portal_url: str, world: World) -> None:
    accept_confirms(page)
    await log_in(page, portal_url, world, "agent_a")
    url = f"{portal_url}/portal/customers/{world.a1}"
    await page.goto(url)
    digits = "4420" + "".join(secrets.choice("0123456789") for _ in range(8))
    typed = f"+{digits[:2]} {digits[2:4]} {digits[4:8]} {digits[8:]}"
    await page.fill("input[name=number]", typed)
    await page.fill("input[name=cid_description]", "front desk")
    await page.click("text=Add caller-ID")
    assert f"Caller-ID {typed} added." in await cell(page, "[role=status]")
    assert digits in await page.locator("#caller-ids").inner_text()
    # The same number again: refused next to the number field.
    await page.fill("input[name=number]", digits)
    await page.click("text=Add caller-ID")
    assert "already in use" in await cell(page, "[data-field=number]")
    assert await page.input_value("input[name=number]") == digits

    await page.fill("input[name=ext_description]", "desk phone")
    await page.click("text=Add extension")
    row = page.locator("#extensions tr[data-username]")
    assert await row.count() == 1
    username = await row.get_attribute("data-username")
    assert username is not None and username.isdigit() and len(username) == 10
    voip = await page.locator(f"[data-voip='{username}']").inner_text()
    assert "127.0.0.1" in voip and username in voip
    secret = await row.locator("code.secret").inner_text()
    assert secret and secret in voip

    await page.click(f"#caller-ids tr:has-text('{digits}') >> text=Delete")
    assert "Caller-ID deleted." in await cell(page, "[role=status]")
    assert digits not in await page.locator("#caller-ids").inner_text()
    await page.click(f"#extensions tr[data-username='{username}'] >> text=Delete")
    assert "No extension yet" in await page.locator("#extensions").inner_text()


async def test_money_moves_once_and_shows_refusals(
    page: Page, portal_url: str, world: World
) -> None:
    accept_confirms(page)
    await log_in(page, portal_url, world, "agent_b")
    url = f"{portal_url}/portal/customers/{world.b1}"
    await page.goto(url)
    assert await cell(page, "#balance") == "3.0000 USD"
    await page.fill("input[name=amount]", "ten")
    await page.click("#money button[type=submit]")
    assert await page.locator("[data-field=amount]").count() == 1
    # More than agent B has (80): refused next to the amount, nothing moved.
    await page.fill("input[name=amount]", "1000")
    await page.click("#money button[type=submit]")
    assert "more than your available balance" in await cell(page, "[data-field=amount]")
    assert await cell(page, "#balance") == "3.0000 USD"

    key = await page.input_value("input[name=idempotency_key]")
    await page.fill("input[name=amount]", "2.5")
    await page.click("#money button[type=submit]")
    assert "Transfer of 2.5 booked." in await cell(page, "[role=status]")
    assert await cell(page, "#balance") == "5.5000 USD"
    # The same form sent again (a double click, a reload): nothing moves twice.
    again = await page.request.post(
        f"{url}/money", form={"move": "transfer", "amount": "2.5", "idempotency_key": key}
    )
    assert "Already booked" in await again.text()
    await page.goto(url)
    assert await cell(page, "#balance") == "5.5000 USD"

    # A payment needs a reference; then it is booked.
    await page.select_option("select[name=move]", "payment")
    await page.fill("input[name=amount]", "1")
    await page.click("#money button[type=submit]")
    assert await page.locator("[data-field=reference]").count() == 1
    await page.fill("input[name=reference]", "INV-7")
    await page.click("#money button[type=submit]")
    assert "Payment of 1 booked." in await cell(page, "[role=status]")
    assert await cell(page, "#balance") == "6.5000 USD"


async def test_customer_list_fits_a_phone(page: Page, portal_url: str, world: World) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await log_in(page, portal_url, world, "agent_a")
    for path in ("/portal/customers", f"/portal/customers/{world.a1}"):
        await page.goto(portal_url + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, path
    await screenshot(page, "customer-detail-phone")
    await page.goto(f"{portal_url}/portal/customers")
    await screenshot(page, "customers-phone")
