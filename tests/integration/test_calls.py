"""The call lifecycle over real PostgreSQL and Redis: identify, rate, hold, bill."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from gateway.authz.identify import BY_CALLER_ID, BY_EXTENSION, Credentials
from gateway.balance.moves import MoneyMove, Posting, move_money
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd
from gateway.calls.types import Authorized, CallKey, LoginAccepted, Policy
from gateway.core.reasons import Reason, Refusal
from gateway.settlement.entry import SettlementEntry
from tests.integration.conftest import UK, World, party_of


async def test_authorize_by_extension_and_bill(world: World) -> None:
    key = CallKey("kamailio", f"call-{time.monotonic_ns()}")
    decision = await world.calls.authorize(key, party_of(world), UK)
    assert isinstance(decision, Authorized)
    # 1.00 at 0.06/min: 16 whole minutes.
    assert (decision.account_id, decision.granted_s, decision.hold_micros) == (
        world.customer,
        960,
        960_000,
    )
    answered = await world.calls.answered(key, party_of(world), UK, time.time())
    assert answered is not None and answered.granted_s == 960
    interim = await world.calls.interim(key, party_of(world), UK, may_grow=True)
    assert interim is not None and interim.granted_s == 960
    end = CallEnd(disconnect_at=time.time(), cause="16")
    ended = await world.calls.ended(key, party_of(world), UK, 125, end)
    assert ended.settled is not None and ended.settled.costs_micros == (180_000, 90_000)
    again = await world.calls.ended(key, party_of(world), UK, 125, end)
    assert again.settled is not None and again.settled.duplicate
    raw = await world.balance.pipeliner.client.xrange(ended.settled.stream)
    entry = SettlementEntry.from_json(raw[-1][1][b"s"])
    assert entry.meta.called == "49301234567" and entry.meta.called_dialled == "0049301234567"
    assert entry.meta.caller == world.caller_id
    assert entry.meta.prefixes == ("49", "49")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"credentials": Credentials(password="wrong")}, Reason.BAD_PASSWORD),
        ({"credentials": Credentials()}, Reason.BAD_PASSWORD),
        ({"username": "nobody", "calling": "441111"}, Reason.UNKNOWN_CALLER),
        ({"called": "0033123456"}, Reason.DESTINATION_NOT_RATED),
        ({"called": "+49 30 abc"}, Reason.DESTINATION_NOT_RATED),
    ],
)
async def test_refusals(world: World, changes: dict[str, object], reason: Reason) -> None:
    decision = await world.calls.authorize(CallKey("k", "r"), party_of(world, **changes), UK)
    assert isinstance(decision, Refusal) and decision.reason is reason


async def test_caller_id_when_the_username_is_unknown(world: World) -> None:
    party = party_of(world, username="not-an-extension", credentials=Credentials())
    # No session id: nothing stays held, so the calls below are not limited by it.
    decision = await world.calls.authorize(None, party, UK)
    assert isinstance(decision, Authorized) and decision.account_id == world.customer
    only_ext = Policy(plan=UK.plan, order=(BY_EXTENSION,))
    refused = await world.calls.authorize(None, party, only_ext)
    assert isinstance(refused, Refusal) and refused.reason is Reason.UNKNOWN_CALLER
    by_cli_first = Policy(plan=UK.plan, order=(BY_CALLER_ID, BY_EXTENSION))
    wrong_password = party_of(world, credentials=Credentials(password="wrong"))
    # Caller-ID first: the extension (and its password) is never consulted.
    decision = await world.calls.authorize(CallKey("k", "cli3"), wrong_password, by_cli_first)
    assert isinstance(decision, Authorized)


async def test_login_check_holds_nothing(world: World) -> None:
    decision = await world.calls.authorize(None, party_of(world, called=None), UK)
    assert decision == LoginAccepted(world.customer)


async def test_no_session_id_grants_without_holding(world: World) -> None:
    decision = await world.calls.authorize(None, party_of(world), UK)
    assert isinstance(decision, Authorized) and decision.granted_s == 960
    keys = world.balance.store.keys
    account = await world.balance.pipeliner.client.hgetall(
        keys.account(world.agent, world.customer)
    )
    assert (account[b"held"], account[b"calls"]) == (b"0", b"0")


async def test_stop_without_authorization_is_billed_once(world: World) -> None:
    key = CallKey("kamailio", f"lost-{time.monotonic_ns()}")
    end = CallEnd(disconnect_at=time.time(), cause="16")
    first = await world.calls.ended(key, party_of(world, credentials=Credentials()), UK, 61, end)
    second = await world.calls.ended(key, party_of(world), UK, 61, end)
    assert first.settled is not None and first.settled.costs_micros == (120_000, 60_000)
    assert second.settled is not None and second.settled.duplicate


async def test_disabled_meanwhile_is_still_billed(world: World, db_pool: asyncpg.Pool) -> None:
    key = CallKey("kamailio", f"dis-{time.monotonic_ns()}")
    assert isinstance(await world.calls.authorize(key, party_of(world), UK), Authorized)
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", world.customer)
    for _ in range(40):
        account = world.directory.account(world.customer)
        if account is not None and account.status == "disabled":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("directory did not see the change within 2 s")
    ended = await world.calls.ended(
        key, party_of(world), UK, 30, CallEnd(disconnect_at=time.time())
    )
    assert ended.settled is not None and ended.settled.costs_micros[0] == 60_000
    refused = await world.calls.authorize(CallKey("k", "after"), party_of(world), UK)
    assert isinstance(refused, Refusal) and refused.reason is Reason.ACCOUNT_DISABLED


async def test_nas_restart_ends_its_open_calls(world: World, db_pool: asyncpg.Pool) -> None:
    refill = MoneyMove("refill", f"nas-{world.customer}", (Posting(world.customer, 20_000_000),))
    await move_money(db_pool, world.balance.pipeliner, world.balance.store.keys, refill)
    now = time.time()
    answered = CallKey("switch-a", "up")
    ringing = CallKey("switch-a", "ringing")
    other = CallKey("switch-b", "elsewhere")
    for key in (answered, ringing, other):
        assert isinstance(await world.calls.authorize(key, party_of(world), UK), Authorized)
    await world.calls.answered(answered, party_of(world), UK, now - 90)
    assert await world.calls.nas_restarted("switch-a", at=now) == 2
    store = world.balance.store

    def ref(key: CallKey) -> SessionRef:
        return SessionRef(world.agent, key.session_key)

    assert await store.session_state(ref(answered)) == "settled"
    assert await store.session_state(ref(ringing)) == "released"
    assert await store.session_state(ref(other)) == "reserved"


async def test_directory_sees_a_new_caller_id_within_a_second(
    world: World, db_pool: asyncpg.Pool
) -> None:
    number = f"4479{world.customer:08d}"
    assert world.directory.caller_id(number) is None
    async with db_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO caller_ids (account_id, number) VALUES ($1, $2)", world.customer, number
        )
    for _ in range(50):  # 50 x 20 ms: one second
        if world.directory.caller_id(number) is not None:
            break
        await asyncio.sleep(0.02)
    assert world.directory.caller_id(number) == world.customer
