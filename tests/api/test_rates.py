from __future__ import annotations

import asyncio
import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.world import World, headers

V1 = "/api/v1"
_names = itertools.count(1)

Json = dict[str, Any]


def _name(world: World, what: str = "group") -> str:
    return f"{what}-{world.suffix}-{next(_names)}"


async def _create_group(api: httpx.AsyncClient, auth: dict[str, str], name: str) -> Json:
    reply = await api.post(f"{V1}/rate-groups", json={"name": name}, headers=auth)
    assert reply.status_code == 201, reply.text
    body: Json = reply.json()
    return body


async def _add_rate(
    api: httpx.AsyncClient, auth: dict[str, str], group: int, **fields: Any
) -> Json:
    body = {"price_per_min_micros": 10_000, **fields}
    reply = await api.post(f"{V1}/rate-groups/{group}/rates", json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    rate: Json = reply.json()
    return rate


def _code(reply: httpx.Response) -> str:
    code: str = reply.json()["detail"]["code"]
    return code


def _field_errors(reply: httpx.Response) -> set[tuple[str, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(str(p) for p in e["loc"]) for e in reply.json()["detail"]}


# -- browsing ------------------------------------------------------------------------


async def test_list_and_get_visible_groups(api: httpx.AsyncClient, world: World) -> None:
    for who in ("admin", "agent_a", "agent_a1", "agent_b", "a1", "b1"):
        auth = await headers(api, world, who)
        reply = await api.get(f"{V1}/rate-groups", params={"limit": 500}, headers=auth)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        ids = {g["id"] for g in body["items"]}
        if who != "admin":  # the admin's first page may be full of other tests' groups
            assert world.rate_group in ids
            assert body["total"] == len(body["items"])
        one = await api.get(f"{V1}/rate-groups/{world.rate_group}", headers=auth)
        assert one.status_code == 200
        group = one.json()
        assert group["operator"] is True and group["owned"] is False
        assert group["owner_user_id"] is None and group["rate_count"] == 1
        assert group["accounts_using"] >= 1


async def test_group_list_sorts_and_filters(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    for key in ("id", "name", "currency", "rate_count", "created_at", "updated_at"):
        for order in ("asc", "desc"):
            reply = await api.get(
                f"{V1}/rate-groups", params={"sort": key, "order": order}, headers=auth
            )
            assert reply.status_code == 200, (key, reply.text)
    bad = await api.get(f"{V1}/rate-groups", params={"sort": "password"}, headers=auth)
    assert ("query", "sort") in _field_errors(bad)
    name = _name(world, "Findable")
    made = await _create_group(api, auth, name)
    found = await api.get(f"{V1}/rate-groups", params={"name": name.lower()}, headers=auth)
    assert [g["id"] for g in found.json()["items"]] == [made["id"]]


async def test_rate_search(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    group = (await _create_group(api, auth, _name(world)))["id"]
    now = datetime.now(UTC)
    past, future = (now - timedelta(days=30)).isoformat(), (now + timedelta(days=30)).isoformat()
    uk = await _add_rate(api, auth, group, prefix="44", destination="United Kingdom")
    london = await _add_rate(
        api, auth, group, prefix="4420", destination="UK London", price_per_min_micros=5_000
    )
    london_next = await _add_rate(
        api, auth, group, prefix="4420", destination="UK London", effective_from=future
    )
    expired = await _add_rate(
        api, auth, group, prefix="441", destination="UK Geo", effective_to=past
    )
    usa = await _add_rate(api, auth, group, prefix="1", destination="USA")

    async def ids(**params: Any) -> list[int]:
        reply = await api.get(
            f"{V1}/rate-groups/{group}/rates", params={"sort": "id", **params}, headers=auth
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["total"] == len(body["items"])
        return [r["id"] for r in body["items"]]

    assert await ids() == [uk["id"], london["id"], london_next["id"], expired["id"], usa["id"]]
    assert await ids(prefix="44") == [uk["id"], london["id"], london_next["id"], expired["id"]]
    assert await ids(prefix="442") == [london["id"], london_next["id"]]
    assert await ids(destination="kingdom") == [uk["id"]]
    assert await ids(destination="uk ") == [london["id"], london_next["id"], expired["id"]]
    # The rate a call would get now: the longest prefix in force.
    assert await ids(number="+44 20 7946 0000") == [london["id"]]
    assert await ids(number="00441234") == [uk["id"]]  # 441 expired: falls back to 44
    assert await ids(number="4930") == []
    assert await ids(number="12125550000") == [usa["id"]]
    assert await ids(in_force="true") == [uk["id"], london["id"], usa["id"]]
    assert await ids(in_force="false") == [london_next["id"], expired["id"]]
    assert await ids(number="+44207", destination="nowhere") == []

    rates = (await api.get(f"{V1}/rate-groups/{group}/rates", headers=auth)).json()["items"]
    assert rates[0]["effective_from"] is None and rates[0]["effective_to"] is None
    for key in ("id", "prefix", "destination", "price_per_min_micros", "effective_from"):
        for order in ("asc", "desc"):
            reply = await api.get(
                f"{V1}/rate-groups/{group}/rates",
                params={"sort": key, "order": order},
                headers=auth,
            )
            assert reply.status_code == 200, (key, reply.text)
    by_prefix = await api.get(
        f"{V1}/rate-groups/{group}/rates", params={"sort": "prefix", "order": "desc"}, headers=auth
    )
    assert [r["prefix"] for r in by_prefix.json()["items"]][:2] == ["4420", "4420"]
    page = await api.get(
        f"{V1}/rate-groups/{group}/rates", params={"limit": 2, "offset": 4}, headers=auth
    )
    assert page.json()["total"] == 5 and len(page.json()["items"]) == 1

    for params in ({"prefix": "4a"}, {"number": "abc"}, {"sort": "grace_s"}):
        reply = await api.get(f"{V1}/rate-groups/{group}/rates", params=params, headers=auth)
        assert reply.status_code == 422, params
    assert (await api.get(f"{V1}/rate-groups/{group}/rates/{usa['id']}", headers=auth)).json()[
        "destination"
    ] == "USA"
    other = world.rate_group
    assert (
        await api.get(f"{V1}/rate-groups/{other}/rates/{usa['id']}", headers=auth)
    ).status_code == 404


async def test_unknown_group_is_404(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    missing = 2**62
    for method, path in (
        ("GET", f"/rate-groups/{missing}"),
        ("GET", f"/rate-groups/{missing}/rates"),
        ("GET", f"/rate-groups/{missing}/rates.csv"),
        ("PATCH", f"/rate-groups/{missing}"),
        ("DELETE", f"/rate-groups/{missing}"),
        ("POST", f"/rate-groups/{missing}/rates"),
    ):
        body = {"prefix": "1", "price_per_min_micros": 1} if method == "POST" else {}
        kwargs: dict[str, Any] = {"json": body} if method in ("POST", "PATCH") else {}
        reply = await api.request(method, V1 + path, headers=auth, **kwargs)
        assert reply.status_code == 404, (method, path, reply.text)


# -- who may change what -------------------------------------------------------------


@pytest.mark.parametrize("who", ["agent_a", "agent_a1"])
async def test_wholesale_agent_may_not_create_or_change(
    api: httpx.AsyncClient, world: World, who: str
) -> None:
    auth = await headers(api, world, who)
    group = world.rate_group
    rate_id = (await api.get(f"{V1}/rate-groups/{group}/rates", headers=auth)).json()["items"][0][
        "id"
    ]
    attempts = [
        api.post(f"{V1}/rate-groups", json={"name": _name(world)}, headers=auth),
        api.patch(f"{V1}/rate-groups/{group}", json={"description": "x"}, headers=auth),
        api.delete(f"{V1}/rate-groups/{group}", headers=auth),
        api.post(
            f"{V1}/rate-groups/{group}/rates",
            json={"prefix": "49", "price_per_min_micros": 1},
            headers=auth,
        ),
        api.patch(
            f"{V1}/rate-groups/{group}/rates/{rate_id}",
            json={"price_per_min_micros": 1},
            headers=auth,
        ),
        api.delete(f"{V1}/rate-groups/{group}/rates/{rate_id}", headers=auth),
        api.post(
            f"{V1}/rate-groups/{group}/rates/import",
            content="prefix,destination,price_per_min\n49,DE,0.1\n",
            headers={**auth, "Content-Type": "text/csv"},
        ),
    ]
    for reply in [await a for a in attempts]:
        assert reply.status_code == 403, reply.text
        assert _code(reply) == "WHOLESALE_FIXED_RATE_GROUP"


async def test_customer_may_not_change(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "b1")
    created = await api.post(f"{V1}/rate-groups", json={"name": _name(world)}, headers=auth)
    assert created.status_code == 403
    patched = await api.patch(
        f"{V1}/rate-groups/{world.rate_group}", json={"name": "mine"}, headers=auth
    )
    assert patched.status_code == 403


async def test_transfer_agent_may_not_change_the_operator_group(
    api: httpx.AsyncClient, world: World
) -> None:
    auth = await headers(api, world, "agent_b")
    group = world.rate_group
    patched = await api.patch(f"{V1}/rate-groups/{group}", json={"name": "x"}, headers=auth)
    assert patched.status_code == 403 and _code(patched) == "RATE_GROUP_NOT_OWNED"
    added = await api.post(
        f"{V1}/rate-groups/{group}/rates",
        json={"prefix": "49", "price_per_min_micros": 1},
        headers=auth,
    )
    assert added.status_code == 403 and _code(added) == "RATE_GROUP_NOT_OWNED"


async def test_transfer_agent_private_group(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    auth = await headers(api, world, "agent_b")
    name = _name(world, "private")
    group = await _create_group(api, auth, name)
    gid = group["id"]
    assert group["owned"] is True and group["operator"] is False
    assert group["owner_login"] == world.login("agent_b") and group["currency"] == "USD"
    again = await api.post(f"{V1}/rate-groups", json={"name": name}, headers=auth)
    assert again.status_code == 409 and _code(again) == "RATE_GROUP_EXISTS"

    rate = await _add_rate(api, auth, gid, prefix="4930", destination="Berlin")
    clash = await api.post(
        f"{V1}/rate-groups/{gid}/rates",
        json={"prefix": "4930", "price_per_min_micros": 7},
        headers=auth,
    )
    assert clash.status_code == 409 and _code(clash) == "RATE_EXISTS"
    later = await _add_rate(
        api, auth, gid, prefix="4930", effective_from="2099-01-01T00:00:00", destination="Berlin"
    )
    assert later["effective_from"].startswith("2099-01-01T00:00:00")
    moved = await api.patch(
        f"{V1}/rate-groups/{gid}/rates/{later['id']}",
        json={"effective_from": None},
        headers=auth,
    )
    assert moved.status_code == 409 and _code(moved) == "RATE_EXISTS"
    patched = await api.patch(
        f"{V1}/rate-groups/{gid}/rates/{rate['id']}",
        json={"price_per_min_micros": 12_345, "effective_to": "2098-01-01T00:00:00Z"},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["price_per_min_micros"] == 12_345
    assert patched.json()["destination"] == "Berlin"  # untouched fields stay
    assert patched.json()["effective_to"].startswith("2098-01-01")
    reopened = await api.patch(
        f"{V1}/rate-groups/{gid}/rates/{rate['id']}", json={"effective_to": None}, headers=auth
    )
    assert reopened.json()["effective_to"] is None
    renamed = await api.patch(
        f"{V1}/rate-groups/{gid}", json={"name": name + "-b", "currency": "EUR"}, headers=auth
    )
    assert renamed.status_code == 200 and renamed.json()["currency"] == "EUR"
    assert renamed.json()["rate_count"] == 2
    duplicate = await _create_group(api, auth, name)  # the old name is free again
    taken = await api.patch(
        f"{V1}/rate-groups/{duplicate['id']}", json={"name": name + "-b"}, headers=auth
    )
    assert taken.status_code == 409 and _code(taken) == "RATE_GROUP_EXISTS"

    # Nobody outside agent B's reach learns that it exists, whatever the verb.
    for who in ("agent_a", "agent_a1", "a1", "b1"):
        other = await headers(api, world, who)
        listed = await api.get(f"{V1}/rate-groups", params={"limit": 500}, headers=other)
        assert gid not in {g["id"] for g in listed.json()["items"]}
        for method, path in (
            ("GET", f"/rate-groups/{gid}"),
            ("GET", f"/rate-groups/{gid}/rates"),
            ("GET", f"/rate-groups/{gid}/rates/{rate['id']}"),
            ("GET", f"/rate-groups/{gid}/rates.csv"),
            ("PATCH", f"/rate-groups/{gid}"),
            ("DELETE", f"/rate-groups/{gid}"),
            ("POST", f"/rate-groups/{gid}/rates"),
            ("PATCH", f"/rate-groups/{gid}/rates/{rate['id']}"),
            ("DELETE", f"/rate-groups/{gid}/rates/{rate['id']}"),
        ):
            body = {"prefix": "1", "price_per_min_micros": 1} if method == "POST" else {}
            kwargs: dict[str, Any] = {"json": body} if method in ("POST", "PATCH") else {}
            reply = await api.request(method, V1 + path, headers=other, **kwargs)
            expected = 403 if who in ("a1", "b1") and method != "GET" else 404
            assert reply.status_code == expected, (who, method, path, reply.text)

    # Once B gives it to its customer b1, b1 sees it; B cannot delete it while in use.
    await db_pool.execute("UPDATE accounts SET rate_group_id = $1 WHERE id = $2", gid, world.b1)
    b1 = await headers(api, world, "b1")
    seen = await api.get(f"{V1}/rate-groups/{gid}", headers=b1)
    assert seen.status_code == 200 and seen.json()["owner_login"] is None
    assert (await api.get(f"{V1}/rate-groups/{gid}/rates", headers=b1)).json()["total"] == 2
    in_use = await api.delete(f"{V1}/rate-groups/{gid}", headers=auth)
    assert in_use.status_code == 409 and _code(in_use) == "RATE_GROUP_IN_USE"
    recurrency = await api.patch(f"{V1}/rate-groups/{gid}", json={"currency": "GBP"}, headers=auth)
    assert recurrency.status_code == 409 and _code(recurrency) == "RATE_GROUP_IN_USE"
    same = await api.patch(f"{V1}/rate-groups/{gid}", json={"currency": "EUR"}, headers=auth)
    assert same.status_code == 200
    await db_pool.execute(
        "UPDATE accounts SET rate_group_id = $1 WHERE id = $2", world.rate_group, world.b1
    )
    gone = await api.delete(f"{V1}/rate-groups/{gid}/rates/{rate['id']}", headers=auth)
    assert gone.status_code == 204
    again_gone = await api.delete(f"{V1}/rate-groups/{gid}/rates/{rate['id']}", headers=auth)
    assert again_gone.status_code == 404
    assert (await api.delete(f"{V1}/rate-groups/{gid}", headers=auth)).status_code == 204
    assert (await api.get(f"{V1}/rate-groups/{gid}", headers=auth)).status_code == 404


async def test_admin_manages_any_group(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    operator = await _create_group(api, admin, _name(world))
    assert operator["owner_user_id"] is None and operator["operator"] is True
    agent_b = await headers(api, world, "agent_b")
    private = await _create_group(api, agent_b, _name(world))
    rate = await _add_rate(api, admin, private["id"], prefix="33")
    changed = await api.patch(
        f"{V1}/rate-groups/{private['id']}/rates/{rate['id']}",
        json={"destination": "France"},
        headers=admin,
    )
    assert changed.status_code == 200 and changed.json()["destination"] == "France"
    # An admin and an agent may use the same name: names are unique per owner.
    same = await api.post(f"{V1}/rate-groups", json={"name": private["name"]}, headers=admin)
    assert same.status_code == 201


# -- validation ----------------------------------------------------------------------


async def test_bad_rates_are_422_by_field(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    gid = (await _create_group(api, auth, _name(world)))["id"]
    url = f"{V1}/rate-groups/{gid}/rates"
    cases: list[tuple[Json, str]] = [
        ({"prefix": "44a", "price_per_min_micros": 1}, "prefix"),
        ({"prefix": "", "price_per_min_micros": 1}, "prefix"),
        ({"prefix": "1" * 33, "price_per_min_micros": 1}, "prefix"),
        ({"price_per_min_micros": 1}, "prefix"),
        ({"prefix": "44"}, "price_per_min_micros"),
        ({"prefix": "44", "price_per_min_micros": -1}, "price_per_min_micros"),
        ({"prefix": "44", "price_per_min_micros": 1.5}, "price_per_min_micros"),
        ({"prefix": "44", "price_per_min_micros": 2**63}, "price_per_min_micros"),
        (
            {"prefix": "44", "price_per_min_micros": 1, "connect_fee_micros": -5},
            "connect_fee_micros",
        ),
        ({"prefix": "44", "price_per_min_micros": 1, "first_increment_s": 0}, "first_increment_s"),
        ({"prefix": "44", "price_per_min_micros": 1, "next_increment_s": 0}, "next_increment_s"),
        ({"prefix": "44", "price_per_min_micros": 1, "min_duration_s": -1}, "min_duration_s"),
        ({"prefix": "44", "price_per_min_micros": 1, "grace_s": -1}, "grace_s"),
        ({"prefix": "44", "price_per_min_micros": 1, "destination": "x\u0000y"}, "destination"),
        ({"prefix": "44", "price_per_min_micros": 1, "destination": "d" * 201}, "destination"),
        ({"prefix": "44", "price_per_min_micros": 1, "effective_from": "soon"}, "effective_from"),
        (
            {
                "prefix": "44",
                "price_per_min_micros": 1,
                "effective_from": "2030-01-01T00:00:00Z",
                "effective_to": "2030-01-01T00:00:00Z",
            },
            "effective_to",
        ),
        (
            {
                "prefix": "44",
                "price_per_min_micros": 1,
                "effective_to": "0001-01-01T00:00:00+05:00",
            },
            "effective_to",
        ),
        ({"prefix": "44", "price_per_min_micros": 1, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        reply = await api.post(url, json=body, headers=auth)
        assert ("body", field) in _field_errors(reply), (body, reply.text)
    rate = await _add_rate(api, auth, gid, prefix="44", effective_from="2030-01-01")
    patch = f"{url}/{rate['id']}"
    for body, field in (
        ({"price_per_min_micros": None}, "price_per_min_micros"),
        ({"prefix": "x"}, "prefix"),
        ({"effective_to": "2029-12-31T23:59:59Z"}, "effective_to"),
    ):
        reply = await api.patch(patch, json=body, headers=auth)
        assert ("body", field) in _field_errors(reply), (body, reply.text)
    for body, field in (
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "currency": "usd"}, "currency"),
        ({"name": " padded "}, "name"),
        ({"name": "nul\u0000"}, "name"),
    ):
        reply = await api.post(f"{V1}/rate-groups", json=body, headers=auth)
        assert ("body", field) in _field_errors(reply), (body, reply.text)


# -- CSV decks -----------------------------------------------------------------------


async def test_export_and_import_decks(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "agent_b")
    source = (await _create_group(api, auth, _name(world)))["id"]
    await _add_rate(api, auth, source, prefix="44", destination="UK, all", connect_fee_micros=1)
    await _add_rate(
        api, auth, source, prefix="4420", destination="London", effective_to="2099-01-01"
    )
    exported = await api.get(f"{V1}/rate-groups/{source}/rates.csv", headers=auth)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["prefix"] for r in rows] == ["44", "4420"]
    assert rows[0]["destination"] == "UK, all" and rows[0]["price_per_min"] == "0.01"

    target = (await _create_group(api, auth, _name(world)))["id"]
    await _add_rate(api, auth, target, prefix="1")
    url = f"{V1}/rate-groups/{target}/rates/import"
    csv_headers = {**auth, "Content-Type": "text/csv"}
    merged = await api.post(url, content=exported.text, headers=csv_headers)
    assert merged.status_code == 200, merged.text
    assert merged.json()["inserted"] == 2 and merged.json()["deleted"] == 0
    replaced = await api.post(
        url, params={"replace": "true"}, content=exported.text, headers=csv_headers
    )
    assert replaced.json()["deleted"] == 1 and replaced.json()["unchanged"] == 2
    again = await api.get(f"{V1}/rate-groups/{target}/rates.csv", headers=auth)
    assert again.text == exported.text

    bad = await api.post(
        url,
        content="prefix,destination,price_per_min\n44,UK,0.1\n4x,Bad,0.1\n45,Neg,-1\n",
        headers=csv_headers,
    )
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["detail"]] == [["body", "file", 3], ["body", "file", 4]]
    unchanged = await api.get(f"{V1}/rate-groups/{target}/rates.csv", headers=auth)
    assert unchanged.text == exported.text


# -- the running gateway hears of changes --------------------------------------------


async def test_rate_change_notifies_gateways(
    api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    auth = await headers(api, world, "admin")
    gid = (await _create_group(api, auth, _name(world)))["id"]
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.add_listener("gateway_rates", lambda *args: heard.put_nowait(args[3]))
        await _add_rate(api, auth, gid, prefix="39")
        while True:
            payload = await asyncio.wait_for(heard.get(), timeout=5)
            if payload == "*" or str(gid) in payload.split(","):
                break
    finally:
        await conn.close()
