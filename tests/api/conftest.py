from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from tests.api import world as world_mod


@pytest.fixture
async def api(ctx: ManagementContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx), client=("127.0.0.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture
async def world(db_pool: asyncpg.Pool) -> world_mod.World:
    async with db_pool.acquire() as conn:
        return await world_mod.build(conn)
