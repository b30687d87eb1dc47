from __future__ import annotations

from playwright.async_api import Page

from tests.api.world import World
from tests.portal.conftest import log_in, screenshot


async def test_login_page_refuses_wrong_password(page: Page, portal_url: str, world: World) -> None:
    await page.goto(f"{portal_url}/portal")
    # Not logged in: sent to the login page, which remembers where we were going.
    assert "/portal/login" in page.url
    await screenshot(page, "login")
    await page.fill("input[name=login]", world.login("agent_a"))
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    alert = page.locator("[role=alert]")
    assert "wrong login or password" in (await alert.inner_text())


async def test_agent_logs_in_sees_dashboard_and_logs_out(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_a")
    assert await page.locator("h1").inner_text() == "Dashboard"
    await screenshot(page, "dashboard")
    await page.click("header button")
    await page.wait_for_url(f"{portal_url}/portal/login")
    await page.goto(f"{portal_url}/portal")
    assert "/portal/login" in page.url


async def test_password_change_shows_field_errors(
    page: Page, portal_url: str, world: World
) -> None:
    await log_in(page, portal_url, world, "agent_a1")
    await page.goto(f"{portal_url}/portal/password")
    await page.fill("input[name=current_password]", "not my password")
    await page.fill("input[name=new_password]", "long enough 1")
    await page.fill("input[name=confirm]", "long enough 1")
    await page.click("main button[type=submit]")
    error = page.locator("[data-field=current_password]")
    assert "does not match" in await error.inner_text()
    await page.fill("input[name=current_password]", "correct horse 1")
    await page.fill("input[name=new_password]", "short")
    await page.fill("input[name=confirm]", "short")
    await page.click("main button[type=submit]")
    assert "at least 8" in await page.locator("[data-field=new_password]").inner_text()


async def test_phone_sized_screen(page: Page, portal_url: str, world: World) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await log_in(page, portal_url, world, "agent_b")
    # Nothing forces a sideways scroll of the whole page on a phone.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await screenshot(page, "dashboard-phone")
