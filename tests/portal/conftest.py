"""Portal tests in a real browser: Debian's Chromium driven by Playwright, against
the API and portal served by uvicorn on a loopback port of this test run.

Screenshots of the pages land in ``test-artifacts/portal/`` (or
``$GATEWAY_TEST_ARTIFACTS/portal``) for people to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.api.server import _QuietServer
from gateway.runtime.embedded import free_port
from tests.api.conftest import world  # noqa: F401  (a fixture shared with the API tests)
from tests.api.world import PASSWORD, World

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_PRESENT = os.path.exists(CHROMIUM)
ARTIFACTS = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS", "test-artifacts")) / "portal"


@pytest.fixture
async def portal_url(ctx: ManagementContext) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(ctx), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "portal server did not start"
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (Debian package chromium)")
        pytest.skip("chromium is not installed (Debian package chromium)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        with contextlib.suppress(Exception):
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    tab = await context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    await context.close()


async def log_in(page: Page, base: str, world: World, who: str, password: str = PASSWORD) -> None:  # noqa: F811
    await page.goto(f"{base}/portal/login")
    await page.fill("input[name=login]", world.login(who))
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/portal")


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
