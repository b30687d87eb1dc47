"""Extensions (SIP usernames and secrets) of customers, and the call path seeing them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import asyncpg
import httpx

from gateway.authz.directory import Directory
from tests.api.world import World, headers

V1 = "/api/v1"
_seq = itertools.count(1)


def username(world: World) -> str:
    return f"ext-{world.suffix}-{next(_seq)}"


async def test_add_generated_and_given(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    path = f"{V1}/customers/{world.a2}/extensions"
    generated = await api.post(path, json={}, headers=agent_a)
    assert generated.status_code == 201, generated.text
    body = generated.json()
    assert body["username"].isdigit() and len(body["username"]) == 10
    assert len(body["secret"]) >= 16
    assert (body["status"], body["account_id"]) == ("active", world.a2)

    name = username(world)
    given = await api.post(
        path,
        json={"username": name, "secret": "s3cret", "description": "softphone"},
        headers=agent_a,
    )
    assert given.status_code == 201
    assert (given.json()["username"], given.json()["secret"]) == (name, "s3cret")

    listed = await api.get(path, params={"sort": "id", "order": "desc"}, headers=agent_a)
    assert [e["username"] for e in listed.json()["items"]] == [name, body["username"]]
    assert listed.json()["items"][0]["secret"] == "s3cret"


async def test_change_and_delete(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    added = await api.post(
        f"{V1}/customers/{world.a2}/extensions", json={"username": username(world)}, headers=agent_a
    )
    eid = added.json()["id"]
    renamed = username(world)
    changed = await api.patch(
        f"{V1}/extensions/{eid}",
        json={"username": renamed, "secret": "new-secret", "status": "disabled"},
        headers=agent_a,
    )
    assert changed.status_code == 200
    assert (changed.json()["username"], changed.json()["secret"], changed.json()["status"]) == (
        renamed,
        "new-secret",
        "disabled",
    )
    described = await api.patch(
        f"{V1}/extensions/{eid}", json={"description": "lobby"}, headers=agent_a
    )
    assert (described.json()["description"], described.json()["status"]) == ("lobby", "disabled")
    assert (await api.delete(f"{V1}/extensions/{eid}", headers=agent_a)).status_code == 204
    assert (await api.patch(f"{V1}/extensions/{eid}", json={}, headers=agent_a)).status_code == 404
    # The username is free again.
    again = await api.post(
        f"{V1}/customers/{world.a1}/extensions", json={"username": renamed}, headers=agent_a
    )
    assert again.status_code == 201


async def test_bad_input_and_duplicates(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    agent_b = await headers(api, world, "agent_b")
    path = f"{V1}/customers/{world.a1}/extensions"
    for bad in ({"username": "has space"}, {"username": ""}, {"username": "x" * 65}):
        reply = await api.post(path, json=bad, headers=agent_a)
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "username"]
    assert (await api.post(path, json={"secret": ""}, headers=agent_a)).status_code == 422
    assert (await api.post(path, json={"secret": "s" * 129}, headers=agent_a)).status_code == 422

    name = username(world)
    first = await api.post(
        f"{V1}/customers/{world.b1}/extensions", json={"username": name}, headers=agent_b
    )
    assert first.status_code == 201
    clash = await api.post(path, json={"username": name}, headers=agent_a)
    assert clash.status_code == 409
    assert clash.json()["detail"]["code"] == "EXTENSION_TAKEN"
    mine = await api.post(path, json={}, headers=agent_a)
    eid = mine.json()["id"]
    rename = await api.patch(f"{V1}/extensions/{eid}", json={"username": name}, headers=agent_a)
    assert rename.status_code == 409
    assert rename.json()["detail"]["code"] == "EXTENSION_TAKEN"
    cases: list[tuple[dict[str, str | None], str]] = [
        ({"status": "removed"}, "status"),
        ({"secret": None}, "secret"),
        ({"username": "no way"}, "username"),
    ]
    for change, field in cases:
        reply = await api.patch(f"{V1}/extensions/{eid}", json=change, headers=agent_a)
        assert reply.status_code == 422, change
        assert reply.json()["detail"][0]["loc"][:2] == ["body", field]


async def test_isolation(api: httpx.AsyncClient, world: World) -> None:
    agent_b = await headers(api, world, "agent_b")
    theirs = await api.post(f"{V1}/customers/{world.b1}/extensions", json={}, headers=agent_b)
    eid = theirs.json()["id"]
    agent_a = await headers(api, world, "agent_a")
    sub = await headers(api, world, "agent_a1")
    for auth, customer in ((agent_a, world.b1), (sub, world.a1), (sub, world.a2)):
        path = f"{V1}/customers/{customer}/extensions"
        assert (await api.get(path, headers=auth)).status_code == 404
        assert (await api.post(path, json={}, headers=auth)).status_code == 404
    for auth in (agent_a, sub):
        path = f"{V1}/extensions/{eid}"
        assert (await api.patch(path, json={"status": "disabled"}, headers=auth)).status_code == 404
        assert (await api.delete(path, headers=auth)).status_code == 404
    still = await api.get(f"{V1}/customers/{world.b1}/extensions", headers=agent_b)
    assert [(e["id"], e["status"]) for e in still.json()["items"]] == [(eid, "active")]

    b1 = await headers(api, world, "b1")
    own = await api.get(f"{V1}/customers/{world.b1}/extensions", headers=b1)
    assert own.json()["items"][0]["secret"] == theirs.json()["secret"]
    assert (
        await api.post(f"{V1}/customers/{world.b1}/extensions", json={}, headers=b1)
    ).status_code == 403
    assert (await api.delete(f"{V1}/extensions/{eid}", headers=b1)).status_code == 403
    assert (await api.get(f"{V1}/customers/{world.a1}/extensions", headers=b1)).status_code == 404


async def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the directory never saw it"
        await asyncio.sleep(0.05)


async def test_call_path_directory_sees_new_customer_and_extension(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool, database_url: str
) -> None:
    directory = Directory(db_pool, database_url)
    await directory.start()
    try:
        agent_a = await headers(api, world, "agent_a")
        name = username(world)
        number = f"3913{world.agent_a:07d}{next(_seq):04d}"
        reply = await api.post(
            f"{V1}/customers",
            json={
                "name": f"dir-{name}",
                "rate_group_id": world.rate_group,
                "extension": {"username": name, "secret": "pw-for-sip"},
            },
            headers=agent_a,
        )
        assert reply.status_code == 201, reply.text
        cid = reply.json()["id"]
        added = await api.post(
            f"{V1}/customers/{cid}/caller-ids", json={"number": number}, headers=agent_a
        )
        assert added.status_code == 201

        await _eventually(lambda: directory.extension(name) is not None)
        await _eventually(lambda: directory.caller_id(number) == cid)
        await _eventually(lambda: directory.account(cid) is not None)
        ext = directory.extension(name)
        assert ext is not None
        assert (ext.account_id, ext.secret, ext.active) == (cid, "pw-for-sip", True)
        chain = directory.chain_accounts(cid)
        assert chain is not None
        assert [c.id for c in chain] == [cid, world.agent_a]

        eid = reply.json()["extension"]["id"]
        await api.patch(f"{V1}/extensions/{eid}", json={"status": "disabled"}, headers=agent_a)
        await _eventually(lambda: getattr(directory.extension(name), "active", True) is False)
        await api.delete(f"{V1}/customers/{cid}", headers=agent_a)
        await _eventually(lambda: getattr(directory.account(cid), "status", "") == "removed")
        await _eventually(lambda: directory.caller_id(number) is None)
    finally:
        await directory.stop()
