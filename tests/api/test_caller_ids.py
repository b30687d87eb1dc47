"""Caller-IDs of customers: normalized, unique system-wide, visible only to who may see."""

from __future__ import annotations

import itertools

import httpx

from tests.api.world import World, headers

V1 = "/api/v1"
_seq = itertools.count(1)


def number(world: World) -> str:
    """A number no other test uses: the world's account ids are unique in the run."""
    return f"3912{world.agent_a:07d}{next(_seq):04d}"


async def test_add_list_change_delete(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    digits = number(world)
    typed = f"+{digits[:2]} ({digits[2:5]}) {digits[5:9]}-{digits[9:]}"
    added = await api.post(
        f"{V1}/customers/{world.a1}/caller-ids",
        json={"number": typed, "description": "office"},
        headers=agent_a,
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["number"], body["account_id"], body["description"]) == (
        digits,
        world.a1,
        "office",
    )
    second = number(world)
    via_00 = await api.post(
        f"{V1}/customers/{world.a1}/caller-ids", json={"number": "00" + second}, headers=agent_a
    )
    assert via_00.json()["number"] == second

    listed = await api.get(
        f"{V1}/customers/{world.a1}/caller-ids",
        params={"sort": "number", "order": "desc"},
        headers=agent_a,
    )
    assert listed.status_code == 200
    assert [c["number"] for c in listed.json()["items"]] == sorted([digits, second], reverse=True)
    assert listed.json()["total"] == 2

    third = number(world)
    changed = await api.patch(
        f"{V1}/caller-ids/{body['id']}", json={"number": third}, headers=agent_a
    )
    assert changed.status_code == 200
    assert (changed.json()["number"], changed.json()["description"]) == (third, "office")
    described = await api.patch(
        f"{V1}/caller-ids/{body['id']}", json={"description": "home"}, headers=agent_a
    )
    assert (described.json()["number"], described.json()["description"]) == (third, "home")

    assert (await api.delete(f"{V1}/caller-ids/{body['id']}", headers=agent_a)).status_code == 204
    assert (await api.delete(f"{V1}/caller-ids/{body['id']}", headers=agent_a)).status_code == 404
    left = await api.get(f"{V1}/customers/{world.a1}/caller-ids", headers=agent_a)
    assert [c["number"] for c in left.json()["items"]] == [second]


async def test_invalid_numbers_are_422(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    for bad in ("", "abc", "+", "()", "sip:123@host", "12x3", "1" * 33, "+49 30@x"):
        reply = await api.post(
            f"{V1}/customers/{world.a1}/caller-ids", json={"number": bad}, headers=agent_a
        )
        assert reply.status_code == 422, bad
        assert reply.json()["detail"][0]["loc"] == ["body", "number"], bad
    added = await api.post(
        f"{V1}/customers/{world.a1}/caller-ids", json={"number": number(world)}, headers=agent_a
    )
    patch = await api.patch(
        f"{V1}/caller-ids/{added.json()['id']}", json={"number": "nope"}, headers=agent_a
    )
    assert patch.status_code == 422
    assert patch.json()["detail"][0]["loc"] == ["body", "number"]
    null = await api.patch(
        f"{V1}/caller-ids/{added.json()['id']}", json={"number": None}, headers=agent_a
    )
    assert null.status_code == 422
    bad_sort = await api.get(
        f"{V1}/customers/{world.a1}/caller-ids", params={"sort": "account_id"}, headers=agent_a
    )
    assert bad_sort.status_code == 422


async def test_duplicates_are_409_without_naming_the_owner(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    agent_b = await headers(api, world, "agent_b")
    digits = number(world)
    first = await api.post(
        f"{V1}/customers/{world.b1}/caller-ids", json={"number": digits}, headers=agent_b
    )
    assert first.status_code == 201
    for target, auth in ((world.a1, agent_a), (world.b1, agent_b)):
        clash = await api.post(
            f"{V1}/customers/{target}/caller-ids", json={"number": "+" + digits}, headers=auth
        )
        assert clash.status_code == 409
        detail = clash.json()["detail"]
        assert detail["code"] == "CALLER_ID_TAKEN"
        assert str(world.b1) not in detail["message"]
    mine = await api.post(
        f"{V1}/customers/{world.a1}/caller-ids", json={"number": number(world)}, headers=agent_a
    )
    moved = await api.patch(
        f"{V1}/caller-ids/{mine.json()['id']}", json={"number": digits}, headers=agent_a
    )
    assert moved.status_code == 409
    assert moved.json()["detail"]["code"] == "CALLER_ID_TAKEN"


async def test_isolation(api: httpx.AsyncClient, world: World) -> None:
    agent_b = await headers(api, world, "agent_b")
    theirs = await api.post(
        f"{V1}/customers/{world.b1}/caller-ids", json={"number": number(world)}, headers=agent_b
    )
    cid = theirs.json()["id"]
    agent_a = await headers(api, world, "agent_a")
    sub = await headers(api, world, "agent_a1")
    for auth, customer in ((agent_a, world.b1), (sub, world.a1), (sub, world.a2)):
        path = f"{V1}/customers/{customer}/caller-ids"
        assert (await api.get(path, headers=auth)).status_code == 404
        reply = await api.post(path, json={"number": number(world)}, headers=auth)
        assert reply.status_code == 404
    for auth in (agent_a, sub):
        path = f"{V1}/caller-ids/{cid}"
        assert (await api.patch(path, json={"description": "x"}, headers=auth)).status_code == 404
        assert (await api.delete(path, headers=auth)).status_code == 404
    # Unknown ids look the same as other people's.
    assert (await api.delete(f"{V1}/caller-ids/{10**12}", headers=agent_a)).status_code == 404
    still = await api.get(f"{V1}/customers/{world.b1}/caller-ids", headers=agent_b)
    assert [c["id"] for c in still.json()["items"]] == [cid]


async def test_customer_user_reads_own_but_cannot_change(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_b = await headers(api, world, "agent_b")
    added = await api.post(
        f"{V1}/customers/{world.b1}/caller-ids", json={"number": number(world)}, headers=agent_b
    )
    b1 = await headers(api, world, "b1")
    own = await api.get(f"{V1}/customers/{world.b1}/caller-ids", headers=b1)
    assert [c["id"] for c in own.json()["items"]] == [added.json()["id"]]
    assert (
        await api.post(
            f"{V1}/customers/{world.b1}/caller-ids", json={"number": number(world)}, headers=b1
        )
    ).status_code == 403
    path = f"{V1}/caller-ids/{added.json()['id']}"
    assert (await api.patch(path, json={"description": "x"}, headers=b1)).status_code == 403
    assert (await api.delete(path, headers=b1)).status_code == 403
    # Someone else's customer: not found, whatever the verb.
    other = f"{V1}/customers/{world.a1}/caller-ids"
    assert (await api.get(other, headers=b1)).status_code == 404
    assert (await api.post(other, json={"number": number(world)}, headers=b1)).status_code == 404
    # Agents' own accounts have no caller-IDs through this API.
    agent_a = await headers(api, world, "agent_a")
    assert (
        await api.get(f"{V1}/customers/{world.agent_a}/caller-ids", headers=agent_a)
    ).status_code == 404
