"""A peak/off-peak call through the RADIUS front (radclient, the gateway in-process):
the CDR is split at the peak's start exactly as an independent pricing says, and
rounded as the rate group says."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from gateway.rating.periods import DAY_NAMES
from tests.e2e.conftest import Gateway
from tests.e2e.test_radius_radclient import _call, _cdrs, radclient

OFF_PEAK, PEAK, PEAK_FEE = 60_000, 120_000, 20_000
AGENT = 30_000


def _cisco_time(moment: int) -> str:
    t = datetime.fromtimestamp(moment, UTC)
    return t.strftime("%H:%M:%S.000 UTC %a %b ") + f"{t.day} {t.year}"


def _billed(seconds: int, first: int = 30, step: int = 6) -> int:
    return first if seconds <= first else first + -(-(seconds - first) // step) * step


async def _peak_loaded(gateway: Gateway, group: int) -> None:
    rates = gateway.path.rates
    assert rates is not None
    for _ in range(100):
        table = rates.index.get(group)
        rate = None if table is None else next(iter(table), None)
        loaded = rate is not None and rate.periods is not None
        if loaded and table is not None and table.rounding.decimals == 4:  # both changes in
            return
        await asyncio.sleep(0.02)
    pytest.fail("the gateway did not load the periods within 2 s")


async def test_a_call_into_the_peak_is_billed_split_at_its_start(gateway: Gateway) -> None:
    c = await gateway.customer(balance=10_000_000, increments=(30, 6))
    group = await gateway.pool.fetchval(
        "SELECT rate_group_id FROM accounts WHERE id = $1", c.account_id
    )
    now = int(time.time())
    boundary = (now // 60 + 2) * 60  # the peak starts in 1 to 2 minutes (UTC)
    local = datetime.fromtimestamp(boundary, UTC)
    start_min = local.hour * 60 + local.minute
    end_min = min(start_min + 30, 1440)
    periods = (
        f"{DAY_NAMES[local.weekday()]} {start_min // 60:02d}:{start_min % 60:02d}-"
        f"{end_min // 60:02d}:{end_min % 60:02d} 0.12 0.02"
    )
    await gateway.pool.execute(
        "UPDATE rates SET periods = $1 WHERE rate_group_id = $2", periods, group
    )
    await gateway.pool.execute(
        "UPDATE rate_groups SET time_zone = 'UTC', cost_decimals = 4 WHERE id = $1", group
    )
    await _peak_loaded(gateway, group)

    session = f"peak-{c.account_id}"
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    assert code == 0 and "Access-Accept" in out, out
    connected = now
    duration = boundary - connected + 200  # 200 s of peak
    connect = f'h323-connect-time = "h323-connect-time={_cisco_time(connected)}"'
    for status, extra in (("Start", ""), ("Stop", f", Acct-Session-Time = {duration}")):
        code, out = await radclient(
            gateway.acct_port,
            "acct",
            _call(c, session, f"Acct-Status-Type = {status}, {connect}{extra}"),
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)
    await gateway.drain()
    (cdr,) = await _cdrs(gateway, session)

    # Independently: bill 30/6 over the whole call, price each billed second by the
    # period it falls in, the off-peak (start) fee, round up once, then to 4 decimals.
    billed = _billed(duration)
    off = boundary - connected
    weight = off * OFF_PEAK + (billed - off) * PEAK
    exact = -(-weight // 60)
    customer = -(-exact // 100) * 100
    agent = -(-billed * AGENT // 60)  # the agent's group: one price, exact
    assert list(cdr["cost_per_level_micros"]) == [customer, agent]  # type: ignore[call-overload]
    assert cdr["duration_s"] == duration and list(cdr["billed_s_per_level"]) == [billed, billed]  # type: ignore[call-overload]
    assert customer != -(-billed * OFF_PEAK // 60)  # not priced all off-peak


def _cisco_ms(moment: float) -> str:
    t = datetime.fromtimestamp(int(moment), UTC)
    ms = round((moment - int(moment)) * 1000)
    return t.strftime(f"%H:%M:%S.{ms:03d} UTC %a %b ") + f"{t.day} {t.year}"


async def test_sub_second_increments_bill_the_switchs_milliseconds(gateway: Gateway) -> None:
    c = await gateway.customer(balance=10_000_000, increments=(1, 1))
    group = await gateway.pool.fetchval(
        "SELECT rate_group_id FROM accounts WHERE id = $1", c.account_id
    )
    await gateway.pool.execute(
        "UPDATE rates SET next_increment_ms = 100 WHERE rate_group_id = $1", group
    )
    rates = gateway.path.rates
    assert rates is not None
    for _ in range(100):
        table = rates.index.get(group)
        if table is not None and next(iter(table)).next_increment_ms == 100:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the gateway did not load the sub-second increments within 2 s")
    session = f"ms-{c.account_id}"
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    assert code == 0 and "Access-Accept" in out, out
    connected = time.time() - 61.5
    hung = connected + 61.234
    times = (
        f'h323-connect-time = "h323-connect-time={_cisco_ms(connected)}", '
        f'h323-disconnect-time = "h323-disconnect-time={_cisco_ms(hung)}"'
    )
    for status, extra in (("Start", ""), ("Stop", ", Acct-Session-Time = 61")):
        code, out = await radclient(
            gateway.acct_port,
            "acct",
            _call(c, session, f"Acct-Status-Type = {status}, {times}{extra}"),
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)
    await gateway.drain()
    (cdr,) = await _cdrs(gateway, session)
    # The customer: the first second, then tenths: 61.3 s at 0.06/min = 61,300 micros;
    # the agent (whole seconds): 61 s at 0.03 = 30,500.
    assert list(cdr["cost_per_level_micros"]) == [61_300, 30_500]  # type: ignore[call-overload]
    assert list(cdr["billed_s_per_level"]) == [62, 61]  # type: ignore[call-overload]
    assert cdr["duration_s"] == 61
