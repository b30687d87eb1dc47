"""Accounts, customers (one and batch) and sub-agents through the API."""

from __future__ import annotations

import csv
import io
import itertools

import asyncpg
import httpx

from gateway.agents.context import ManagementContext
from gateway.balance.mirror import AccountMirror
from tests import factories
from tests.api.world import PASSWORD, World, headers

V1 = "/api/v1"
_seq = itertools.count(1)


def uniq(world: World, what: str) -> str:
    return f"{what}-{world.suffix}-{next(_seq)}"


def fields(reply: httpx.Response) -> set[tuple[object, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(e["loc"]) for e in reply.json()["detail"]}


async def login_as(api: httpx.AsyncClient, login: str, password: str) -> dict[str, str]:
    reply = await api.post(f"{V1}/auth/login", json={"login": login, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


async def new_customer(
    api: httpx.AsyncClient, world: World, auth: dict[str, str], **extra: object
) -> dict[str, object]:
    body = {"name": uniq(world, "cust"), "rate_group_id": world.rate_group, **extra}
    reply = await api.post(f"{V1}/customers", json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    created: dict[str, object] = reply.json()
    return created


# -- accounts ---------------------------------------------------------------------------------


async def test_me_account_and_account_by_id(api: httpx.AsyncClient, world: World) -> None:
    agent = await headers(api, world, "agent_a")
    me = await api.get(f"{V1}/me/account", headers=agent)
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == world.agent_a
    assert body["kind"] == "agent"
    assert body["billing_mode"] == "wholesale"
    assert body["balance_micros"] == 100_000_000
    assert body["available_micros"] == 100_000_000
    assert body["held_micros"] == 0
    assert body["currency"] == "USD"

    admin = await headers(api, world, "admin")
    assert (await api.get(f"{V1}/me/account", headers=admin)).status_code == 404
    assert (await api.get(f"{V1}/accounts/{world.b1}", headers=admin)).status_code == 200

    customer = await headers(api, world, "a1")
    own = await api.get(f"{V1}/accounts/{world.a1}", headers=customer)
    assert own.status_code == 200
    assert own.json()["kind"] == "customer"
    assert (await api.get(f"{V1}/me/account", headers=customer)).json()["id"] == world.a1
    for other in (world.a2, world.agent_a, world.b1):
        assert (await api.get(f"{V1}/accounts/{other}", headers=customer)).status_code == 404


async def test_account_shows_live_holds_from_redis(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext
) -> None:
    key = ctx.keys.account(world.agent_a, world.a1)
    await ctx.redis.hset(key, mapping={"held": 1_500, "calls": 2, "bal": 5_000_000})
    agent = await headers(api, world, "agent_a")
    body = (await api.get(f"{V1}/accounts/{world.a1}", headers=agent)).json()
    assert body["held_micros"] == 1_500
    assert body["calls_up"] == 2
    assert body["available_micros"] == 5_000_000 - 1_500


async def test_isolation_between_agents(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    for path in (f"/accounts/{world.b1}", f"/customers/{world.b1}", f"/accounts/{world.agent_b}"):
        assert (await api.get(V1 + path, headers=agent_a)).status_code == 404
    patch = await api.patch(f"{V1}/customers/{world.b1}", json={"name": "x"}, headers=agent_a)
    assert patch.status_code == 404
    assert (await api.delete(f"{V1}/customers/{world.b1}", headers=agent_a)).status_code == 404

    sub = await headers(api, world, "agent_a1")
    for other in (world.a1, world.a2, world.agent_a):
        assert (await api.get(f"{V1}/accounts/{other}", headers=sub)).status_code == 404
    patch = await api.patch(f"{V1}/customers/{world.a1}", json={"name": "x"}, headers=sub)
    assert patch.status_code == 404
    assert (await api.get(f"{V1}/customers/{world.a11}", headers=sub)).status_code == 200


# -- listing ----------------------------------------------------------------------------------


async def test_list_customers_is_the_visible_subtree(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    reply = await api.get(f"{V1}/customers", headers=agent_a)
    assert reply.status_code == 200
    body = reply.json()
    assert {c["id"] for c in body["items"]} == {world.a1, world.a2, world.a11}
    assert body["total"] == 3
    assert (body["limit"], body["offset"]) == (50, 0)

    direct = await api.get(f"{V1}/customers", params={"parent_id": world.agent_a}, headers=agent_a)
    assert {c["id"] for c in direct.json()["items"]} == {world.a1, world.a2}

    by_balance = await api.get(
        f"{V1}/customers", params={"sort": "balance_micros", "order": "desc"}, headers=agent_a
    )
    assert [c["id"] for c in by_balance.json()["items"]] == [world.a1, world.a11, world.a2]

    paged = await api.get(f"{V1}/customers", params={"limit": 1, "offset": 1}, headers=agent_a)
    assert len(paged.json()["items"]) == 1
    assert paged.json()["total"] == 3

    sub = await headers(api, world, "agent_a1")
    assert [c["id"] for c in (await api.get(f"{V1}/customers", headers=sub)).json()["items"]] == [
        world.a11
    ]
    agent_b = await headers(api, world, "agent_b")
    assert [
        c["id"] for c in (await api.get(f"{V1}/customers", headers=agent_b)).json()["items"]
    ] == [world.b1]


async def test_list_filters_and_bad_input(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    name = uniq(world, "Needle_50%")
    made = await new_customer(api, world, agent_a, name=name)
    found = await api.get(f"{V1}/customers", params={"q": name.upper()}, headers=agent_a)
    assert [c["id"] for c in found.json()["items"]] == [made["id"]]
    # LIKE wildcards in q are literal.
    none = await api.get(f"{V1}/customers", params={"q": "Needle%0"}, headers=agent_a)
    assert none.json()["total"] == 0
    disabled = await api.get(f"{V1}/customers", params={"status": "disabled"}, headers=agent_a)
    assert disabled.json()["items"] == []

    assert (
        await api.get(f"{V1}/customers", params={"sort": "secret"}, headers=agent_a)
    ).status_code == 422
    assert (
        await api.get(f"{V1}/customers", params={"status": "x"}, headers=agent_a)
    ).status_code == 422
    assert (
        await api.get(f"{V1}/customers", params={"limit": 0}, headers=agent_a)
    ).status_code == 422

    customer = await headers(api, world, "a1")
    assert (await api.get(f"{V1}/customers", headers=customer)).status_code == 403
    assert (await api.get(f"{V1}/customers")).status_code == 401


# -- create -----------------------------------------------------------------------------------


async def test_agent_creates_customer_with_login_and_extension(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    login = uniq(world, "portal")
    created = await new_customer(
        api,
        world,
        agent_a,
        login=login,
        password="a long enough one",
        credit_limit_micros=2_000_000,
        max_concurrent_calls=3,
        contact_emails=["ops@example.com"],
        extension={"description": "desk phone"},
    )
    assert created["parent_id"] == world.agent_a
    assert created["kind"] == "customer"
    assert created["currency"] == "USD"
    assert created["credit_limit_micros"] == created["available_micros"] == 2_000_000
    assert (created["held_micros"], created["calls_up"]) == (0, 0)
    assert created["login"] == login
    assert created["password"] is None  # chosen, so not echoed
    ext = created["extension"]
    assert isinstance(ext, dict)
    assert ext["username"].isdigit() and len(ext["secret"]) >= 16
    assert ext["description"] == "desk phone"

    own = await login_as(api, login, "a long enough one")
    assert (await api.get(f"{V1}/me/account", headers=own)).json()["id"] == created["id"]
    assert (await api.post(f"{V1}/customers", json={}, headers=own)).status_code == 403

    # A generated password is returned once and works.
    other = uniq(world, "gen")
    made = await new_customer(api, world, agent_a, login=other)
    assert isinstance(made["password"], str)
    await login_as(api, other, made["password"])


async def test_create_under_sub_agent_and_parent_rules(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    under_sub = await new_customer(api, world, agent_a, parent_id=world.agent_a1)
    assert under_sub["parent_id"] == world.agent_a1

    body = {"name": uniq(world, "c"), "rate_group_id": world.rate_group}
    for parent in (world.agent_b, world.a1, 10**12):
        reply = await api.post(
            f"{V1}/customers", json={**body, "parent_id": parent}, headers=agent_a
        )
        assert fields(reply) == {("body", "parent_id")}
    sub = await headers(api, world, "agent_a1")
    reply = await api.post(
        f"{V1}/customers", json={**body, "parent_id": world.agent_a}, headers=sub
    )
    assert fields(reply) == {("body", "parent_id")}

    admin = await headers(api, world, "admin")
    assert fields(await api.post(f"{V1}/customers", json=body, headers=admin)) == {
        ("body", "parent_id")
    }
    top = await api.post(f"{V1}/customers", json={**body, "parent_id": None}, headers=admin)
    assert top.status_code == 201
    assert top.json()["parent_id"] is None
    under_b = await api.post(
        f"{V1}/customers", json={**body, "parent_id": world.agent_b}, headers=admin
    )
    assert under_b.status_code == 201


async def test_create_validates_fields(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    base = {"name": uniq(world, "c"), "rate_group_id": world.rate_group}
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": ""}, "name"),
        ({"credit_limit_micros": -1}, "credit_limit_micros"),
        ({"max_concurrent_calls": -1}, "max_concurrent_calls"),
        ({"currency": "usd"}, "currency"),
        # Another currency than the parent's is allowed, with a rate group in it.
        ({"currency": "EUR"}, "rate_group_id"),
        ({"login": "has space"}, "login"),
        ({"login": uniq(world, "l"), "password": "short"}, "password"),
        ({"password": "without a login"}, "login"),
        ({"contact_emails": ["not-an-email"]}, "contact_emails"),
        ({"extension": {"username": "bad name"}}, "extension"),
    ]
    for change, field in cases:
        reply = await api.post(f"{V1}/customers", json={**base, **change}, headers=agent_a)
        locs = fields(reply)
        assert any(field in loc for loc in locs), (change, locs)
    missing = await api.post(f"{V1}/customers", json={"name": "x"}, headers=agent_a)
    assert ("body", "rate_group_id") in fields(missing)

    async with db_pool.acquire() as conn:
        foreign = await factories.rate_group(conn, [factories.rate(1_000)])
    reply = await api.post(
        f"{V1}/customers", json={**base, "rate_group_id": foreign}, headers=agent_a
    )
    assert fields(reply) == {("body", "rate_group_id")}
    assert reply.json()["detail"][0]["msg"] == "no such rate group"


async def test_taken_login_or_extension_creates_nothing(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    first = await new_customer(
        api, world, agent_a, login=uniq(world, "Taken"), extension={"username": uniq(world, "x")}
    )
    ext = first["extension"]
    assert isinstance(ext, dict)
    name = uniq(world, "never")
    login_clash = await api.post(
        f"{V1}/customers",
        json={
            "name": name,
            "rate_group_id": world.rate_group,
            "login": str(first["login"]).lower(),  # logins are unique in any letter case
        },
        headers=agent_a,
    )
    assert login_clash.status_code == 409
    assert login_clash.json()["detail"]["code"] == "LOGIN_TAKEN"
    ext_clash = await api.post(
        f"{V1}/customers",
        json={
            "name": name,
            "rate_group_id": world.rate_group,
            "extension": {"username": ext["username"]},
        },
        headers=agent_a,
    )
    assert ext_clash.status_code == 409
    assert ext_clash.json()["detail"]["code"] == "EXTENSION_TAKEN"
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE name = $1", name) == 0


# -- change -----------------------------------------------------------------------------------


async def test_patch_customer(api: httpx.AsyncClient, world: World, ctx: ManagementContext) -> None:
    agent_a = await headers(api, world, "agent_a")
    made = await new_customer(api, world, agent_a, max_concurrent_calls=4)
    cid = made["id"]
    assert isinstance(cid, int)
    await AccountMirror(ctx.pool, ctx.pipeliner, ctx.keys).load([cid])

    reply = await api.patch(
        f"{V1}/customers/{cid}",
        json={
            "name": "renamed",
            "credit_limit_micros": 7,
            "max_concurrent_calls": None,
            "status": "disabled",
            "contact_emails": ["a@b.c"],
            "rate_group_id": world.rate_group,
        },
        headers=agent_a,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["name"], body["credit_limit_micros"], body["max_concurrent_calls"]) == (
        "renamed",
        7,
        None,
    )
    assert (body["status"], body["disabled_reason"]) == ("disabled", "manual")
    assert body["disabled_at"] is not None
    key = ctx.keys.account(world.agent_a, cid)
    assert await ctx.redis.hget(key, "st") == b"disabled"  # the mirror follows at once

    again = await api.patch(f"{V1}/customers/{cid}", json={"status": "active"}, headers=agent_a)
    assert (again.json()["status"], again.json()["disabled_reason"]) == ("active", "")
    assert await ctx.redis.hget(key, "st") == b"active"
    assert (await api.patch(f"{V1}/customers/{cid}", json={}, headers=agent_a)).status_code == 200

    for bad, field in (
        ({"status": "removed"}, "status"),
        ({"credit_limit_micros": -5}, "credit_limit_micros"),
        ({"name": None}, "name"),
        ({"rate_group_id": None}, "rate_group_id"),
        ({"rate_group_id": 10**12}, "rate_group_id"),
    ):
        reply = await api.patch(f"{V1}/customers/{cid}", json=bad, headers=agent_a)
        assert ("body", field) in fields(reply), bad


async def test_customer_user_cannot_change_itself(api: httpx.AsyncClient, world: World) -> None:
    customer = await headers(api, world, "a1")
    own = await api.patch(f"{V1}/customers/{world.a1}", json={"name": "x"}, headers=customer)
    assert own.status_code == 403
    other = await api.patch(f"{V1}/customers/{world.a2}", json={"name": "x"}, headers=customer)
    assert other.status_code == 404
    assert (await api.delete(f"{V1}/customers/{world.a1}", headers=customer)).status_code == 403
    assert (await api.get(f"{V1}/customers/{world.a1}", headers=customer)).status_code == 200


async def test_agent_cannot_change_own_account_through_customers(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a = await headers(api, world, "agent_a")
    own = await api.patch(f"{V1}/customers/{world.agent_a}", json={"name": "x"}, headers=agent_a)
    assert own.status_code == 404  # not a customer
    assert (await api.delete(f"{V1}/customers/{world.agent_a}", headers=agent_a)).status_code == 404


# -- remove -----------------------------------------------------------------------------------


async def test_remove_customer_soft(
    api: httpx.AsyncClient, world: World, ctx: ManagementContext
) -> None:
    agent_a = await headers(api, world, "agent_a")
    login = uniq(world, "gone")
    made = await new_customer(
        api, world, agent_a, login=login, password="long password 1", extension={}
    )
    cid = made["id"]
    number = f"4930{cid:09d}"  # account ids are unique, so is the number
    added = await api.post(
        f"{V1}/customers/{cid}/caller-ids", json={"number": number}, headers=agent_a
    )
    assert added.status_code == 201
    user = await login_as(api, login, "long password 1")

    key = ctx.keys.account(world.agent_a, int(str(cid)))
    await ctx.redis.hset(key, "calls", 1)
    busy = await api.delete(f"{V1}/customers/{cid}", headers=agent_a)
    assert busy.status_code == 409
    assert busy.json()["detail"]["code"] == "CALLS_IN_PROGRESS"
    await ctx.redis.hset(key, "calls", 0)

    assert (await api.delete(f"{V1}/customers/{cid}", headers=agent_a)).status_code == 204
    assert (await api.delete(f"{V1}/customers/{cid}", headers=agent_a)).status_code == 404
    shown = await api.get(f"{V1}/customers/{cid}", headers=agent_a)
    assert shown.json()["status"] == "removed"
    assert shown.json()["removed_at"] is not None
    listed = await api.get(f"{V1}/customers", headers=agent_a)
    assert cid not in {c["id"] for c in listed.json()["items"]}
    removed = await api.get(f"{V1}/customers", params={"status": "removed"}, headers=agent_a)
    assert cid in {c["id"] for c in removed.json()["items"]}
    assert (await api.get(f"{V1}/me/account", headers=user)).status_code == 401
    exts = await api.get(f"{V1}/customers/{cid}/extensions", headers=agent_a)
    assert [e["status"] for e in exts.json()["items"]] == ["disabled"]
    assert (
        await api.patch(f"{V1}/customers/{cid}", json={"name": "x"}, headers=agent_a)
    ).status_code == 404
    # The number is free for someone else.
    reuse = await api.post(
        f"{V1}/customers/{world.a2}/caller-ids", json={"number": number}, headers=agent_a
    )
    assert reuse.status_code == 201
    assert await ctx.redis.hget(key, "st") == b"removed"


# -- agents -----------------------------------------------------------------------------------


async def test_admin_creates_agents_and_agents_list_sub_agents(
    api: httpx.AsyncClient, world: World
) -> None:
    admin = await headers(api, world, "admin")
    login = uniq(world, "reseller")
    reply = await api.post(
        f"{V1}/agents",
        json={
            "name": uniq(world, "Reseller"),
            "billing_mode": "transfer",
            "rate_group_id": world.rate_group,
            "parent_id": world.agent_b,
            "commission_rate_bp": 250,
            "login": login,
            "password": "reseller password",
        },
        headers=admin,
    )
    assert reply.status_code == 201, reply.text
    agent = reply.json()
    assert (agent["kind"], agent["billing_mode"], agent["commission_rate_bp"]) == (
        "agent",
        "transfer",
        250,
    )
    assert agent["parent_id"] == world.agent_b
    own = await login_as(api, login, "reseller password")
    made = await new_customer(api, world, own)
    assert made["parent_id"] == agent["id"]

    agent_b = await headers(api, world, "agent_b")
    subs = await api.get(f"{V1}/agents", headers=agent_b)
    assert [a["id"] for a in subs.json()["items"]] == [agent["id"]]
    agent_a = await headers(api, world, "agent_a")
    assert [a["id"] for a in (await api.get(f"{V1}/agents", headers=agent_a)).json()["items"]] == [
        world.agent_a1
    ]
    top = await api.post(
        f"{V1}/agents",
        json={
            "name": uniq(world, "Top"),
            "billing_mode": "wholesale",
            "rate_group_id": world.rate_group,
        },
        headers=admin,
    )
    assert top.status_code == 201
    assert top.json()["parent_id"] is None
    by_parent = await api.get(f"{V1}/agents", params={"parent_id": world.agent_b}, headers=admin)
    assert [a["id"] for a in by_parent.json()["items"]] == [agent["id"]]


async def test_agent_creation_rules(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    body = {"name": uniq(world, "ag"), "billing_mode": "wholesale"}
    assert fields(await api.post(f"{V1}/agents", json=body, headers=admin)) == {
        ("body", "rate_group_id")
    }
    bad_mode = await api.post(f"{V1}/agents", json={**body, "billing_mode": "x"}, headers=admin)
    assert ("body", "billing_mode") in fields(bad_mode)
    bad_bp = await api.post(
        f"{V1}/agents",
        json={**body, "rate_group_id": world.rate_group, "commission_rate_bp": 10_001},
        headers=admin,
    )
    assert ("body", "commission_rate_bp") in fields(bad_bp)
    under_customer = await api.post(
        f"{V1}/agents",
        json={**body, "rate_group_id": world.rate_group, "parent_id": world.a1},
        headers=admin,
    )
    assert fields(under_customer) == {("body", "parent_id")}
    # An agent may only hand out rate groups it may use: a new transfer agent with no
    # group of its own sees none of the operator's.
    login = uniq(world, "bare")
    bare = await api.post(
        f"{V1}/agents",
        json={"name": login, "billing_mode": "transfer", "login": login, "password": PASSWORD},
        headers=admin,
    )
    assert bare.status_code == 201
    assert bare.json()["rate_group_id"] is None
    own = await login_as(api, login, PASSWORD)
    refused = await api.post(
        f"{V1}/customers", json={"name": "c", "rate_group_id": world.rate_group}, headers=own
    )
    assert fields(refused) == {("body", "rate_group_id")}
    agent_a = await headers(api, world, "agent_a")
    ok_body = {**body, "rate_group_id": world.rate_group}
    assert (await api.post(f"{V1}/agents", json=ok_body, headers=agent_a)).status_code == 403
    customer = await headers(api, world, "a1")
    assert (await api.get(f"{V1}/agents", headers=customer)).status_code == 403


# -- batch ------------------------------------------------------------------------------------


async def test_batch_by_count(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    prefix = uniq(world, "bulk") + "-"
    reply = await api.post(
        f"{V1}/customers/batch",
        json={
            "count": 3,
            "name_prefix": prefix,
            "rate_group_id": world.rate_group,
            "credit_limit_micros": 100,
        },
        headers=agent_a,
    )
    assert reply.status_code == 201, reply.text
    items = reply.json()["items"]
    assert [i["name"] for i in items] == [f"{prefix}1", f"{prefix}2", f"{prefix}3"]
    assert all(i["login"] == i["extension"] for i in items)
    assert len({i["password"] for i in items}) == 3
    own = await login_as(api, items[0]["login"], items[0]["password"])
    me = (await api.get(f"{V1}/me/account", headers=own)).json()
    assert (me["id"], me["parent_id"], me["credit_limit_micros"]) == (
        items[0]["account_id"],
        world.agent_a,
        100,
    )
    exts = await api.get(f"{V1}/customers/{me['id']}/extensions", headers=agent_a)
    assert exts.json()["items"][0]["secret"] == items[0]["secret"]

    as_csv = await api.post(
        f"{V1}/customers/batch",
        params={"format": "csv"},
        json={"count": 2, "name_prefix": prefix + "csv", "rate_group_id": world.rate_group},
        headers=agent_a,
    )
    assert as_csv.status_code == 201
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == [
        "account_id",
        "name",
        "login",
        "password",
        "extension",
        "secret",
        "caller_id",
    ]
    assert len(rows) == 3


async def test_batch_from_csv(api: httpx.AsyncClient, world: World) -> None:
    agent_a = await headers(api, world, "agent_a")
    tag = uniq(world, "csv")
    number = f"447{world.agent_a:09d}"
    text = (
        "name,login,extension,caller_id,credit_limit_micros\n"
        f"{tag}-one,{tag}-l1,{tag}-e1,+{number},5\n"
        f"{tag}-two,,,,\n"
        "\n"
        f'"{tag}-three, quoted",{tag}-l3,,,\n'
    )
    reply = await api.post(
        f"{V1}/customers/batch",
        json={"csv": text, "rate_group_id": world.rate_group, "parent_id": world.agent_a1},
        headers=agent_a,
    )
    assert reply.status_code == 201, reply.text
    items = reply.json()["items"]
    assert [i["name"] for i in items] == [f"{tag}-one", f"{tag}-two", f"{tag}-three, quoted"]
    assert (items[0]["login"], items[0]["extension"], items[0]["caller_id"]) == (
        f"{tag}-l1",
        f"{tag}-e1",
        number,
    )
    assert items[1]["login"] == items[1]["extension"]
    assert items[2]["login"] == f"{tag}-l3" and items[2]["extension"].isdigit()
    first = (await api.get(f"{V1}/customers/{items[0]['account_id']}", headers=agent_a)).json()
    assert (first["credit_limit_micros"], first["parent_id"]) == (5, world.agent_a1)


async def test_batch_bad_rows_create_nothing(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    agent_a = await headers(api, world, "agent_a")
    tag = uniq(world, "bad")
    taken = await new_customer(api, world, agent_a, extension={"username": f"{tag}-used"})
    assert taken["extension"]
    text = (
        "name,login,extension,caller_id,credit_limit_micros\n"
        f"{tag}-ok,{tag}-l,,,\n"  # line 2 fine
        f",{tag}-l2,,,\n"  # line 3: no name
        f"{tag}-c,{tag}-L,,,\n"  # line 4: same login as line 2 (any case)
        f"{tag}-d,,{tag}-used,,\n"  # line 5: extension taken
        f"{tag}-e,,,abc,-1\n"  # line 6: caller_id and credit limit
        f"{tag}-f,bad login,bad ext!,,\n"  # line 7
    )
    reply = await api.post(
        f"{V1}/customers/batch",
        json={"csv": text, "rate_group_id": world.rate_group},
        headers=agent_a,
    )
    assert fields(reply) == {
        ("body", "csv", 3, "name"),
        ("body", "csv", 4, "login"),
        ("body", "csv", 5, "extension"),
        ("body", "csv", 6, "caller_id"),
        ("body", "csv", 6, "credit_limit_micros"),
        ("body", "csv", 7, "login"),
        ("body", "csv", 7, "extension"),
    }
    async with db_pool.acquire() as conn:
        made = await conn.fetchval("SELECT count(*) FROM accounts WHERE name LIKE $1", f"{tag}-%")
    assert made == 0

    for body, field in (
        ({"rate_group_id": world.rate_group}, "count"),
        ({"rate_group_id": world.rate_group, "count": 1, "csv": "name\nx\n"}, "count"),
        ({"rate_group_id": world.rate_group, "count": 0}, "count"),
        ({"rate_group_id": world.rate_group, "count": 1001}, "count"),
        ({"rate_group_id": world.rate_group, "csv": ""}, "csv"),
        ({"rate_group_id": world.rate_group, "csv": "name\n"}, "csv"),
        ({"rate_group_id": world.rate_group, "csv": "name,password\nx,y\n"}, "csv"),
        ({"rate_group_id": world.rate_group, "csv": "name\nx,y\n"}, "csv"),
        ({"rate_group_id": 10**12, "count": 1}, "rate_group_id"),
        ({"rate_group_id": world.rate_group, "count": 1, "parent_id": world.agent_b}, "parent_id"),
    ):
        reply = await api.post(f"{V1}/customers/batch", json=body, headers=agent_a)
        assert any(loc[:2] == ("body", field) for loc in fields(reply)), (body, reply.text)

    customer = await headers(api, world, "a1")
    denied = await api.post(
        f"{V1}/customers/batch",
        json={"count": 1, "rate_group_id": world.rate_group},
        headers=customer,
    )
    assert denied.status_code == 403


async def test_password_login_of_batch_users_is_checked(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_b = await headers(api, world, "agent_b")
    reply = await api.post(
        f"{V1}/customers/batch",
        json={"count": 1, "rate_group_id": world.rate_group},
        headers=agent_b,
    )
    item = reply.json()["items"][0]
    wrong = await api.post(f"{V1}/auth/login", json={"login": item["login"], "password": PASSWORD})
    assert wrong.status_code == 401
    await login_as(api, item["login"], item["password"])
