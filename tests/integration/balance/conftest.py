from __future__ import annotations

import pytest

from gateway.balance.service import Balance
from gateway.config import BalanceConfig
from tests.conftest import MakeBalance


@pytest.fixture
async def balance(make_balance: MakeBalance) -> Balance:
    return await make_balance(BalanceConfig(max_call_s=3600))
