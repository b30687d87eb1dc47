from __future__ import annotations

import httpx

from tests.api.world import PASSWORD, World, headers


async def test_login_me_logout(api: httpx.AsyncClient, world: World) -> None:
    reply = await api.post(
        "/api/v1/auth/login", json={"login": world.login("agent_a"), "password": PASSWORD}
    )
    assert reply.status_code == 200
    body = reply.json()
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert body["user"]["role"] == "agent"
    assert body["user"]["account_id"] == world.agent_a

    me = await api.get("/api/v1/auth/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["login"] == world.login("agent_a")

    assert (await api.post("/api/v1/auth/logout", headers=auth)).status_code == 204
    gone = await api.get("/api/v1/auth/me", headers=auth)
    assert gone.status_code == 401
    assert gone.headers["www-authenticate"] == "Bearer"


async def test_no_token_and_garbage_token_are_401(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v1/auth/me")).status_code == 401
    reply = await api.get("/api/v1/auth/me", headers={"Authorization": "Bearer nonsense"})
    assert reply.status_code == 401
    assert reply.json()["detail"]["code"] == "UNAUTHENTICATED"


async def test_wrong_password_and_unknown_login_look_the_same(
    api: httpx.AsyncClient, world: World
) -> None:
    wrong = await api.post(
        "/api/v1/auth/login", json={"login": world.login("agent_a"), "password": "nope"}
    )
    unknown = await api.post(
        "/api/v1/auth/login", json={"login": "nobody-" + world.suffix, "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_login_is_rate_limited_per_login(api: httpx.AsyncClient, world: World) -> None:
    login = world.login("agent_b")
    for _ in range(5):
        reply = await api.post("/api/v1/auth/login", json={"login": login, "password": "bad"})
        assert reply.status_code == 401
    # Even the right password is refused until the window passes.
    blocked = await api.post("/api/v1/auth/login", json={"login": login, "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert blocked.json()["detail"]["code"] == "RATE_LIMITED"


async def test_login_body_is_validated(api: httpx.AsyncClient) -> None:
    reply = await api.post("/api/v1/auth/login", json={"login": ""})
    assert reply.status_code == 422
    fields = {tuple(e["loc"]) for e in reply.json()["detail"]}
    assert ("body", "login") in fields
    assert ("body", "password") in fields


async def test_password_change_ends_other_sessions(api: httpx.AsyncClient, world: World) -> None:
    first = await headers(api, world, "a1")
    second = await headers(api, world, "a1")
    short = await api.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=first,
    )
    assert short.status_code == 422
    assert short.json()["detail"][0]["loc"] == ["body", "new_password"]
    wrong = await api.post(
        "/api/v1/auth/password",
        json={"current_password": "not it", "new_password": "a much better one"},
        headers=first,
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "current_password"]

    ok = await api.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a much better one"},
        headers=first,
    )
    assert ok.status_code == 204
    assert (await api.get("/api/v1/auth/me", headers=first)).status_code == 200
    assert (await api.get("/api/v1/auth/me", headers=second)).status_code == 401
    relogin = await api.post(
        "/api/v1/auth/login",
        json={"login": world.login("a1"), "password": "a much better one"},
    )
    assert relogin.status_code == 200


async def test_disabled_user_cannot_log_in(api: httpx.AsyncClient, world: World, db_pool) -> None:  # type: ignore[no-untyped-def]
    auth = await headers(api, world, "agent_a1")
    await db_pool.execute(
        "UPDATE users SET status = 'disabled' WHERE id = $1", world.users[world.login("agent_a1")]
    )
    assert (await api.get("/api/v1/auth/me", headers=auth)).status_code == 401
    reply = await api.post(
        "/api/v1/auth/login", json={"login": world.login("agent_a1"), "password": PASSWORD}
    )
    assert reply.status_code == 401
