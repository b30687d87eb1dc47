"""Low-balance care over the API: who sets it for whom, what it may say, where it shows."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.agents.context import ManagementContext
from gateway.agents.low_balance import run_round
from tests import factories
from tests.api.world import World, headers

UNIT = 1_000_000


def R(account: int) -> str:
    return f"/api/v1/accounts/{account}/low-balance"


async def _put(
    api: httpx.AsyncClient, auth: dict[str, str], account: int, **body: Any
) -> httpx.Response:
    return await api.put(R(account), json=body, headers=auth)


async def test_an_agent_sets_a_threshold_below_it_and_the_account_shows_it(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    a1 = await headers(api, world, "a1")
    fresh = await api.get(R(world.a1), headers=a1)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["threshold_micros"] is None and fresh.json()["below"] is False
    done = await _put(api, agent_a, world.a1, threshold_micros=2 * UNIT)
    assert done.status_code == 200, done.text
    assert done.json()["threshold_micros"] == 2 * UNIT
    assert done.json()["available_micros"] == 5 * UNIT
    account = (await api.get(f"/api/v1/accounts/{world.a1}", headers=a1)).json()
    assert account["low_balance_threshold_micros"] == 2 * UNIT
    assert account["auto_refill_micros"] == 0
    # The customer reads it but cannot change it; an agent not its own; nor another tree's.
    assert (await _put(api, a1, world.a1, threshold_micros=1)).status_code == 403
    assert (await _put(api, agent_a, world.agent_a, threshold_micros=1)).status_code == 403
    assert (await _put(api, agent_a, world.b1, threshold_micros=1)).status_code == 404
    cleared = await _put(api, agent_a, world.a1)
    assert cleared.json()["threshold_micros"] is None


async def test_auto_refill_needs_a_threshold_a_transfer_parent_and_a_limit(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")  # wholesale
    agent_b = await headers(api, world, "agent_b")  # transfer
    for auth, account, body, field in (
        (agent_a, world.a1, {"threshold_micros": UNIT, "auto_refill_micros": UNIT}, "auto_refill"),
        (agent_b, world.b1, {"auto_refill_micros": UNIT}, "auto_refill_micros"),
        (
            agent_b,
            world.b1,
            {"threshold_micros": UNIT, "auto_refill_micros": 2 * UNIT},
            "auto_refill_monthly_limit_micros",
        ),
        (agent_b, world.b1, {"threshold_micros": -1}, "threshold_micros"),
        (agent_b, world.b1, {"threshold_micros": 1, "nonsense": 1}, "nonsense"),
    ):
        reply = await _put(api, auth, account, **body)
        assert reply.status_code == 422 and field in reply.text, (body, reply.text)
    ok = await _put(
        api,
        agent_b,
        world.b1,
        threshold_micros=5 * UNIT,
        auto_refill_micros=2 * UNIT,
        auto_refill_monthly_limit_micros=4 * UNIT,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["parent_billing_mode"] == "transfer"


async def test_the_watch_state_and_refill_outcome_show_on_the_account(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext
) -> None:
    admin = await headers(api, world, "admin")
    async with ctx.pool.acquire() as conn:
        agent = await factories.account(conn, kind="agent", mode="transfer", balance=UNIT)
        customer = await factories.account(conn, parent=agent, balance=UNIT)
    body = {
        "threshold_micros": 3 * UNIT,
        "auto_refill_micros": 2 * UNIT,
        "auto_refill_monthly_limit_micros": 10 * UNIT,
    }
    assert (await _put(api, admin, customer, **body)).status_code == 200
    await run_round(ctx)
    seen = (await api.get(R(customer), headers=admin)).json()
    assert seen["below"] is True and seen["crossings"] == 1
    assert seen["refill_status"] == "no_funds" and "INSUFFICIENT_FUNDS" in seen["refill_detail"]
    assert seen["refilled_this_month_micros"] == 0
