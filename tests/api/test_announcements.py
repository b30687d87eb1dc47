"""Announcements: the admin writes them; agents and customers read the live ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.world import World, headers

A = "/api/v1/announcements"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


async def _create(api: httpx.AsyncClient, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    reply = await api.post(A, json={"title": "Maintenance", **fields}, headers=admin)
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def _visible(api: httpx.AsyncClient, auth: dict[str, str]) -> set[int]:
    reply = await api.get(A, params={"sort": "id", "order": "desc", "limit": 500}, headers=auth)
    assert reply.status_code == 200, reply.text
    return {a["id"] for a in reply.json()["items"]}


def _locs(reply: httpx.Response) -> set[tuple[Any, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(e["loc"]) for e in reply.json()["detail"]}


async def test_audiences_and_live_window(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    agent = await headers(api, world, "agent_a")
    customer = await headers(api, world, "a1")
    now = datetime.now(UTC)
    for_agents = await _create(api, admin, body="Tonight 02:00 UTC")
    assert for_agents["audience"] == "agents"
    assert for_agents["expires_at"] is None
    for_all = await _create(api, admin, title="New prices", audience="all")
    future = await _create(api, admin, title="Soon", published_at=_iso(now + timedelta(days=1)))
    expired = await _create(
        api,
        admin,
        title="Old",
        audience="all",
        published_at=_iso(now - timedelta(days=2)),
        expires_at=_iso(now + timedelta(hours=1)),
    )
    patched = await api.patch(
        f"{A}/{expired['id']}",
        json={"expires_at": _iso(now - timedelta(days=1))},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    mine = {for_agents["id"], for_all["id"], future["id"], expired["id"]}

    assert await _visible(api, admin) & mine == mine
    assert await _visible(api, agent) & mine == {for_agents["id"], for_all["id"]}
    assert await _visible(api, customer) & mine == {for_all["id"]}

    assert (await api.get(f"{A}/{for_all['id']}", headers=customer)).status_code == 200
    for hidden in (for_agents, future, expired):
        assert (await api.get(f"{A}/{hidden['id']}", headers=customer)).status_code == 404
    assert (await api.get(f"{A}/{future['id']}", headers=agent)).status_code == 404
    assert (await api.get(f"{A}/{future['id']}", headers=admin)).status_code == 200


async def test_patch_and_delete(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    created = await _create(api, admin, expires_at=_iso(datetime.now(UTC) + timedelta(days=7)))
    reply = await api.patch(
        f"{A}/{created['id']}",
        json={"title": "Maintenance moved", "audience": "all", "expires_at": None},
        headers=admin,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["title"] == "Maintenance moved"
    assert body["audience"] == "all"
    assert body["expires_at"] is None
    assert body["body"] == created["body"]

    assert (await api.delete(f"{A}/{created['id']}", headers=admin)).status_code == 204
    assert (await api.get(f"{A}/{created['id']}", headers=admin)).status_code == 404
    assert (await api.delete(f"{A}/{created['id']}", headers=admin)).status_code == 404
    gone = await api.patch(f"{A}/{created['id']}", json={"title": "x"}, headers=admin)
    assert gone.status_code == 404


async def test_only_the_admin_writes(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    created = await _create(api, admin, audience="all")
    for who in ("agent_a", "a1"):
        auth = await headers(api, world, who)
        assert (await api.post(A, json={"title": "x"}, headers=auth)).status_code == 403
        patch = await api.patch(f"{A}/{created['id']}", json={"title": "x"}, headers=auth)
        assert patch.status_code == 403
        assert (await api.delete(f"{A}/{created['id']}", headers=auth)).status_code == 403
    assert (await api.get(A)).status_code == 401


async def test_bad_input_is_422_with_fields(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    now = datetime.now(UTC)
    assert ("body", "title") in _locs(await api.post(A, json={}, headers=admin))
    assert ("body", "title") in _locs(await api.post(A, json={"title": ""}, headers=admin))
    assert ("body", "title") in _locs(await api.post(A, json={"title": "  "}, headers=admin))
    bad_audience = await api.post(A, json={"title": "t", "audience": "customers"}, headers=admin)
    assert ("body", "audience") in _locs(bad_audience)
    past = await api.post(
        A, json={"title": "t", "expires_at": _iso(now - timedelta(hours=1))}, headers=admin
    )
    assert ("body", "expires_at") in _locs(past)
    naive = await api.post(
        A, json={"title": "t", "expires_at": "2030-01-01T00:00:00"}, headers=admin
    )
    assert ("body", "expires_at") in _locs(naive)
    before_start = await api.post(
        A,
        json={
            "title": "t",
            "published_at": _iso(now + timedelta(days=3)),
            "expires_at": _iso(now + timedelta(days=2)),
        },
        headers=admin,
    )
    assert ("body", "expires_at") in _locs(before_start)
    ancient = await api.post(
        A, json={"title": "t", "published_at": "0001-01-01T00:00:00+01:00"}, headers=admin
    )
    assert ("body", "published_at") in _locs(ancient)

    created = await _create(api, admin)
    url = f"{A}/{created['id']}"
    assert ("body", "title") in _locs(await api.patch(url, json={"title": None}, headers=admin))
    assert ("body", "author_user_id") in _locs(
        await api.patch(url, json={"author_user_id": 1}, headers=admin)
    )
    early = await api.patch(url, json={"expires_at": _iso(now - timedelta(days=30))}, headers=admin)
    assert ("body", "expires_at") in _locs(early)
    assert ("path", "announcement_id") in _locs(await api.get(f"{A}/0", headers=admin))
    assert _locs(await api.get(A, params={"sort": "body"}, headers=admin))
