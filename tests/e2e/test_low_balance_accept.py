"""The remaining credit and the low-balance hint in a real RADIUS exchange (radclient)
with the cisco profile: ``h323-credit-amount`` is what the customer has left after the
call's hold, ``h323-prompt-id=low_balance`` is there only below its threshold."""

from __future__ import annotations

import asyncio

import pytest

from gateway.rating.money import format_money
from tests.e2e.conftest import Customer, Gateway
from tests.e2e.test_radius_radclient import _call, radclient

UNIT = 1_000_000


async def _threshold(gateway: Gateway, c: Customer, threshold: int) -> None:
    """Set the customer's threshold and wait until the call path knows it (NOTIFY)."""
    await gateway.pool.execute(
        "UPDATE accounts SET low_balance_threshold_micros = $2 WHERE id = $1",
        c.account_id,
        threshold,
    )
    directory = gateway.path.directory
    assert directory is not None
    for _ in range(100):
        account = directory.account(c.account_id)
        if account is not None and account.low_balance_micros == threshold:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the gateway did not pick up the threshold within 2 s")


async def _held(gateway: Gateway, c: Customer) -> int:
    runtime = gateway.path.runtime
    root = await gateway.pool.fetchval("SELECT root_id FROM accounts WHERE id = $1", c.account_id)
    raw = await runtime.client().hget(runtime.keys.account(root, c.account_id), "held")
    return int(raw)


@pytest.mark.parametrize(("threshold", "hinted"), [(2 * UNIT, False), (5 * UNIT, True)])
async def test_accept_carries_credit_left_and_the_hint_below_the_threshold(
    gateway: Gateway, threshold: int, hinted: bool
) -> None:
    c = await gateway.customer(balance=10 * UNIT)
    await _threshold(gateway, c, threshold)
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(
            c,
            f"lowbal-{c.account_id}",
            f'User-Password = "{c.password}", Message-Authenticator = 0x00',
        ),
    )
    assert code == 0 and "Access-Accept" in out, out
    held = await _held(gateway, c)
    assert held > 0
    left = 10 * UNIT - held  # 10.00 less the hold of 7200 s at 0.06/min: 2.8
    assert left == 2_800_000
    assert f'h323-credit-amount = "h323-credit-amount={format_money(left)}"' in out, out
    assert ('h323-prompt-id = "h323-prompt-id=low_balance"' in out) is hinted, out
