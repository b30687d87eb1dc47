from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.db import Connection
from tests.api.world import World, headers

V1 = "/api/v1"
_sessions = itertools.count(1)
SORT_KEYS = (
    "id",
    "setup_at",
    "connect_at",
    "disconnect_at",
    "duration_s",
    "cost_micros",
    "called",
    "caller",
    "status",
    "account_id",
)


@dataclass(frozen=True)
class Call:
    session_id: str
    account_id: int
    setup_at: datetime
    duration_s: int
    costs: tuple[int, ...]  # per level, customer first
    called: str = "4420791234"
    caller: str = "15550001"


async def _chain(conn: Connection, customer: int) -> list[int]:
    """The account and its agents from the parent up (the CDR chain order)."""
    ancestors: list[int] = await conn.fetchval(
        "SELECT ancestors FROM accounts WHERE id = $1", customer
    )
    return [customer, *reversed(ancestors)]


async def insert_calls(db_pool: asyncpg.Pool, world: World, calls: list[Call]) -> None:
    async with db_pool.acquire() as conn:
        for call in calls:
            chain = await _chain(conn, call.account_id)
            assert len(chain) == len(call.costs)
            answered = call.duration_s > 0
            connect = call.setup_at + timedelta(seconds=5) if answered else None
            await conn.execute(
                "INSERT INTO cdrs (nas, session_id, setup_at, connect_at, disconnect_at, "
                "account_id, chain, caller, called_dialled, called, rate_group_per_level, "
                "prefix_per_level, price_per_level_micros, duration_s, billed_s_per_level, "
                "cost_per_level_micros, cost_micros, status, disconnect_cause, "
                "disconnect_cause_raw) "
                "VALUES ('10.9.9.9', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
                "$14, $15, $16, $17, $18, $19)",
                call.session_id,
                call.setup_at,
                connect,
                call.setup_at + timedelta(seconds=10 + call.duration_s),
                call.account_id,
                chain,
                call.caller,
                "00" + call.called,
                call.called,
                [world.rate_group] * len(chain),
                ["44"] * len(chain),
                [60_000] * len(chain),
                call.duration_s,
                [-(-call.duration_s // 60) * 60] * len(chain),
                list(call.costs),
                call.costs[0],
                "answered" if answered else "failed",
                16 if answered else 17,  # Q.850; the raw value as a Cisco switch sends it
                "10" if answered else "11",
            )


def _sid(world: World) -> str:
    return f"cdr-{world.suffix}-{next(_sessions)}"


@pytest.fixture
async def calls(db_pool: asyncpg.Pool, world: World) -> list[Call]:
    """Calls of every world customer in March 2020 (a window no other test uses)."""
    base = datetime(2020, 3, 10, 12, 0, tzinfo=UTC)
    made = [
        Call(_sid(world), world.a1, base, 125, (3_000, 2_000)),
        Call(_sid(world), world.a1, base + timedelta(hours=1), 0, (0, 0), caller="15559999"),
        Call(_sid(world), world.a2, base + timedelta(hours=2), 60, (1_000, 800), called="4930111"),
        Call(_sid(world), world.a11, base + timedelta(hours=3), 30, (700, 500, 400)),
        Call(_sid(world), world.b1, base + timedelta(hours=4), 90, (1_500, 0)),
    ]
    await insert_calls(db_pool, world, made)
    return made


WINDOW = {"from": "2020-03-01T00:00:00Z", "to": "2020-04-01T00:00:00Z"}


async def _report(api: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    reply = await api.get(f"{V1}/cdrs", params={**WINDOW, "limit": 500, **params}, headers=auth)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _mine(body: dict[str, Any], calls: list[Call]) -> list[str]:
    ours = {c.session_id for c in calls}
    return [item["session_id"] for item in body["items"] if item["session_id"] in ours]


async def test_each_viewer_sees_its_subtree(
    api: httpx.AsyncClient, world: World, calls: list[Call]
) -> None:
    a1_ok, a1_failed, a2, a11, b1 = (c.session_id for c in calls)
    expected = {
        "admin": {a1_ok, a1_failed, a2, a11, b1},
        "agent_a": {a1_ok, a1_failed, a2, a11},
        "agent_a1": {a11},
        "agent_b": {b1},
        "a1": {a1_ok, a1_failed},
        "b1": {b1},
    }
    for who, sessions in expected.items():
        auth = await headers(api, world, who)
        body = await _report(api, auth)
        assert set(_mine(body, calls)) == sessions, who
        if who != "admin":
            assert body["total"] == len(sessions)


async def test_costs_per_viewer(api: httpx.AsyncClient, world: World, calls: list[Call]) -> None:
    a11_call = calls[3].session_id

    async def row(who: str) -> dict[str, Any]:
        body = await _report(api, await headers(api, world, who), account_id=world.a11)
        items: list[dict[str, Any]] = body["items"]
        (item,) = [i for i in items if i["session_id"] == a11_call]
        return item

    admin, top, sub = await row("admin"), await row("agent_a"), await row("agent_a1")
    assert admin["cost_micros"] == top["cost_micros"] == sub["cost_micros"] == 700
    assert admin["agent_cost_micros"] is None
    assert sub["agent_cost_micros"] == 500
    assert top["agent_cost_micros"] == 400
    assert top["account_name"].startswith("test-customer-")
    assert top["prefix"] == "44" and top["destination"] == "test"
    assert top["billed_s"] == 60 and top["price_per_min_micros"] == 60_000
    b1 = await _report(api, await headers(api, world, "agent_b"))
    assert b1["items"][0]["agent_cost_micros"] == 0  # transfer mode: calls never charge B
    assert b1["totals"]["agent_cost_micros_sum"] == 0
    own = await _report(api, await headers(api, world, "a1"))
    assert {i["agent_cost_micros"] for i in own["items"]} == {None}


async def test_account_filter_and_isolation(
    api: httpx.AsyncClient, world: World, calls: list[Call]
) -> None:
    agent_a = await headers(api, world, "agent_a")
    subtree = await _report(api, agent_a, account_id=world.agent_a1)
    assert _mine(subtree, calls) == [calls[3].session_id]
    one = await _report(api, agent_a, account_id=world.a2)
    assert _mine(one, calls) == [calls[2].session_id]
    for who, account in (
        ("agent_a", world.b1),
        ("agent_a", world.agent_b),
        ("agent_a1", world.a1),
        ("agent_b", world.a1),
        ("a1", world.a2),
        ("b1", world.a1),
    ):
        auth = await headers(api, world, who)
        reply = await api.get(f"{V1}/cdrs", params={**WINDOW, "account_id": account}, headers=auth)
        assert reply.status_code == 404, (who, account)
        traffic = await api.get(
            f"{V1}/reports/traffic", params={"year": 2020, "account_id": account}, headers=auth
        )
        assert traffic.status_code == 404, (who, account)
        csv_reply = await api.get(
            f"{V1}/cdrs", params={**WINDOW, "account_id": account, "format": "csv"}, headers=auth
        )
        assert csv_reply.status_code == 404


async def test_filters_and_totals(api: httpx.AsyncClient, world: World, calls: list[Call]) -> None:
    auth = await headers(api, world, "agent_a")
    body = await _report(api, auth)
    assert body["totals"] == {
        "calls": 4,
        "answered": 3,
        "duration_s_sum": 125 + 60 + 30,
        "cost_micros_sum": 3_000 + 1_000 + 700,
        "agent_cost_micros_sum": 2_000 + 800 + 400,
    }
    assert body["from"].startswith("2020-03-01T00:00:00") and body["to"].startswith("2020-04-01")
    answered = await _report(api, auth, status="answered")
    assert answered["total"] == 3 and {i["status"] for i in answered["items"]} == {"answered"}
    failed = await _report(api, auth, status="failed")
    assert _mine(failed, calls) == [calls[1].session_id]
    assert failed["items"][0]["connect_at"] is None
    # The cause shown as Q.850 value and name, the raw value beside it.
    cause = {k: failed["items"][0][k] for k in ("disconnect_cause", "disconnect_cause_code")}
    assert cause == {"disconnect_cause": "17 user busy", "disconnect_cause_code": 17}
    assert failed["items"][0]["disconnect_cause_raw"] == "11"
    assert {i["disconnect_cause"] for i in answered["items"]} == {"16 normal call clearing"}
    germany = await _report(api, auth, called_prefix="4930")
    assert _mine(germany, calls) == [calls[2].session_id]
    assert germany["totals"]["cost_micros_sum"] == 1_000
    caller = await _report(api, auth, caller="1555999")
    assert _mine(caller, calls) == [calls[1].session_id]
    narrow = await _report(
        api, auth, **{"from": "2020-03-10T12:30:00Z", "to": "2020-03-10T14:00:00+00:00"}
    )
    assert _mine(narrow, calls) == [calls[1].session_id]
    page = await _report(api, auth, sort="setup_at", limit=2, offset=1)
    assert page["total"] == 4 and _mine(page, calls) == [c.session_id for c in calls[1:3]]


async def test_every_sort_key(api: httpx.AsyncClient, world: World, calls: list[Call]) -> None:
    auth = await headers(api, world, "agent_a")
    for key in SORT_KEYS:
        for order in ("asc", "desc"):
            body = await _report(api, auth, sort=key, order=order)
            assert body["total"] == 4, key
    by_duration = await _report(api, auth, sort="duration_s", order="desc")
    assert [i["duration_s"] for i in by_duration["items"]] == [125, 60, 30, 0]
    by_cost = await _report(api, auth, sort="cost_micros")
    assert [i["cost_micros"] for i in by_cost["items"]] == [0, 700, 1_000, 3_000]
    bad = await api.get(f"{V1}/cdrs", params={**WINDOW, "sort": "nas"}, headers=auth)
    assert bad.status_code == 422


async def test_csv_equals_json(api: httpx.AsyncClient, world: World, calls: list[Call]) -> None:
    auth = await headers(api, world, "agent_a")
    params = {"sort": "cost_micros", "order": "desc"}
    body = await _report(api, auth, **params)
    reply = await api.get(f"{V1}/cdrs", params={**WINDOW, **params, "format": "csv"}, headers=auth)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.headers["x-total-count"] == "4"
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert len(rows) == len(body["items"]) == 4
    for row, item in zip(rows, body["items"], strict=True):
        assert set(row) == set(item)
        for key, value in item.items():
            if value is None:
                assert row[key] == "", key
            elif key.endswith("_at"):
                assert datetime.fromisoformat(row[key]) == datetime.fromisoformat(value)
            else:
                assert row[key] == str(value), key


async def test_report_input_is_checked(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    for params, field in (
        ({"from": "2020-03-02T00:00:00Z", "to": "2020-03-01T00:00:00Z"}, "from"),
        ({"from": "2019-01-01T00:00:00Z", "to": "2020-03-01T00:00:00Z"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"status": "busy"}, "status"),
        ({"called_prefix": "44x"}, "called_prefix"),
        ({"format": "xml"}, "format"),
        ({"account_id": 0}, "account_id"),
        ({"to": "0001-01-01T00:00:00+05:00"}, "to"),
    ):
        reply = await api.get(f"{V1}/cdrs", params=params, headers=auth)
        assert reply.status_code == 422, (params, reply.text)
        assert field in {e["loc"][-1] for e in reply.json()["detail"]}, (params, reply.text)
    for params in ({"year": 1900}, {"year": "last"}, {"account_id": -1}):
        reply = await api.get(f"{V1}/reports/traffic", params=params, headers=auth)
        assert reply.status_code == 422, params
    assert (await api.get(f"{V1}/cdrs")).status_code == 401


async def test_default_window_is_the_last_week(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    recent = Call(_sid(world), world.a2, now - timedelta(days=2), 10, (100, 50))
    old = Call(_sid(world), world.a2, now - timedelta(days=9), 10, (100, 50))
    await insert_calls(db_pool, world, [recent, old])
    auth = await headers(api, world, "a1")  # a1 sees none of a2's calls
    assert (await api.get(f"{V1}/cdrs", headers=auth)).json()["total"] == 0
    agent = await headers(api, world, "agent_a")
    reply = await api.get(f"{V1}/cdrs", params={"account_id": world.a2}, headers=agent)
    assert reply.status_code == 200
    assert [i["session_id"] for i in reply.json()["items"]] == [recent.session_id]


async def test_monthly_traffic(api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool) -> None:
    def at(year: int, month: int, day: int = 15) -> datetime:
        return datetime(year, month, day, 10, 0, tzinfo=UTC)

    made = [
        Call(_sid(world), world.a1, at(2011, 1), 61, (2_000, 1_000)),
        Call(_sid(world), world.a1, at(2011, 1, 31), 30, (1_000, 500)),
        Call(_sid(world), world.a2, at(2011, 1), 0, (0, 0)),
        Call(_sid(world), world.a11, at(2011, 12, 31), 120, (4_000, 3_000, 2_000)),
        Call(_sid(world), world.a1, at(2010, 1), 60, (1_000, 700)),
        Call(_sid(world), world.a1, at(2010, 6), 600, (10_000, 7_000)),
        Call(_sid(world), world.b1, at(2011, 1), 60, (1_000, 0)),  # not A's
        Call(_sid(world), world.a1, at(2009, 12, 31), 60, (1_000, 700)),  # too early
        Call(_sid(world), world.a1, at(2012, 1, 1), 60, (1_000, 700)),  # too late
    ]
    await insert_calls(db_pool, world, made)
    auth = await headers(api, world, "agent_a")
    reply = await api.get(
        f"{V1}/reports/traffic", params={"year": 2011, "account_id": world.agent_a}, headers=auth
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["year"] == 2011 and body["account_id"] == world.agent_a
    months = {m["month"]: m for m in body["months"]}
    assert sorted(months) == list(range(1, 13))
    assert months[1]["this_year"] == {
        "calls": 3,
        "answered": 2,
        "duration_s": 91,
        "billed_s": 120 + 60,
        "minutes": 3,
        "revenue_micros": 3_000,
        "agent_cost_micros": 1_500,
    }
    assert months[1]["last_year"]["calls"] == 1
    assert months[1]["last_year"]["revenue_micros"] == 1_000
    assert months[6]["this_year"]["calls"] == 0
    assert months[6]["this_year"]["agent_cost_micros"] == 0
    assert months[6]["last_year"]["minutes"] == 10
    assert months[12]["this_year"]["agent_cost_micros"] == 2_000
    assert body["this_year"]["calls"] == 4 and body["this_year"]["revenue_micros"] == 7_000
    assert body["last_year"]["calls"] == 2 and body["last_year"]["agent_cost_micros"] == 7_700

    sub = await api.get(
        f"{V1}/reports/traffic",
        params={"year": 2011},
        headers=await headers(api, world, "agent_a1"),
    )
    assert sub.json()["this_year"]["calls"] == 1
    assert sub.json()["months"][11]["this_year"]["agent_cost_micros"] == 3_000
    admin = await api.get(
        f"{V1}/reports/traffic",
        params={"year": 2011, "account_id": world.a1},
        headers=await headers(api, world, "admin"),
    )
    assert admin.json()["this_year"]["calls"] == 2
    assert admin.json()["this_year"]["agent_cost_micros"] is None
    customer = await api.get(
        f"{V1}/reports/traffic", params={"year": 2011}, headers=await headers(api, world, "b1")
    )
    assert customer.json()["this_year"]["revenue_micros"] == 1_000
    current = await api.get(f"{V1}/reports/traffic", headers=auth)
    assert current.json()["year"] == datetime.now(UTC).year


async def test_csv_stops_at_report_rows_max(
    ctx: ManagementContext, world: World, calls: list[Call]
) -> None:
    small = dataclasses.replace(
        ctx.config, api=dataclasses.replace(ctx.config.api, report_rows_max=2)
    )
    app = create_app(dataclasses.replace(ctx, config=small))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as api:
        auth = await headers(api, world, "agent_a")
        reply = await api.get(
            f"{V1}/cdrs", params={**WINDOW, "format": "csv", "sort": "setup_at"}, headers=auth
        )
    assert reply.status_code == 200
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [r["session_id"] for r in rows] == [c.session_id for c in calls[:2]]
    assert reply.headers["x-total-count"] == "4" and reply.headers["x-truncated"] == "true"
