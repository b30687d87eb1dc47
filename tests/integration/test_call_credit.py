"""Credit control through the call lifecycle on real PostgreSQL and Redis: holds
linked to their accounting, the billed leg, answered calls with no hold, hang-ups."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg

from gateway.authz.identify import Credentials
from gateway.balance.store import SessionRef
from gateway.balance.types import CallEnd
from gateway.calls.credit import SliceKeeper
from gateway.calls.types import Authorized, CallKey, Policy
from gateway.core import metrics
from gateway.core.reasons import Reason, Refusal
from gateway.rating.carriers import Gateway, RouteIndex, RouteTable
from gateway.settlement.entry import SettlementEntry
from tests.integration.conftest import UK, World, party_of


async def _account(w: World) -> dict[str, int]:
    keys = w.balance.store.keys
    raw = await w.balance.pipeliner.client.hgetall(keys.account(w.agent, w.customer))
    return {k.decode(): int(v) for k, v in raw.items() if k != b"st"}


async def _state(w: World, key: CallKey) -> str | None:
    return await w.balance.store.session_state(SessionRef(w.agent, key.session_key))


async def _entry(w: World, stream: str) -> SettlementEntry:
    raw = await w.balance.pipeliner.client.xrange(stream)
    return SettlementEntry.from_json(raw[-1][1][b"s"])


def _end(seconds: int = 0) -> CallEnd:
    now = time.time()
    return CallEnd(disconnect_at=now, cause="16", connect_at=now - seconds)


SLICED = dataclasses.replace(UK, hangup=True, slices=True)


@dataclasses.dataclass
class StaticRoutes:
    index: RouteIndex


async def test_authorization_without_session_id_holds_and_is_linked(
    world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET max_concurrent_calls = 2 WHERE id = $1", world.customer
    )
    bare = CallKey("kamailio", "")
    first = await world.calls.authorize(bare, party_of(world), SLICED)
    second = await world.calls.authorize(bare, party_of(world), SLICED)
    third = await world.calls.authorize(bare, party_of(world), SLICED)
    assert isinstance(first, Authorized) and isinstance(second, Authorized)
    assert isinstance(third, Refusal) and third.reason is Reason.TOO_MANY_CALLS
    assert (await _account(world))["calls"] == 2
    # The switch's accounting names the session: it takes over one of the holds.
    call = CallKey("kamailio", "acct-1")
    trusted = party_of(world, credentials=Credentials())
    credit = await world.calls.answered(call, trusted, SLICED, time.time() - 61)
    assert credit is not None and credit.granted_s == first.granted_s
    assert await _state(world, call) == "answered"
    assert (await _account(world))["calls"] == 2  # no new hold: the Start linked
    ended = await world.calls.ended(call, trusted, SLICED, 61, _end(61))
    assert ended.settled is not None and ended.settled.costs_micros == (120_000, 60_000)
    entry = await _entry(world, ended.settled.stream)
    assert (entry.meta.nas, entry.meta.session_id) == ("kamailio", "acct-1")
    account = await _account(world)
    assert account["calls"] == 1 and account["held"] == second.hold_micros


async def test_a_conference_id_links_across_session_ids(world: World) -> None:
    auth_key = CallKey("cisco", "", "", ("conf:4F2A",))
    decision = await world.calls.authorize(auth_key, party_of(world), UK)
    assert isinstance(decision, Authorized)
    # Accounting names the call by Acct-Session-Id and carries the same conf-id.
    call = CallKey("cisco", "0000A1", "", ("conf:4F2A",))
    trusted = party_of(world, credentials=Credentials())
    assert await world.calls.answered(call, trusted, UK, time.time()) is not None
    assert (await _account(world))["calls"] == 1
    ended = await world.calls.ended(call, trusted, UK, 30, _end(30))
    assert ended.settled is not None and not ended.settled.duplicate
    assert (await _account(world))["calls"] == 0


async def test_the_billed_leg_takes_the_hold(world: World) -> None:
    legs = dataclasses.replace(UK, bill_leg="originate")
    trusted = party_of(world, credentials=Credentials())
    answer_leg = CallKey("cisco", "S1", "answer")
    originate_leg = CallKey("cisco", "S1", "originate")
    decision = await world.calls.authorize(answer_leg, party_of(world), legs)
    assert isinstance(decision, Authorized)
    assert await _state(world, answer_leg) is None  # held for the billed leg, not this one
    assert (await _account(world))["calls"] == 1
    # The other leg's Start neither holds nor counts.
    assert await world.calls.answered(answer_leg, trusted, legs, time.time()) is None
    assert (await _account(world))["calls"] == 1
    assert await world.calls.answered(originate_leg, trusted, legs, time.time()) is not None
    assert await _state(world, originate_leg) == "answered"
    assert (await _account(world))["calls"] == 1
    other = await world.calls.ended(answer_leg, trusted, legs, 40, _end(40))
    assert other.settled is None and (await _account(world))["calls"] == 1
    billed = await world.calls.ended(originate_leg, trusted, legs, 30, _end(30))
    assert billed.settled is not None and billed.settled.costs_micros[0] == 60_000
    account = await _account(world)
    assert (account["calls"], account["held"]) == (0, 0)


async def test_the_other_legs_stop_releases_a_hold_never_taken_over(world: World) -> None:
    legs = dataclasses.replace(UK, bill_leg="originate")
    answer_leg = CallKey("cisco", "S2", "answer")
    assert isinstance(await world.calls.authorize(answer_leg, party_of(world), legs), Authorized)
    assert (await _account(world))["calls"] == 1
    trusted = party_of(world, credentials=Credentials())
    ended = await world.calls.ended(answer_leg, trusted, legs, 0, _end())
    assert ended.settled is None
    account = await _account(world)
    assert (account["calls"], account["held"]) == (0, 0)


async def test_an_answered_call_with_no_hold_reserves_one(world: World) -> None:
    call = CallKey("kamailio", "start-only")
    trusted = party_of(world, credentials=Credentials())
    credit = await world.calls.answered(call, trusted, UK, time.time())
    assert credit is not None and credit.granted_s == 960
    assert await _state(world, call) == "answered"
    account = await _account(world)
    assert (account["calls"], account["held"]) == (1, 960_000)
    ended = await world.calls.ended(call, trusted, UK, 65, _end(65))
    assert ended.settled is not None and ended.settled.costs_micros[0] == 120_000


async def test_a_refused_start_hangs_up_or_runs_unreserved(
    world: World, db_pool: asyncpg.Pool
) -> None:
    await db_pool.execute(
        "UPDATE accounts SET max_concurrent_calls = 0 WHERE id = $1", world.customer
    )
    hung_up: list[str] = []

    async def hangup(reach: str) -> None:
        hung_up.append(reach)

    world.calls.hangup = hangup
    trusted = party_of(world, credentials=Credentials())
    can_hang_up = dataclasses.replace(UK, hangup=True)
    before = metrics.UNRESERVED_CALLS.labels("kamailio", "disconnected")._value.get()
    call = CallKey("kamailio", "refused-start")
    assert await world.calls.answered(call, trusted, can_hang_up, time.time(), "reach-1") is None
    assert hung_up == ["reach-1"]
    after = metrics.UNRESERVED_CALLS.labels("kamailio", "disconnected")._value.get()
    assert after == before + 1
    running = metrics.UNRESERVED_CALLS.labels("kamailio", "running")._value.get()
    assert await world.calls.answered(CallKey("kamailio", "r2"), trusted, UK, time.time()) is None
    assert metrics.UNRESERVED_CALLS.labels("kamailio", "running")._value.get() == running + 1
    assert hung_up == ["reach-1"]
    # Its Stop is still billed (the call happened).
    ended = await world.calls.ended(call, trusted, can_hang_up, 61, _end(61))
    assert ended.settled is not None and ended.settled.costs_micros[0] == 120_000


async def test_a_slice_call_out_of_money_is_hung_up_at_its_interim(world: World) -> None:
    slices = Policy(plan=UK.plan, hangup=True, slices=True)
    hung_up: list[str] = []

    async def hangup(reach: str) -> None:
        hung_up.append(reach)

    world.calls.hangup = hangup
    one = CallKey("kamailio", "slice-1")
    two = CallKey("kamailio", "slice-2")
    first = await world.calls.authorize(one, party_of(world), slices)
    second = await world.calls.authorize(two, party_of(world), slices)
    assert isinstance(first, Authorized) and isinstance(second, Authorized)
    assert (first.granted_s, first.held_s) == (960, 60) and second.held_s == 60
    t0 = time.time() - 600
    trusted = party_of(world, credentials=Credentials())
    await world.calls.answered(one, trusted, slices, t0, "reach-one")
    await world.calls.answered(two, trusted, slices, t0, "reach-two")
    # Call one runs 600 s and holds what it needs: 0.60 + lead, leaving call two 0.30.
    credit = await world.calls.interim(one, trusted, slices, False, 600, "reach-one", t0 + 600)
    assert credit is not None and credit.held_s >= 610 and not credit.hung_up
    credit = await world.calls.interim(two, trusted, slices, False, 600, "reach-two", t0 + 600)
    assert credit is not None and credit.hung_up and hung_up == ["reach-two"]
    assert credit.held_s < 600
    again = await world.calls.interim(two, trusted, slices, False, 610, "reach-two", t0 + 610)
    assert again is not None and not again.hung_up and hung_up == ["reach-two"]  # once
    # Its Stop is capped at what it held: the customer never goes below zero.
    ended = await world.calls.ended(two, trusted, slices, 620, _end(620))
    assert ended.settled is not None and ended.settled.overrun_s == 620 - credit.held_s
    await world.calls.ended(one, trusted, slices, 600, _end(600))
    account = await _account(world)
    assert account["bal"] >= 0 and (account["held"], account["calls"]) == (0, 0)


async def test_a_stop_only_switch_settles_the_hold_its_authorization_left(world: World) -> None:
    decision = await world.calls.authorize(CallKey("kamailio", ""), party_of(world), SLICED)
    assert isinstance(decision, Authorized)
    assert (await _account(world))["calls"] == 1
    # No Start, no Interim: the Stop alone names the session and takes the hold over.
    call = CallKey("kamailio", "stop-only")
    trusted = party_of(world, credentials=Credentials())
    ended = await world.calls.ended(call, trusted, SLICED, 45, _end(45))
    assert ended.settled is not None and ended.settled.costs_micros == (60_000, 30_000)
    entry = await _entry(world, ended.settled.stream)
    assert entry.meta.session_id == "stop-only"
    account = await _account(world)
    assert (account["calls"], account["held"]) == (0, 0)


async def test_a_routed_authorization_holds_nothing_for_a_call_with_nowhere_to_go(
    world: World,
) -> None:
    group = world.directory.account(world.customer).rate_group_id  # type: ignore[union-attr]
    assert group is not None
    carriers = (Gateway("carrier-a.example"), Gateway("carrier-b.example", 5080, "tcp", 1))
    index = RouteIndex({group: RouteTable({"4930": carriers, "4931": ()})})
    world.calls.routes = StaticRoutes(index)
    routed = await world.calls.authorize(CallKey("k", "r1"), party_of(world), SLICED, route=True)
    assert isinstance(routed, Authorized) and routed.route is not None
    assert routed.route.number == "49301234567"
    assert [g.host for g in routed.route.gateways] == ["carrier-a.example", "carrier-b.example"]
    blocked = party_of(world, called="0049311234567")
    refused = await world.calls.authorize(CallKey("k", "r2"), blocked, SLICED, route=True)
    assert isinstance(refused, Refusal) and refused.reason is Reason.DESTINATION_NOT_RATED
    assert (await _account(world))["calls"] == 1  # the refused one holds nothing
    # No route of the group's own: the default route, else nowhere.
    elsewhere = party_of(world, called="0049401234567")
    assert isinstance(
        await world.calls.authorize(CallKey("k", "r3"), elsewhere, SLICED, route=True), Refusal
    )
    world.calls.default_route = (Gateway("fallback.example"),)
    fallback = await world.calls.authorize(CallKey("k", "r4"), elsewhere, SLICED, route=True)
    assert isinstance(fallback, Authorized) and fallback.route is not None
    assert [g.host for g in fallback.route.gateways] == ["fallback.example"]


async def _keep_until_cut(world: World, acked: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """Call two of two runs out of money while call one took it all: two keepers (two
    gateways) look at it until it is cut, then at its held time. Returns the CoA
    asks (reach, Session-Timeout) and the hang-ups."""
    slices = Policy(plan=UK.plan, hangup=True, slices=True)
    asked: list[tuple[str, int]] = []
    hung_up: list[str] = []

    async def limit(reach: str, session_timeout_s: int) -> bool:
        asked.append((reach, session_timeout_s))
        return acked

    async def hangup(reach: str) -> None:
        hung_up.append(reach)

    keepers = [SliceKeeper(world.balance.store, lambda: hangup, lambda: limit) for _ in "ab"]
    one, two = CallKey("kamailio", "coa-1"), CallKey("kamailio", "coa-2")
    for key in (one, two):
        assert isinstance(await world.calls.authorize(key, party_of(world), slices), Authorized)
    t0 = time.time() - 600
    trusted = party_of(world, credentials=Credentials())
    await world.calls.answered(one, trusted, slices, t0, "reach-one")
    await world.calls.answered(two, trusted, slices, t0, "reach-two")
    await world.calls.interim(one, trusted, slices, False, 600, "reach-one", t0 + 600)
    moment = t0 + 51
    while not asked and moment < t0 + 600:
        for keeper in keepers:
            assert await keeper.check(now=moment) == 0  # cut, not yet due to hang up
        await asyncio.sleep(0.05)  # the CoA is asked aside
        moment += 5
    assert len(asked) == 1 and asked[0][0] == "reach-two"  # once, across both keepers
    held_s = asked[0][1]
    assert t0 + held_s > moment - 5  # told before its held time was over
    for keeper in keepers:
        await keeper.check(now=t0 + held_s)
    assert len(asked) == 1
    await world.calls.ended(two, trusted, slices, held_s, _end(held_s))
    await world.calls.ended(one, trusted, slices, 600, _end(600))
    account = await _account(world)
    assert account["bal"] >= 0 and (account["held"], account["calls"]) == (0, 0)
    return asked, hung_up


async def test_a_cut_call_is_told_its_session_timeout_once_and_not_disconnected(
    world: World,
) -> None:
    _, hung_up = await _keep_until_cut(world, acked=True)
    assert hung_up == []  # the switch took the Session-Timeout: it ends the call itself


async def test_a_refused_coa_falls_back_to_one_disconnect_at_the_held_time(
    world: World,
) -> None:
    _, hung_up = await _keep_until_cut(world, acked=False)
    assert hung_up == ["reach-two"]
