"""A part of the API suite, run on the 6-node Redis Cluster in every run: logins (their
throttle counters sit in different slots), live holds, status pushed to the mirror,
refills and transfers mirrored by the balance scripts on the node of their tree, and
concurrent replays moving money once. (`GATEWAY_TEST_API_ON_CLUSTER=1` runs the whole
API suite there.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.agents.context import ManagementContext
from gateway.balance.keys import Keys
from gateway.config import Config
from tests.api.conftest import cluster_context
from tests.api.test_auth import test_login_is_rate_limited_per_login, test_login_me_logout
from tests.api.test_customers import (
    test_account_shows_live_holds_from_redis,
    test_patch_customer,
    test_remove_customer_soft,
)
from tests.api.test_money import (
    test_admin_refill_is_idempotent,
    test_concurrent_replays_move_money_once,
    test_transfer_beyond_available_moves_nothing,
    test_transfer_is_mirrored_in_redis,
)

__all__ = [
    "test_account_shows_live_holds_from_redis",
    "test_admin_refill_is_idempotent",
    "test_concurrent_replays_move_money_once",
    "test_login_is_rate_limited_per_login",
    "test_login_me_logout",
    "test_patch_customer",
    "test_remove_customer_soft",
    "test_transfer_beyond_available_moves_nothing",
    "test_transfer_is_mirrored_in_redis",
]


@pytest.fixture
async def ctx(
    request: pytest.FixtureRequest, config: Config, db_pool: asyncpg.Pool, keys: Keys
) -> AsyncIterator[ManagementContext]:
    async with cluster_context(request, config, db_pool, keys) as context:
        assert context.keys.shards == 6
        yield context
