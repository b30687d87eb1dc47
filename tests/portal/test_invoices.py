"""Invoices in the browser: the list each user may see, PDF and CSV downloads, issuing
one from the page; a customer sees its own invoices only."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import asyncpg
from playwright.async_api import Page

from gateway.agents import invoices
from tests.api.invoice_support import commit_call, pdf_text
from tests.api.world import World
from tests.portal.conftest import log_in, screenshot


async def _issue(db_pool: asyncpg.Pool, world: World) -> None:
    """Invoices of a1 (with a call and tax) and of agent_a, issued as the job does."""
    await db_pool.execute(
        "UPDATE accounts SET tax_rate_bp = 2000, tax_inclusive = true WHERE id = $1", world.a1
    )
    start = await db_pool.fetchval("SELECT clock_timestamp()")
    await commit_call(
        db_pool, (world.a1, world.agent_a), (600_000, 200_000), group=world.rate_group
    )
    end = await db_pool.fetchval("SELECT clock_timestamp()")
    async with db_pool.acquire() as conn:
        for account in (world.a1, world.agent_a):
            row = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account)
            await invoices.issue(conn, row, start - timedelta(minutes=1), end, operator_prefix="OP")


async def _rows(page: Page) -> list[tuple[str, str]]:
    cells = await page.locator("#invoices tr[data-id]").evaluate_all(
        "rows => rows.map(r => [r.querySelector('td.number').innerText,"
        " r.querySelector('td.closing').innerText])"
    )
    return [(n, c) for n, c in cells]


async def test_agent_sees_its_own_and_its_customers_invoices(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _issue(db_pool, world)
    a1_balance = await db_pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", world.a1
    )
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Invoices")
    await page.wait_for_url(f"{portal_url}/portal/invoices")
    rows = await _rows(page)
    numbers = [n for n, _ in rows]
    assert f"A{world.agent_a}-" in " ".join(numbers) and any(n.startswith("OP-") for n in numbers)
    assert len(rows) == 2
    mine = next(c for n, c in rows if n.startswith(f"A{world.agent_a}-"))
    assert mine == f"{a1_balance / 1e6:,.2f} USD"
    await screenshot(page, "invoices-agent")

    # The PDF link downloads the invoice: its number and tax are in the text.
    a1_row = page.locator("#invoices tr[data-id]", has_text=f"A{world.agent_a}-")
    async with page.expect_download() as wait:
        await a1_row.locator("a.pdf").click()
    download = await wait.value
    number = (await a1_row.locator("td.number").inner_text()).strip()
    assert download.suggested_filename == f"{number}.pdf"
    saved = tmp_path / "invoice.pdf"
    await download.save_as(saved)
    text = pdf_text(saved.read_bytes())
    assert f"Invoice {number}" in text and "Tax 20 % (included in the prices)" in text

    async with page.expect_download() as wait:
        await a1_row.locator("a.csv").click()
    saved_csv = tmp_path / "invoice.csv"
    await (await wait.value).save_as(saved_csv)
    with saved_csv.open(newline="") as handle:
        totals = {r["item"]: r["amount"] for r in csv.DictReader(handle) if r["section"] == "total"}
    assert totals["Tax 20 % (included in the prices)"] == "0.100000"

    # Issuing from the page: a2's previous month, then the same again is no new number.
    await page.fill(
        "form[action^='/portal/invoices'][method=post] input[name=account_id]", str(world.a2)
    )
    await page.click("form[method=post] >> text=Issue")
    notice = await page.locator(".notice.ok").inner_text()
    assert notice.startswith(f"Invoice A{world.agent_a}-") and notice.endswith("issued.")
    await page.fill("form[method=post] input[name=account_id]", str(world.a2))
    await page.click("form[method=post] >> text=Issue")
    assert (await page.locator(".notice.ok").inner_text()).startswith("Already issued")
    assert len(await _rows(page)) == 3


async def test_customer_sees_only_its_own(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    await _issue(db_pool, world)
    await log_in(page, portal_url, world, "a1")
    await page.click("header nav >> text=Invoices")
    rows = await _rows(page)
    assert [n.split("-")[0] for n, _ in rows] == [f"A{world.agent_a}"]
    assert await page.locator("form[method=post] input[name=account_id]").count() == 0
    await screenshot(page, "invoices-customer")
    # Another account's invoice is not there for it, not even by its URL.
    other = await db_pool.fetchval("SELECT id FROM invoices WHERE account_id = $1", world.agent_a)
    reply = await page.goto(f"{portal_url}/portal/invoices/{other}.pdf")
    assert reply is not None and reply.status == 404
