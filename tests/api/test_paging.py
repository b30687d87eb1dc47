"""Paging against ``api.page_size_max``: the default page shrinks to fit a small maximum,
and a refused ``limit`` is reported where it came from (the query)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.balance.keys import Keys
from gateway.config import Config
from tests.api.world import World, headers


@pytest.fixture
async def small_pages(
    config: Config, db_pool: asyncpg.Pool, redis_client: aioredis.Redis, keys: Keys
) -> AsyncIterator[httpx.AsyncClient]:
    small = dataclasses.replace(config, api=dataclasses.replace(config.api, page_size_max=1))
    ctx = ManagementContext.create(small, db_pool, redis_client, keys)
    await ctx.start()
    transport = httpx.ASGITransport(app=create_app(ctx), client=("127.0.0.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client
    await ctx.close()


async def test_default_page_fits_a_small_maximum(
    small_pages: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(small_pages, world, "agent_a")
    first = await small_pages.get("/api/v1/customers", headers=agent_a)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["limit"] == 1 and len(page["items"]) == 1 and page["total"] >= 2
    csv = await small_pages.get("/api/v1/reports/refills?format=csv", headers=agent_a)
    assert csv.status_code == 200, csv.text


async def test_a_limit_above_the_maximum_names_the_query_parameter(
    small_pages: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(small_pages, world, "agent_a")
    reply = await small_pages.get("/api/v1/customers?limit=2", headers=agent_a)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["query", "limit"]
