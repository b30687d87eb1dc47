"""Tickets and announcements in a real browser."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Dialog, Page

from tests.api.conftest import api  # noqa: F401  (the operator's API client)
from tests.api.world import World, headers
from tests.portal.conftest import log_in, screenshot

T = "/api/v1/tickets"


async def _texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in await page.locator(selector).all_inner_texts()]


async def test_ticket_opened_answered_by_operator_and_closed(
    page: Page,
    portal_url: str,
    world: World,
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    await log_in(page, portal_url, world, "agent_a")
    await page.click("header nav >> text=Tickets")
    # A blank subject (spaces pass the browser's check) is the API's to refuse.
    await page.fill("input[name=subject]", "   ")
    await page.fill("textarea[name=body]", "Calls to Berlin fail.")
    await page.click("text=Open ticket")
    assert await page.locator("[data-field=subject]").count() == 1
    assert await page.locator("textarea[name=body]").input_value() == "Calls to Berlin fail."

    subject = f"Berlin route {uuid.uuid4().hex[:6]}"
    await page.fill("input[name=subject]", subject)
    await page.click("text=Open ticket")
    await page.wait_for_url(f"{portal_url}/portal/tickets/*")
    ticket_id = int(page.url.rsplit("/", 1)[1].split("?")[0])
    assert await page.locator("[role=status]").inner_text() == "Ticket opened."
    assert await page.locator("#ticket-status").inner_text() == "open"
    assert await _texts(page, ".message .body") == ["Calls to Berlin fail."]

    # The operator answers through the API; the agent sees the answer.
    admin = await headers(api, world, "admin")
    answer = await api.post(
        f"{T}/{ticket_id}/messages", json={"body": "Fixed the trunk, try now."}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    await page.reload()
    assert await _texts(page, ".message .body") == [
        "Calls to Berlin fail.",
        "Fixed the trunk, try now.",
    ]
    assert await page.locator(".message").nth(1).get_attribute("data-author") == world.login(
        "admin"
    )
    assert await page.locator("#ticket-status").inner_text() == "answered"

    await page.fill("textarea[name=body]", "Works now, thanks.")
    await page.click("text=Send reply")
    await page.wait_for_url(f"{portal_url}/portal/tickets/{ticket_id}?done=*")
    assert len(await _texts(page, ".message .body")) == 3
    assert await page.locator("#ticket-status").inner_text() == "open"
    await screenshot(page, "ticket")

    # The list shows it, and the status filter narrows the list.
    await page.goto(f"{portal_url}/portal/tickets")
    row = page.locator(f"#tickets tr[data-id='{ticket_id}']")
    assert await row.locator("td.subject").inner_text() == subject
    await page.select_option("select[name=status]", "closed")
    await page.click("form.filters button[type=submit]")
    assert await row.count() == 0

    # Closing asks first; then the ticket takes no more replies.
    await page.goto(f"{portal_url}/portal/tickets/{ticket_id}")

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.click("text=Close ticket")
    await page.wait_for_url(f"{portal_url}/portal/tickets/{ticket_id}?done=*")
    assert await page.locator("#ticket-status").inner_text() == "closed"
    assert await page.locator("textarea[name=body]").count() == 0
    await page.goto(f"{portal_url}/portal/tickets?status=closed")
    assert await row.locator("td span.status").inner_text() == "closed"
    await screenshot(page, "tickets")


async def test_customer_sees_only_its_own_tickets(
    page: Page,
    portal_url: str,
    world: World,
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    b_ticket = await api.post(
        T,
        json={"subject": "agent B's own trouble", "body": "Private."},
        headers=await headers(api, world, "agent_b"),
    )
    assert b_ticket.status_code == 201, b_ticket.text
    b_id = b_ticket.json()["id"]

    await log_in(page, portal_url, world, "a1")
    await page.goto(f"{portal_url}/portal/tickets")
    assert "Your agent answers it." in await page.locator("main").inner_text()
    await page.fill("input[name=subject]", "No dial tone")
    await page.fill("textarea[name=body]", "Since noon.")
    await page.click("text=Open ticket")
    await page.wait_for_url(f"{portal_url}/portal/tickets/*")
    own_id = int(page.url.rsplit("/", 1)[1].split("?")[0])

    await page.goto(f"{portal_url}/portal/tickets")
    ids = [
        int(i or 0)
        for i in await page.locator("#tickets tr[data-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
    ]
    assert ids == [own_id]
    reply = await page.goto(f"{portal_url}/portal/tickets/{b_id}")
    assert reply is not None and reply.status == 404
    assert "Private." not in await page.content()
    assert await page.locator("h1").inner_text() == "No such ticket"

    # Agent A sees its customer's ticket and answers it in the portal.
    await page.click("header button")
    await log_in(page, portal_url, world, "agent_a")
    await page.goto(f"{portal_url}/portal/tickets?scope=handled")
    assert await page.locator(f"#tickets tr[data-id='{own_id}']").count() == 1
    assert await page.locator(f"#tickets tr[data-id='{b_id}']").count() == 0


async def test_announcements_show_on_the_dashboard(
    page: Page,
    portal_url: str,
    world: World,
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    admin = await headers(api, world, "admin")
    tag = uuid.uuid4().hex[:8]
    made: list[int] = []

    async def announce(title: str, audience: str) -> None:
        reply = await api.post(
            "/api/v1/announcements",
            json={"title": title, "body": f"Body of {title}", "audience": audience},
            headers=admin,
        )
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["id"])

    try:
        # Older live announcements (a busy operator): the newest must still show.
        for n in range(21):
            await announce(f"Older {tag} {n}", "all")
        await announce(f"Agents only {tag}", "agents")
        await announce(f"Everyone {tag}", "all")
        await log_in(page, portal_url, world, "agent_a1")
        text = await page.locator("main").inner_text()
        assert f"Agents only {tag}" in text and f"Body of Everyone {tag}" in text
        await page.click("header button")
        await log_in(page, portal_url, world, "b1")
        text = await page.locator("main").inner_text()
        assert f"Everyone {tag}" in text
        assert f"Agents only {tag}" not in text
    finally:
        for announcement in made:
            await api.delete(f"/api/v1/announcements/{announcement}", headers=admin)
