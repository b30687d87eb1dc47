"""Tickets: customers to their agent, agents to the operator; who sees and acts on what."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.world import World, headers

T = "/api/v1/tickets"


async def _open(
    api: httpx.AsyncClient, auth: dict[str, str], subject: str = "No dial tone"
) -> dict[str, Any]:
    reply = await api.post(
        T, json={"subject": subject, "body": "Calls fail since noon."}, headers=auth
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _locs(reply: httpx.Response) -> set[tuple[Any, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(e["loc"]) for e in reply.json()["detail"]}


async def _ids(api: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> set[int]:
    reply = await api.get(T, params={"limit": 500, **params}, headers=auth)
    assert reply.status_code == 200, reply.text
    return {t["id"] for t in reply.json()["items"]}


async def test_customer_ticket_goes_to_its_agent_and_back(
    api: httpx.AsyncClient, world: World
) -> None:
    a1 = await headers(api, world, "a1")
    agent_a = await headers(api, world, "agent_a")
    ticket = await _open(api, a1)
    assert ticket["account_id"] == world.a1
    assert ticket["handler_account_id"] == world.agent_a
    assert ticket["status"] == "open"
    assert ticket["opened_by_login"] == world.login("a1")
    assert [m["body"] for m in ticket["messages"]] == ["Calls fail since noon."]
    assert ticket["message_count"] == 1

    assert ticket["id"] in await _ids(api, agent_a, scope="handled")
    assert ticket["id"] not in await _ids(api, agent_a, scope="mine")
    assert ticket["id"] in await _ids(api, a1, scope="mine")

    answer = await api.post(
        f"{T}/{ticket['id']}/messages", json={"body": "Try again now."}, headers=agent_a
    )
    assert answer.status_code == 201
    assert answer.json()["status"] == "answered"
    assert ticket["id"] in await _ids(api, agent_a, status="answered")
    back = await api.post(
        f"{T}/{ticket['id']}/messages", json={"body": "Still broken."}, headers=a1
    )
    assert back.json()["status"] == "open"
    detail = await api.get(f"{T}/{ticket['id']}", headers=a1)
    assert detail.status_code == 200
    msgs = detail.json()["messages"]
    assert [m["author_login"] for m in msgs] == [
        world.login("a1"),
        world.login("agent_a"),
        world.login("a1"),
    ]
    assert msgs[1]["author_role"] == "agent"

    closed = await api.post(f"{T}/{ticket['id']}/close", headers=a1)
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    again = await api.post(f"{T}/{ticket['id']}/close", headers=agent_a)
    assert again.status_code == 200 and again.json()["status"] == "closed"
    late = await api.post(f"{T}/{ticket['id']}/messages", json={"body": "hello?"}, headers=a1)
    assert late.status_code == 409
    assert late.json()["detail"]["code"] == "TICKET_CLOSED"


async def test_agent_ticket_goes_to_the_operator(api: httpx.AsyncClient, world: World) -> None:
    agent_b = await headers(api, world, "agent_b")
    admin = await headers(api, world, "admin")
    ticket = await _open(api, agent_b, "Need a new route")
    assert ticket["account_id"] == world.agent_b
    assert ticket["handler_account_id"] is None
    assert ticket["id"] in await _ids(api, admin, scope="handled")
    assert ticket["id"] in await _ids(api, agent_b, scope="mine")
    assert ticket["id"] not in await _ids(api, agent_b, scope="handled")

    answer = await api.post(f"{T}/{ticket['id']}/messages", json={"body": "Done."}, headers=admin)
    assert answer.json()["status"] == "answered"
    closed = await api.post(f"{T}/{ticket['id']}/close", headers=agent_b)
    assert closed.json()["status"] == "closed"


async def test_operator_opens_no_ticket(api: httpx.AsyncClient, world: World) -> None:
    admin = await headers(api, world, "admin")
    reply = await api.post(T, json={"subject": "x", "body": "y"}, headers=admin)
    assert reply.status_code == 403


async def test_parent_agent_reads_but_cannot_act_on_sub_agent_operator_ticket(
    api: httpx.AsyncClient, world: World
) -> None:
    agent_a1 = await headers(api, world, "agent_a1")
    agent_a = await headers(api, world, "agent_a")
    ticket = await _open(api, agent_a1, "Sub-agent question")
    assert (await api.get(f"{T}/{ticket['id']}", headers=agent_a)).status_code == 200
    reply = await api.post(f"{T}/{ticket['id']}/messages", json={"body": "hi"}, headers=agent_a)
    assert reply.status_code == 403
    assert (await api.post(f"{T}/{ticket['id']}/close", headers=agent_a)).status_code == 403


async def test_isolation_between_trees(api: httpx.AsyncClient, world: World) -> None:
    b1 = await headers(api, world, "b1")
    agent_b = await headers(api, world, "agent_b")
    agent_a = await headers(api, world, "agent_a")
    a1 = await headers(api, world, "a1")
    customer_ticket = await _open(api, b1)
    agent_ticket = await _open(api, agent_b)
    for ticket in (customer_ticket, agent_ticket):
        tid = ticket["id"]
        for who in (agent_a, a1):
            assert (await api.get(f"{T}/{tid}", headers=who)).status_code == 404
            reply = await api.post(f"{T}/{tid}/messages", json={"body": "x"}, headers=who)
            assert reply.status_code == 404
            assert (await api.post(f"{T}/{tid}/close", headers=who)).status_code == 404
            assert tid not in await _ids(api, who)
            assert tid not in await _ids(api, who, account_id=ticket["account_id"])
    # A customer does not see its agent's ticket to the operator either.
    assert (await api.get(f"{T}/{agent_ticket['id']}", headers=b1)).status_code == 404
    # ... and the agent does see its customer's.
    assert (await api.get(f"{T}/{customer_ticket['id']}", headers=agent_b)).status_code == 200
    # Unknown and invisible look the same.
    unknown = await api.get(f"{T}/{2**62}", headers=agent_a)
    invisible = await api.get(f"{T}/{customer_ticket['id']}", headers=agent_a)
    assert unknown.status_code == invisible.status_code == 404
    assert unknown.json()["detail"]["code"] == invisible.json()["detail"]["code"] == "NOT_FOUND"


async def test_list_filters_and_paging(api: httpx.AsyncClient, world: World) -> None:
    a1 = await headers(api, world, "a1")
    first = await _open(api, a1, "first")
    second = await _open(api, a1, "second")
    await api.post(f"{T}/{first['id']}/close", headers=a1)
    reply = await api.get(T, params={"sort": "id", "order": "desc", "limit": 1}, headers=a1)
    page = reply.json()
    assert page["total"] == 2 and page["limit"] == 1 and page["offset"] == 0
    assert [t["id"] for t in page["items"]] == [second["id"]]
    assert await _ids(api, a1, status="closed") == {first["id"]}
    assert await _ids(api, a1, status="open") == {second["id"]}
    assert await _ids(api, a1, scope="handled") == set()


async def test_bad_input_is_422_with_fields(api: httpx.AsyncClient, world: World) -> None:
    a1 = await headers(api, world, "a1")
    assert ("body", "subject") in _locs(await api.post(T, json={"body": "x"}, headers=a1))
    locs = _locs(await api.post(T, json={"subject": "", "body": ""}, headers=a1))
    assert {("body", "subject"), ("body", "body")} <= locs
    too_long = await api.post(T, json={"subject": "s" * 201, "body": "x"}, headers=a1)
    assert ("body", "subject") in _locs(too_long)
    blank = await api.post(T, json={"subject": "   ", "body": "x"}, headers=a1)
    assert ("body", "subject") in _locs(blank)
    extra = await api.post(T, json={"subject": "s", "body": "b", "status": "closed"}, headers=a1)
    assert ("body", "status") in _locs(extra)
    huge = await api.post(T, json={"subject": "s", "body": "b" * 20_001}, headers=a1)
    assert ("body", "body") in _locs(huge)

    ticket = await _open(api, a1)
    empty = await api.post(f"{T}/{ticket['id']}/messages", json={"body": ""}, headers=a1)
    assert ("body", "body") in _locs(empty)
    assert ("path", "ticket_id") in _locs(await api.get(f"{T}/0", headers=a1))
    assert ("path", "ticket_id") in _locs(await api.post(f"{T}/abc/close", headers=a1))
    assert ("query", "scope") in _locs(await api.get(T, params={"scope": "x"}, headers=a1))
    assert ("query", "status") in _locs(await api.get(T, params={"status": "x"}, headers=a1))
    assert _locs(await api.get(T, params={"sort": "password"}, headers=a1))
    assert ("query", "limit") in _locs(await api.get(T, params={"limit": 0}, headers=a1))


async def test_login_required(api: httpx.AsyncClient) -> None:
    assert (await api.get(T)).status_code == 401
    assert (await api.post(T, json={"subject": "s", "body": "b"})).status_code == 401
    assert (await api.get(f"{T}/1")).status_code == 401
