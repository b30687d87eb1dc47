"""Call rules over the API: who sets them for whom, what they may say, what applies."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from gateway.agents.context import ManagementContext
from tests import factories
from tests.api.world import World, headers


def R(account: int) -> str:
    return f"/api/v1/accounts/{account}/call-rules"


async def _put(
    api: httpx.AsyncClient, auth: dict[str, str], account: int, **body: Any
) -> httpx.Response:
    return await api.put(R(account), json=body, headers=auth)


async def test_an_agent_sets_its_customers_rules_and_they_show_with_what_is_inherited(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    a1 = await headers(api, world, "a1")
    fresh = await api.get(R(world.a1), headers=a1)
    assert fresh.status_code == 200 and fresh.json()["set"] is False
    top = await _put(api, admin, world.agent_a, block_prefixes=["881", "882"])
    assert top.status_code == 200, top.text
    done = await _put(
        api,
        agent_a,
        world.a1,
        allow_prefixes=["44", "49", "44"],
        max_price_per_min_micros=90_000,
        negative_margin="allow",
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["set"] is True and body["updated_by"] == world.login("agent_a")
    assert body["rules"]["allow_prefixes"] == ["44", "49"]  # cleaned
    assert [i["account_id"] for i in body["inherited"]] == [world.agent_a]
    assert body["inherited"][0]["rules"]["block_prefixes"] == ["881", "882"]
    # The customer sees its rules but cannot change them; nor can an agent its own.
    assert (await api.get(R(world.a1), headers=a1)).json()["rules"]["max_price_per_min_micros"]
    assert (await _put(api, a1, world.a1)).status_code == 403
    assert (await _put(api, agent_a, world.agent_a)).status_code == 403
    assert (await api.delete(R(world.a1), headers=a1)).status_code == 403
    assert (await api.delete(R(world.a1), headers=agent_a)).status_code == 204
    assert (await api.get(R(world.a1), headers=agent_a)).json()["set"] is False


async def test_an_agent_cannot_reach_outside_its_tree_or_above_its_own_limit(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    agent_a = await headers(api, world, "agent_a")
    agent_a1 = await headers(api, world, "agent_a1")
    assert (await _put(api, agent_a, world.b1)).status_code == 404  # another reseller's
    assert (await api.get(R(world.b1), headers=agent_a)).status_code == 404
    assert (await _put(api, admin, world.agent_a, max_price_per_min_micros=50_000)).is_success
    over = await _put(api, agent_a, world.agent_a1, max_price_per_min_micros=50_001)
    assert over.status_code == 422 and "50000" in over.text, over.text
    # Deeper down too: the sub-agent's chain carries its parent's limit.
    assert (await _put(api, agent_a, world.agent_a1, max_price_per_min_micros=40_000)).is_success
    deep = await _put(api, agent_a1, world.a11, max_price_per_min_micros=45_000)
    assert deep.status_code == 422, deep.text
    assert (await _put(api, agent_a1, world.a11, max_price_per_min_micros=40_000)).is_success


async def test_bad_rules_get_a_reason(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    for body, field in (
        ({"block_prefixes": ["44x"]}, "block_prefixes"),
        ({"allow_prefixes": ["1" * 21]}, "allow_prefixes"),
        ({"negative_margin": "sometimes"}, "negative_margin"),
        ({"min_margin_micros": -1}, "min_margin_micros"),
        ({"max_price_per_min_micros": 2**63}, "max_price_per_min_micros"),
        ({"block_prefixes": ["1"] * 1001}, "block_prefixes"),
        ({"surprise": True}, "surprise"),
        ({"max_attempts_per_s": 2**31}, "max_attempts_per_s"),
        ({"max_spend_hour_micros": -5}, "max_spend_hour_micros"),
    ):
        reply = await _put(api, agent_a, world.a1, **body)
        assert reply.status_code == 422, (body, reply.text)
        assert field in reply.text, (body, reply.text)


async def test_spend_caps_and_attempt_rates_are_kept_and_shown(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    limits = {
        "max_spend_hour_micros": 5_000_000,
        "max_spend_day_micros": 20_000_000,
        "max_spend_call_micros": 1_000_000,
        "max_attempts_per_s": 5,
        "max_attempts_per_min": 60,
    }
    reply = await _put(api, agent_a, world.a1, **limits)
    assert reply.status_code == 200, reply.text
    shown = (await api.get(R(world.a1), headers=agent_a)).json()["rules"]
    assert {k: shown[k] for k in limits} == limits


async def test_a_fraud_block_shows_why_and_its_agents_unblock_starts_afresh(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    await db_pool.execute(
        "UPDATE accounts SET status = 'disabled', disabled_reason = 'fraud', "
        "disabled_detail = 'unrated_attempts: 21 attempts', disabled_at = now() WHERE id = $1",
        world.a1,
    )
    key = ctx.keys.account(world.agent_a, world.a1)
    countries = ctx.keys.countries(world.agent_a, world.a1)
    await ctx.redis.hset(key, mapping={"vh": 1, "vu": 21})
    await ctx.redis.hset(countries, mapping={"49": 1_000, "881": 2_000})
    shown = (await api.get(f"/api/v1/accounts/{world.a1}", headers=agent_a)).json()
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "fraud")
    assert shown["disabled_detail"] == "unrated_attempts: 21 attempts"
    reply = await api.patch(
        f"/api/v1/customers/{world.a1}", json={"status": "active"}, headers=agent_a
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["status"], body["disabled_reason"], body["disabled_detail"]) == ("active", "", "")
    assert await ctx.redis.hget(key, "vh") is None  # the hour's counts forgiven
    assert await ctx.redis.hgetall(countries) == {b"49": b"0", b"881": b"0"}  # known, not new


async def test_the_margin_report_names_the_prefixes_sold_below_cost(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        cost = await factories.rate_group(
            conn, [factories.rate(10_000, prefix="44"), factories.rate(50_000, prefix="4478")]
        )
        sell = await factories.rate_group(
            conn, [factories.rate(12_000, prefix="44"), factories.rate(45_000, prefix="447")]
        )
        agent = await factories.account(
            conn,
            kind="agent",
            mode="wholesale",
            balance=1,
            rate_group_id=cost,
            parent=world.agent_a,
        )
        await factories.account(conn, parent=agent, balance=1, rate_group_id=sell)
    admin = await headers(api, world, "admin")
    reply = await api.get(f"/api/v1/accounts/{agent}/margin-report", headers=admin)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["below_cost"] == 1
    (group,) = body["groups"]
    assert (group["rate_group_id"], group["accounts"], group["compared"]) == (sell, 1, 3)
    (loss,) = group["below"]
    assert (loss["prefix"], loss["margin_micros"]) == ("4478", -5_000)
    wanting = await api.get(
        f"/api/v1/accounts/{agent}/margin-report",
        params={"min_margin_micros": 5_000},
        headers=admin,
    )
    assert [m["prefix"] for m in wanting.json()["groups"][0]["below"]] == ["44", "4478"]
    agent_b = await headers(api, world, "agent_b")
    other = await api.get(f"/api/v1/accounts/{agent}/margin-report", headers=agent_b)
    assert other.status_code == 404
    customer = await api.get(f"/api/v1/accounts/{world.a1}/margin-report", headers=admin)
    assert customer.status_code == 404  # not an agent
