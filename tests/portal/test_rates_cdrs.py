"""Rates, CDR report and traffic chart pages in a real browser."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Page

from tests.api.conftest import api  # noqa: F401  (the operator's API client)
from tests.api.test_cdrs import Call, insert_calls
from tests.api.world import PASSWORD, World, headers
from tests.portal.conftest import log_in, screenshot

_sessions = itertools.count(1)


def _sid(world: World) -> str:
    return f"portal-{world.suffix}-{next(_sessions)}"


async def _cells(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in await page.locator(selector).all_inner_texts()]


async def test_rates_search_by_prefix_and_download(
    page: Page,
    portal_url: str,
    world: World,
    api: httpx.AsyncClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    admin = await headers(api, world, "admin")
    for prefix, destination, price, fee in (
        ("4930", "Germany Berlin", 21_500, 10_000),
        ("4989", "Germany Munich", 22_000, 0),
        ("33", "France", 15_000, 0),
    ):
        reply = await api.post(
            f"/api/v1/rate-groups/{world.rate_group}/rates",
            json={
                "prefix": prefix,
                "destination": destination,
                "price_per_min_micros": price,
                "connect_fee_micros": fee,
                "first_increment_s": 30,
                "next_increment_s": 6,
                "effective_from": "2024-01-01T00:00:00Z",
            },
            headers=admin,
        )
        assert reply.status_code == 201, reply.text
    terms = {"time_zone": "Europe/Berlin", "cost_decimals": 4, "cost_rounding": "half_up"}
    reply = await api.patch(f"/api/v1/rate-groups/{world.rate_group}", json=terms, headers=admin)
    assert reply.status_code == 200, reply.text
    for prefix, more in (
        ("4940", {"periods": "mon-fri 08:00-18:00 0.03"}),
        ("4941", {"next_increment_s": 1, "next_increment_ms": 100, "price_per_min_micros": 11_000}),
    ):
        reply = await api.post(
            f"/api/v1/rate-groups/{world.rate_group}/rates",
            json={
                "prefix": prefix,
                "destination": "Germany Hamburg",
                "price_per_min_micros": 12_000,
                "effective_from": "2024-01-01T00:00:00Z",
                **more,  # may set its own price
            },
            headers=admin,
        )
        assert reply.status_code == 201, reply.text
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Rates")
    assert await page.locator("#group-zone").inner_text() == "Europe/Berlin"
    assert await page.locator("#group-rounding").inner_text() == "half up to 4 decimals"
    peak = await _cells(page, "#rates tr[data-prefix='4940'] td")
    assert peak[4] == "60/60 s" and "mon-fri 08:00-18:00" in peak[8], peak
    ms = await _cells(page, "#rates tr[data-prefix='4941'] td")
    assert ms[4] == "60 s/100 ms" and ms[8] == "—", ms
    assert await _cells(page, "#rates tr[data-prefix] td:first-child") == [
        "33",
        "44",
        "4930",
        "4940",
        "4941",
        "4989",
    ]
    await page.fill("input[name=prefix]", "493")
    await page.click("form.filters button[type=submit]")
    row = page.locator("#rates tr[data-prefix]")
    assert await row.count() == 1
    cells = await _cells(page, "#rates tr[data-prefix] td")
    assert cells[:5] == ["4930", "Germany Berlin", "0.0215 USD", "0.0100 USD", "30/6 s"]
    assert cells[6] == "2024-01-01 00:00"
    await screenshot(page, "rates")

    # Sorting by price, most expensive first (two clicks on the header).
    await page.goto(f"{portal_url}/portal/rates")
    await page.click("#rates th >> text=Price / min")
    await page.click("#rates th >> text=Price / min")
    assert await _cells(page, "#rates tr[data-prefix] td:first-child") == [
        "44",
        "4989",
        "4930",
        "33",
        "4940",
        "4941",
    ]

    # A prefix is digits: the API's refusal shows next to the field.
    await page.fill("input[name=prefix]", "4x")
    await page.click("form.filters button[type=submit]")
    assert "pattern" in await page.locator("[data-field=prefix]").inner_text()

    async with page.expect_download() as info:
        await page.click("text=Download CSV")
    download = await info.value
    target = tmp_path / "rates.csv"
    await download.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert sorted(r["prefix"] for r in rows) == ["33", "44", "4930", "4940", "4941", "4989"]
    assert next(r for r in rows if r["prefix"] == "4940")["periods"] == "mon-fri 08:00-18:00 0.03"


MAY = datetime(2019, 5, 10, 9, 0, tzinfo=UTC)
MAY_WINDOW = "from=2019-05-01&to=2019-05-31"


async def _may_calls(db_pool: asyncpg.Pool, world: World) -> list[Call]:
    made = [
        Call(_sid(world), world.a1, MAY, 125, (3_000, 2_000)),
        Call(_sid(world), world.a1, MAY + timedelta(hours=1), 0, (0, 0), caller="15559999"),
        Call(_sid(world), world.a2, MAY + timedelta(hours=2), 60, (1_000, 800), called="4930111"),
        Call(_sid(world), world.a11, MAY + timedelta(hours=3), 30, (700, 500, 400)),
        Call(_sid(world), world.b1, MAY + timedelta(hours=4), 90, (1_500, 0)),
        # June: outside the window asked for.
        Call(_sid(world), world.a1, MAY + timedelta(days=30), 45, (900, 600)),
    ]
    await insert_calls(db_pool, world, made)
    return made


async def test_cdr_filters_sorting_totals_and_csv(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await _may_calls(db_pool, world)
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/cdrs?{MAY_WINDOW}")
    durations = await _cells(page, "#cdrs td.duration")
    # Newest first by default; B's customer and the June call are not A's to see.
    assert durations == ["0:30", "1:00", "0:00", "2:05"]
    assert await page.locator("#total-calls").inner_text() == "4"
    assert await page.locator("#total-minutes").inner_text() == f"{215 / 60:.2f}"
    assert await page.locator("#total-cost").inner_text() == "0.0047 USD"
    total_row = await _cells(page, "#cdrs tr.total-row th")
    assert total_row[0].startswith("Total (4 calls, 3 answered)")
    assert "3:35" in total_row
    await screenshot(page, "cdrs")

    # Clicking a header sorts by it; a second click turns the order round.
    await page.click("#cdrs th >> text=Duration")
    assert await _cells(page, "#cdrs td.duration") == ["0:00", "0:30", "1:00", "2:05"]
    await page.click("#cdrs th >> text=Duration")
    assert await _cells(page, "#cdrs td.duration") == ["2:05", "1:00", "0:30", "0:00"]
    assert await page.locator("#cdrs th[aria-sort=descending]").inner_text() == "Duration ▼"

    # Filters narrow the list and the totals with it.
    await page.fill("input[name=called_prefix]", "4930")
    await page.click("form.filters button[type=submit]")
    assert await _cells(page, "#cdrs td.called") == ["4930111"]
    assert await page.locator("#total-calls").inner_text() == "1"
    assert await page.locator("#total-cost").inner_text() == "0.0010 USD"
    await page.fill("input[name=called_prefix]", "")
    await page.select_option("select[name=status]", "failed")
    await page.click("form.filters button[type=submit]")
    assert await _cells(page, "#cdrs td.duration") == ["0:00"]
    await page.select_option("select[name=status]", "")
    await page.select_option("select[name=account_id]", str(world.a1))
    await page.click("form.filters button[type=submit]")
    assert await page.locator("#total-calls").inner_text() == "2"
    assert await page.locator("#total-cost").inner_text() == "0.0030 USD"

    async with page.expect_download() as info:
        await page.click("text=Download CSV")
    target = tmp_path / "cdrs.csv"
    await (await info.value).save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert sorted(int(r["duration_s"]) for r in rows) == [0, 125]
    assert {r["account_id"] for r in rows} == {str(world.a1)}

    # A window the API refuses: the reason shows at the field.
    await page.goto(f"{portal_url}/portal/cdrs?from=2019-05-01&to=2018-05-01")
    assert "before" in await page.locator("[data-field=from]").inner_text()


async def test_customer_sees_only_its_own_calls(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    await _may_calls(db_pool, world)
    await page.set_viewport_size({"width": 390, "height": 844})
    await log_in(page, portal_url, world, "a1")
    await page.goto(f"{portal_url}/portal/cdrs?{MAY_WINDOW}")
    assert await _cells(page, "#cdrs td.duration") == ["0:00", "2:05"]
    assert await page.locator("select[name=account_id]").count() == 0
    assert await page.locator("#total-cost").inner_text() == "0.0030 USD"
    # The wide table scrolls inside its box; the page itself does not.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(page, "cdrs-phone")


def _at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 10, 0, tzinfo=UTC)


async def test_traffic_chart_bars_and_table(
    page: Page, portal_url: str, world: World, db_pool: asyncpg.Pool
) -> None:
    await insert_calls(
        db_pool,
        world,
        [
            Call(_sid(world), world.a1, _at(2011, 1), 61, (2_000, 1_000)),  # 2 min billed
            Call(_sid(world), world.a1, _at(2011, 1, 31), 30, (1_000, 500)),  # 1 min
            Call(_sid(world), world.a11, _at(2011, 12, 31), 120, (4_000, 3_000, 2_000)),
            Call(_sid(world), world.a1, _at(2010, 1), 60, (1_000, 700)),
            Call(_sid(world), world.a1, _at(2010, 6), 600, (10_000, 7_000)),
            Call(_sid(world), world.b1, _at(2011, 3), 300, (1_000, 0)),  # not A's
        ],
    )
    minutes = {(2011, 1): 3, (2011, 12): 2, (2010, 1): 1, (2010, 6): 10}
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/traffic?year=2011")
    bars = page.locator("#traffic-chart g.bars rect")
    assert await bars.count() == 24
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    heights: dict[tuple[int, int], float] = {}
    for i in range(24):
        bar = bars.nth(i)
        year = int(await bar.get_attribute("data-year") or 0)
        month = int(await bar.get_attribute("data-month") or 0)
        value = minutes.get((year, month), 0)
        assert await bar.get_attribute("data-value") == str(value)
        title = await bar.locator("title").text_content()
        assert title == f"{names[month - 1]} {year}: {value} min"
        heights[(year, month)] = float(await bar.get_attribute("height") or -1)
    tallest = heights[(2010, 6)]
    assert tallest > 100  # most of the plot's height
    for key, value in minutes.items():
        assert abs(heights[key] - tallest * value / 10) < 0.05, key
    assert heights[(2011, 3)] == 0.0
    # The value axis reads 0..10 and the tallest bar (10 minutes) reaches its top line.
    ticks = [
        t.strip() for t in await page.locator("#traffic-chart g.grid text").all_text_contents()
    ]
    assert ticks == ["0", "2", "4", "6", "8", "10"]
    lines = page.locator("#traffic-chart g.grid line")
    top_line = float(await lines.nth(5).get_attribute("y1") or 0)
    zero_line = float(await lines.nth(0).get_attribute("y1") or 0)
    june = page.locator("#traffic-chart rect[data-year='2010'][data-month='6']")
    assert float(await june.get_attribute("y") or 0) == top_line
    assert abs(tallest - (zero_line - top_line)) < 0.05
    # The two years sit side by side in the same month's slot, last year first.
    jan_last = float(await bars.nth(0).get_attribute("x") or 0)
    jan_this = float(await bars.nth(1).get_attribute("x") or 0)
    assert await bars.nth(0).get_attribute("data-year") == "2010"
    assert jan_last < jan_this
    legend = await page.locator("#traffic-chart g.legend").text_content() or ""
    assert "2010" in legend and "2011" in legend

    january = await _cells(page, "#traffic tr[data-month='1'] td")
    assert january == ["Jan", "1", "1", "0.0010 USD", "2", "3", "0.0030 USD"]
    assert (await _cells(page, "#traffic tr.total-row th"))[1:] == [
        "2",
        "11",
        "0.0110 USD",
        "3",
        "5",
        "0.0070 USD",
    ]
    await screenshot(page, "traffic")

    # Revenue instead of minutes: the same bars measure money now.
    await page.select_option("select[name=metric]", "revenue")
    await page.click("form.filters button[type=submit]")
    dec = page.locator("#traffic-chart rect[data-year='2011'][data-month='12'] title")
    assert await dec.text_content() == "Dec 2011: 0.0040 USD"

    # On a phone the chart scales down instead of pushing the page sideways.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.reload()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    box = await page.locator("#traffic-chart").bounding_box()
    assert box is not None and box["width"] <= 390
    await screenshot(page, "traffic-phone")


async def test_operator_pages_and_odd_urls(portal_url: str, world: World) -> None:
    """Without a browser: every page answers the operator, and odd URLs get a page."""
    async with httpx.AsyncClient(base_url=portal_url, follow_redirects=False) as http:
        login = await http.post(
            "/portal/login", data={"login": world.login("admin"), "password": PASSWORD}
        )
        assert login.status_code == 303
        for path in ("/portal/rates", "/portal/cdrs", "/portal/traffic", "/portal/tickets"):
            reply = await http.get(path)
            assert reply.status_code == 200, (path, reply.text[:500])
            assert "<h1>" in reply.text
        cdrs = await http.get("/portal/cdrs")
        assert 'name="account_id"' in cdrs.text and 'type="number"' in cdrs.text
        for path in (
            "/portal/tickets/abc",
            "/portal/tickets/99999999999999999999",
            "/portal/rates?group=abc",
            "/portal/rates/abc.csv",
        ):
            assert (await http.get(path)).status_code == 404, path
        bad = await http.get("/portal/cdrs?offset=abc")
        assert bad.status_code == 422 and 'role="alert"' in bad.text
        year = await http.get("/portal/traffic?year=1900")
        assert year.status_code == 422 and 'data-field="year"' in year.text
        assert "Open a ticket" not in (await http.get("/portal/tickets")).text
    async with httpx.AsyncClient(base_url=portal_url, follow_redirects=False) as anonymous:
        reply = await anonymous.get("/portal/cdrs.csv")
        assert reply.status_code == 303 and "/portal/login" in reply.headers["location"]
